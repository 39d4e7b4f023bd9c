"""Outbox quota thinning inside a running `gtx edge run`, against a real mosquitto outage."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.edge.harness import (
    Subscriber,
    assert_contiguous,
    make_key,
    outbox_next_seqs,
    outbox_rows,
    sent_through,
    start_gateway,
    start_tcp_sim,
    stop,
    verify,
    wait_until,
    write_config,
)
from tests.support import Broker

pytestmark = pytest.mark.slow

QUOTA_KB = 16
"""The smallest `[outbox] quota_kb` the config accepts."""


def first_tx_seq(state: Path) -> int:
    """The first tx seq ever (tx rows are never thinned, and none was published yet)."""
    db = sqlite3.connect(state / "outbox.sqlite")
    try:
        return int(db.execute("SELECT min(seq) FROM message WHERE stream = 'tx'").fetchone()[0])
    finally:
        db.close()


def test_quota_thins_telemetry_keeps_every_meter_read_and_the_daemon_recovers(
    tmp_path: Path, broker: Broker
) -> None:
    """Broker down, 16 KiB quota, 20 telemetry/s: thinned while down, then all else arrives."""
    key, gateway = make_key(tmp_path)
    sim = start_tcp_sim(tmp_path, "sdm630", "1-2")
    devices: list[dict[str, object]] = [
        {
            "name": f"m{u}",
            "profile": "sdm630",
            "transport": sim.transport,
            "unit": u,
            "poll_ms": 100,
        }
        for u in (1, 2)
    ]
    config = write_config(
        tmp_path, key, broker.url, devices, interval_s=1, extra=f"[outbox]\nquota_kb = {QUOTA_KB}"
    )
    state = tmp_path / "state"
    log = tmp_path / "gateway.log"

    def status() -> dict[str, Any]:
        return dict(json.loads((state / "status.json").read_text()))

    sub = Subscriber(broker.port, f"gtx/v1/+/gw/{gateway}/#")
    sub.start()  # a persistent session; it re-subscribes when the broker is back
    broker.stop()
    gw = start_gateway(config, tmp_path)
    try:
        seen: list[dict[str, Any]] = []

        def thinned_yet() -> bool:
            if (state / "status.json").exists():
                seen.append(status())
            return bool(seen) and seen[-1]["outbox"]["thinned"] > 0

        # The daemon checks the quota every 10 s (5 housekeeping rounds of 2 s) and writes
        # the status right after, so the first status that counts thinning shows its effect.
        # The deadline leaves room for a slow start on a loaded machine (seen: ~8 s).
        wait_until(thinned_yet, 45, "telemetry thinned while the broker is down")
        during = seen[-1]
        assert max(s["outbox"]["bytes"] for s in seen) > QUOTA_KB * 1024  # it was over
        assert during["broker"]["connected"] is False
        assert during["outbox"]["bytes"] <= QUOTA_KB * 1024 + 4096, during["outbox"]
        assert all(d["state"] != "degraded" for d in during["devices"]), during["devices"]
        start = first_tx_seq(state)
        assert sub.snapshot() == []

        broker.start()
        wait_until(lambda: sub.client is not None and sub.client.is_connected(), 10, "verifier")
        # Reconnect backoff doubles up to 30 s while the broker is away; then the backlog
        # drains: the subscriber gets every stream up to what was stored at reconnection.
        backlog = outbox_next_seqs(state)
        wait_until(lambda: sent_through(sub, gateway, backlog), 60, "the backlog drained")
        after = status()
        assert gw.poll() is None, "the daemon must survive the outage and the thinning"
        assert after["pid"] == gw.pid
        # The devices kept answering (a stray failed poll on a loaded machine is no fault).
        assert all(d["errors"] * 20 <= d["polls"] for d in after["devices"]), after["devices"]
        assert stop(gw) == 0
    finally:
        stop(gw, signal.SIGKILL)
        stop(sim.proc)
    next_seq = outbox_next_seqs(state)

    def complete() -> bool:
        seqs = verify(sub.snapshot(), gateway).seqs
        return all(seqs.get(s) and seqs[s][-1] == next_seq[s] - 1 for s in ("telemetry", "tx"))

    wait_until(complete, 10, "every stream up to its last seq")
    sub.stop()
    v = verify(sub.snapshot(), gateway)  # every kept telemetry and every meter_read verifies
    assert outbox_rows(state) == 0
    # Every meter_read, from the first ever: none was thinned.
    assert_contiguous(v.seqs["tx"], first=start, last=next_seq["tx"] - 1)
    assert v.kinds["meter_read"] == next_seq["tx"] - start
    # Telemetry: both streams started at the same seq; exactly the thinned ones are missing.
    produced = next_seq["telemetry"] - start
    received = len(v.seqs["telemetry"])
    # The log counts every thinning (the status file may predate the last one).
    lines = re.findall(
        r"WARNING gtx\.edge: outbox over its quota of 16 KiB: thinned (\d+)", log.read_text()
    )
    thinned = sum(map(int, lines))
    assert thinned >= after["outbox"]["thinned"] > 0, (lines, after["outbox"])
    assert received < produced
    assert produced - received == thinned, (produced, received, thinned)
    print(f"quota: produced {produced} telemetry, thinned {thinned}, reads {v.kinds['meter_read']}")
