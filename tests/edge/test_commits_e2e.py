"""A PUBACK is not delivery: `gtx edge run` keeps its meter reads until real validators
commit them, and re-sends what the chain does not have.

The gateway starts before an installer registered it. The broker acknowledges every
meter_read, the validators refuse them (unregistered), so they stay in the outbox,
`gtx edge status` counting them as awaiting commit. Once `gtx tx register` commits, the
gateway re-sends the whole backlog in seq order: each device's reads chain through `prev`
to the read still pending before it, the validators admit them queued behind it, and every
read the gateway ever signed is committed, in order, and the outbox empties.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.edge.harness import (
    CHAIN,
    Subscriber,
    make_key,
    start_gateway,
    start_tcp_sim,
    stop,
    verify,
    wait_until,
    write_config,
)
from tests.hub.hubnet import ROOT, HubNet, client_key
from tests.support import Broker
from wire.envelope import parse
from wire.keys import public_hex

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

INTERVAL_S = 2
ZONE = "pea/ayutthaya/sub-01/feeder-3"  # the harness's gateway zone


def test_meter_reads_stay_until_committed_and_reach_the_chain_after_registration(
    tmp_path: Path, broker: Broker
) -> None:
    net = HubNet(
        tmp_path / "hub",
        broker.url,
        n=4,
        chain=CHAIN,
        params={"interval_s": INTERVAL_S, "gate_closure_s": 1, "grace_s": 1},
    )
    net.start_all()
    key, gateway = make_key(tmp_path)
    sim = start_tcp_sim(tmp_path, "sdm630", "1")
    device = {"name": "m1", "profile": "sdm630", "transport": sim.transport, "poll_ms": 500}
    hub = f'[outbox]\nrepublish_s = 5\n[hub]\nurl = "{net.urls[1]}"\npoll_s = 1'
    config = write_config(tmp_path, key, broker.url, [device], INTERVAL_S, extra=hub)
    state = tmp_path / "state"

    def status() -> dict[str, Any]:
        return dict(json.loads((state / "status.json").read_text()))

    sub = Subscriber(broker.port, f"gtx/v1/{CHAIN}/gw/{gateway}/tx")
    sub.start()
    gw = start_gateway(config, tmp_path)
    try:
        wait_until(lambda: min(net.heights()) >= 1, 30, "the validators committing")
        # Unregistered: acknowledged by the broker, refused by the hub, kept by the gateway.
        # (A gateway faster than validator 1's API sees errors first: wait for an answer.)
        wait_until(
            lambda: (
                (state / "status.json").exists()
                and (status()["commits"] or {}).get("awaiting", 0) >= 3
                and status()["commits"]["committed_seq"] == 0
                and status()["commits"]["last_error"] is None
            ),
            30,
            "three meter reads awaiting commit, the hub answering",
        )

        # "awaiting" counts tx messages the broker acknowledged; they reached it, too. (How
        # many are unpublished at this instant is no invariant: telemetry is in flight and
        # an overdue re-send marks acknowledged tx messages unpublished again.)
        def reads_seen() -> list[int]:
            return verify(sub.snapshot(), gateway).seqs.get("tx", [])

        wait_until(lambda: len(reads_seen()) >= 3, 10, "the subscriber seeing three reads")
        first = reads_seen()[0]

        # Reads published before the validators subscribed are unknown to them (the broker
        # dropped them after its PUBACK); later ones were refused. Both stay in the outbox.
        def answers() -> list[dict[str, Any] | None]:
            return [net.tx(0, parse(p, CHAIN).message_id()) for _, p in sub.snapshot()]

        wait_until(lambda: any(answers()), 30, "a read refused by validator 0")
        refused = [a for a in answers() if a is not None]
        assert all(a["status"] == "rejected" for a in refused), refused
        assert all("unregistered" in a["reason"] for a in refused), refused
        shown = subprocess.run(
            [sys.executable, "-m", "gridtokenx.cli", "edge", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            check=True,
        ).stdout
        assert "tx awaiting commit" in shown, shown
        assert "chain: NOT registered yet" in shown, shown

        register = subprocess.run(
            [sys.executable, "-m", "gridtokenx.cli", "tx", "register",
             "--key", str(net.configs[0].parent / "validator.key"), "--hub", net.urls[0],
             "--gateway", gateway, "--owner", public_hex(client_key(0)), "--zone", ZONE,
             "--device", "m1:grid:1000000", "--wait"],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert register.returncode == 0, register.stderr
        assert json.loads(register.stdout.splitlines()[-1])["status"] == "committed"

        # The late reads go out again ahead of the next new one, commit, and leave the outbox.
        def caught_up() -> bool:
            c = status()["commits"]
            return (
                bool(c["committed_seq"])
                and c["committed_seq"] >= first + 6
                and (c["awaiting"] <= 1)
            )

        try:
            wait_until(caught_up, 40, "the backlog committed")
        except AssertionError as exc:  # say where each read stands on the hub
            seen = {env.seq: env for env in (parse(p, CHAIN) for _, p in sub.snapshot())}
            views = [(q, net.tx(0, seen[q].message_id())) for q in sorted(seen)]
            raise AssertionError(f"{status()['commits']}; the hub on each read: {views}") from exc
        assert gw.poll() is None
        assert status()["commits"]["registered"] is True
        assert stop(gw) == 0

        # The reads signed before the registration are on chain, accepted, and so is every
        # one after them, in seq order, from the gateway's first. (A re-send may straddle
        # the registration's block; the validators then hold the later reads until the
        # refused first one comes again.)
        committed = net.http.get(f"{net.urls[2]}/v1/accounts/{gateway}").json()["seq"]
        reads = {env.seq: env for env in (parse(p, CHAIN) for _, p in sub.snapshot())}
        assert set(range(first, committed + 1)) <= set(reads)
        places = {}
        for seq in range(first, committed + 1):
            info = net.tx(2, reads[seq].message_id())
            if info is not None and info["status"] == "committed":
                places[seq] = (info["height"], info["position"])
        assert sorted(places) == list(range(first, committed + 1)), places
        assert [places[q] for q in sorted(places)] == sorted(places.values())
    finally:
        stop(gw, signal.SIGKILL)
        stop(sim.proc)
        sub.stop()
        net.close()
