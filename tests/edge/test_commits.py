"""Learning committed transactions from a hub API: the pure parser, the config, and the
watcher against a real HTTP server and a real outbox file."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edge.commits import AccountAnswer, CommitWatcher, HubAnswerError, fetch_account, read_account
from edge.config import HubSettings, parse_settings
from edge.errors import ConfigError
from edge.outbox import Outbox, OutboxThread
from edge.status import CommitStatus, describe, render_metrics, to_obj
from tests.edge.test_cores import snapshot
from tests.edge.test_outbox_uplink import GW, with_reads

BASE = """
[gateway]
key = "/tmp/gw.key"
chain = "gtx-local"
zone = "pea/ayu/sub1/f1"
state_dir = "/tmp/state"
interval_s = 900
[[device]]
name = "m1"
profile = "sdm630"
transport = "tcp://127.0.0.1:5020"
"""


def account(seq: object, who: str = GW, registered: object = None) -> bytes:
    obj = {"account": who, "balance": 0, "escrow": 0, "seq": seq}
    if registered is not None:
        obj["registered"] = registered
    return json.dumps(obj).encode()


def test_read_account_takes_the_seq_and_the_registration() -> None:
    assert read_account(account(0), GW) == AccountAnswer(0, None)
    assert read_account(account(5_002, registered=True), GW) == AccountAnswer(5_002, True)
    assert read_account(account(0, registered=False), GW) == AccountAnswer(0, False)


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        (b"<html>", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1]", "not a JSON object"),
        (account(3, "ab" * 32), "is for 'abababababababab', not us"),
        (account(-1), "no committed seq"),
        (account(True), "no committed seq"),
        (account("7"), "no committed seq"),
        (json.dumps({"account": GW}).encode(), "no committed seq"),
        (account(1, registered="yes"), "bad registered = 'yes'"),
    ],
)
def test_read_account_refuses_what_is_not_our_account(answer: bytes, needle: str) -> None:
    with pytest.raises(HubAnswerError, match=needle):
        read_account(answer, GW)


def test_config_hub_table_and_keep_tx_until() -> None:
    plain = parse_settings(BASE)
    assert plain.hub is None
    assert plain.outbox.keep_tx_until == "puback"
    hub = parse_settings(BASE + '[hub]\nurl = "http://10.0.0.2:8600/"\n')
    assert hub.hub == HubSettings("http://10.0.0.2:8600", None, 15, 5000)
    assert hub.outbox.keep_tx_until == "committed"  # the default once a hub is known
    opted_out = parse_settings(
        BASE + '[outbox]\nkeep_tx_until = "puback"\n[hub]\nurl = "http://h:1"\npoll_s = 2\n'
    )
    assert opted_out.outbox.keep_tx_until == "puback"
    assert opted_out.hub is not None
    assert opted_out.hub.poll_s == 2


NOT_PEM = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('[outbox]\nkeep_tx_until = "committed"\n', "'committed' needs a [hub] table"),
        ('[hub]\nurl = "mqtt://h:1"\n', "[hub] key 'url': must be http://HOST:PORT"),
        ('[hub]\nurl = "http://h:99999"\n', "[hub] key 'url': is not a URL"),
        ('[hub]\nurl = "http://h:1"\nca = "/nonexistent"\n', "a CA file needs an https:// url"),
        ('[hub]\nurl = "https://h:1"\nca = "/nonexistent"\n', "does not exist"),
        (f'[hub]\nurl = "https://h:1"\nca = "{NOT_PEM}"\n', "is not a PEM CA bundle"),
        ('[hub]\nurl = "http://h:1"\npoll_s = 0\n', "key 'poll_s': must be an integer from 1"),
        ('[hub]\nurl = "http://h:1"\nwait = 3\n', "key 'wait': unknown key"),
        ("hub = 3\n", "[hub] must be a table"),
    ],
)
def test_config_hub_errors_name_the_key(extra: str, needle: str) -> None:
    text = extra + BASE if extra.startswith("hub =") else BASE + extra  # a top-level key
    with pytest.raises(ConfigError) as err:
        parse_settings(text, "edge.toml")
    assert needle in str(err.value)


class AccountServer:
    """A real HTTP server answering `GET /v1/accounts/{id}` with what the test sets (the
    end-to-end test, test_commits_e2e.py, asks real validators)."""

    def __init__(self) -> None:
        self.status = 200
        self.body = account(0)
        self.paths: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub.paths.append(self.path)
                self.send_response(hub.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(hub.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_api() -> Iterator[AccountServer]:
    hub = AccountServer()
    try:
        yield hub
    finally:
        hub.close()


def test_fetch_account_over_http(hub_api: AccountServer) -> None:
    settings = HubSettings(hub_api.url, None, 1, 2000)
    hub_api.body = account(42, registered=True)
    assert fetch_account(settings, GW) == AccountAnswer(42, True)
    assert hub_api.paths == [f"/v1/accounts/{GW}"]
    hub_api.status = 503
    with pytest.raises(HubAnswerError, match="HTTP 503"):
        fetch_account(settings, GW)
    gone = HubSettings("http://127.0.0.1:9", None, 1, 500)  # discard port: nothing listens
    with pytest.raises(HubAnswerError, match=r"127\.0\.0\.1:9"):
        fetch_account(gone, GW)


async def test_watcher_forgets_committed_tx_and_survives_a_failing_hub(
    tmp_path: Path, hub_api: AccountServer
) -> None:
    ob = with_reads(tmp_path, 4)
    ob.acknowledge([p.row_id for p in ob.pending(100)], now_ms=10_000)
    store = OutboxThread(ob)
    try:
        watcher = CommitWatcher(HubSettings(hub_api.url, None, 1, 2000), GW, store)
        assert watcher.committed is None
        assert await store.call(ob.awaiting_commit) == 4

        hub_api.body = account(5_001)
        assert await watcher.check() == 2
        assert (watcher.committed, watcher.errors, watcher.last_error) == (5_001, 0, None)
        assert await store.call(ob.awaiting_commit) == 2

        hub_api.status, hub_api.body = 500, b"{}"
        assert await watcher.check() == 0
        assert watcher.errors == 1
        assert watcher.last_error is not None
        assert "HTTP 500" in watcher.last_error
        hub_api.status, hub_api.body = 200, account(4_000)  # a hub behind: nothing changes
        assert await watcher.check() == 0
        assert (watcher.committed, watcher.last_error) == (5_001, None)
        assert await store.call(ob.awaiting_commit) == 2

        # The loop asks while tx messages wait, and stops asking once none does.
        hub_api.body = account(5_003)
        task = asyncio.create_task(watcher.run())
        for _ in range(50):
            if not await store.call(ob.awaiting_commit):
                break
            await asyncio.sleep(0.05)
        asked = len(hub_api.paths)
        await asyncio.sleep(1.3)
        task.cancel()
        assert await store.call(ob.awaiting_commit) == 0
        assert len(hub_api.paths) == asked
        assert await store.call(ob.committed, "tx") == 5_003
    finally:
        store.close()
    # A restarted gateway remembers what it learned.
    again = Outbox(tmp_path / "o.sqlite", "committed")
    try:
        assert again.committed("tx") == 5_003
    finally:
        again.close()


async def test_the_refused_tail_goes_again_once_the_hub_registers_the_gateway(
    tmp_path: Path, hub_api: AccountServer
) -> None:
    """Not one interval later with the next new read: as soon as the hub says so."""
    ob = with_reads(tmp_path, 3, telemetry=False)
    ob.acknowledge([p.row_id for p in ob.pending(100)], now_ms=1_000)
    clock = [10_000]
    woken: list[int] = []
    settings = HubSettings(hub_api.url, None, 1, 2000)

    async def answer(body: bytes, at: int) -> list[int]:
        """The hub answers `body` at `at`; the seqs then marked for sending, acked at once."""
        hub_api.body, clock[0] = body, at
        await watcher.check()
        marked = await store.call(ob.pending, 10)
        await store.call(ob.acknowledge, [p.row_id for p in marked], at + 1)
        return [p.seq for p in marked]

    store = OutboxThread(ob)
    try:
        watcher = CommitWatcher(
            settings, GW, store, clock=lambda: clock[0], wake=lambda: woken.append(clock[0])
        )
        assert await answer(account(0), 10_000) == []  # a hub that does not say
        assert await answer(account(0, registered=False), 15_000) == []  # refused: unknown
        assert watcher.registered is False
        # The register transaction committed: the refused tail goes, and the uplink wakes.
        assert await answer(account(0, registered=True), 20_000) == [5_000, 5_001, 5_002]
        assert woken == [20_000]
        assert await answer(account(0, registered=True), 30_000) == []  # once
        # A load balancer over validators at different heights: once a run all the same.
        assert await answer(account(0, registered=False), 31_000) == []
        assert await answer(account(0, registered=True), 32_000) == []
    finally:
        store.close()
    # (Re)started after its registration with nothing committed yet: it re-sends at its
    # first answer; with something committed, the usual late re-send does the rest.
    for seq, want in ((0, [5_000, 5_001, 5_002]), (5_000, [])):
        ob = Outbox(tmp_path / "o.sqlite", "committed")
        store = OutboxThread(ob)
        try:
            watcher = CommitWatcher(settings, GW, store, clock=lambda: 40_000)
            hub_api.body = account(seq, registered=True)
            await watcher.check()
            marked = await store.call(ob.pending, 10)
            assert [p.seq for p in marked] == want
            await store.call(ob.acknowledge, [p.row_id for p in marked], 40_001)
        finally:
            store.close()


def test_status_shows_commit_tracking() -> None:
    commits = CommitStatus("http://h:8600", 5_001, 2, 1, "http://h:8600/v1/...: HTTP 500")
    snap = dataclasses.replace(snapshot(), commits=commits)
    text = describe(to_obj(snap), 1000)
    assert (
        "chain: registration unknown, committed tx seq 5001, 2 tx awaiting commit "
        "(asking http://h:8600)"
    ) in text
    assert "HTTP 500" in text
    metrics = render_metrics(snap)
    assert "gtx_edge_tx_awaiting_commit 2" in metrics
    assert "gtx_edge_hub_errors_total 1" in metrics
    assert "gtx_edge_registered" not in metrics  # the hub did not say
    for registered, words, gauge in ((False, "NOT registered yet", "0"), (True, "registered", "1")):
        commits = dataclasses.replace(snap.commits, registered=registered)  # type: ignore[arg-type]
        shown = dataclasses.replace(snap, commits=commits)
        assert f"chain: {words}, committed tx seq 5001" in describe(to_obj(shown), 1000)
        assert f"gtx_edge_registered {gauge}" in render_metrics(shown)
