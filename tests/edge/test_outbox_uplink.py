"""The SQLite outbox against real files, and the uplink against a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from edge.config import parse_settings
from edge.errors import ConfigError
from edge.intake import GENESIS, DeviceMemory
from edge.outbox import Outbox, OutboxThread
from edge.uplink import Uplink, birth_payload
from tests.edge.harness import Subscriber, verify
from tests.support import Broker
from wire.envelope import Envelope, parse, sign
from wire.keys import generate_key, public_hex
from wire.kinds import MeterRead, Telemetry
from wire.struct import Body

KEY = generate_key()
GW = public_hex(KEY)


def tel(i: int, device: str = "m1") -> Telemetry:
    return Telemetry(
        device=device, power_w=i, voltage_dv=2300, frequency_mhz=50_000, import_wh=i, export_wh=0
    )


def read(interval: int, prev: str = GENESIS) -> MeterRead:
    return MeterRead(
        device="m1", interval=interval, import_wh=1, export_wh=0, source="grid", prev=prev
    )


def signer(ts: int = 1000):
    def sign_it(body: Body, seq: int) -> Envelope:
        return sign(KEY, "gtx-local", body, seq, ts)

    return sign_it


def opened(tmp_path: Path, keep: str = "puback") -> Outbox:
    ob = Outbox(tmp_path / "o.sqlite", keep)  # type: ignore[arg-type]
    ob.bind(GW, "gtx-local", 5_000)
    return ob


def with_reads(tmp_path: Path, n: int, telemetry: bool = True) -> Outbox:
    """A `committed` outbox holding `n` chained meter reads (each after a telemetry one)."""
    ob = opened(tmp_path, "committed")
    mem = DeviceMemory()
    for i in range(n):
        bodies: list[Body] = [tel(i)] if telemetry else []
        _, mem = ob.store("m1", [*bodies, read(i * 1000, mem.read_id)], mem, signer())
    return ob


def test_wal_full_and_seq_survives_reopen_and_is_never_reused(tmp_path: Path) -> None:
    ob = opened(tmp_path)
    assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    envs, mem = ob.store("m1", [tel(1), read(0)], DeviceMemory(), signer())
    assert [e.seq for e in envs] == [5_000, 5_000]  # each stream starts at creation ms
    assert mem.read_id == envs[1].message_id()
    assert mem.read_interval == 0
    ob.close()
    ob = opened(tmp_path)
    assert ob.memory("m1") == mem
    envs2, _ = ob.store("m1", [tel(2)], mem, signer())
    assert envs2[0].seq == 5_001
    # A failure while signing rolls the whole reading back: no seq consumed, nothing stored.

    def broken(body: Body, seq: int) -> Envelope:
        if isinstance(body, MeterRead):
            raise RuntimeError("power cut")
        return signer()(body, seq)

    with pytest.raises(RuntimeError):
        ob.store("m1", [tel(3), read(900_000, mem.read_id)], mem, broken)
    assert ob.next_seq("telemetry") == 5_002
    assert ob.memory("m1") == mem
    assert [p.seq for p in ob.pending(10)] == [5_000, 5_000, 5_001]


def test_outbox_refuses_another_gateway(tmp_path: Path) -> None:
    opened(tmp_path).close()
    ob = Outbox(tmp_path / "o.sqlite")
    with pytest.raises(ConfigError, match="belongs to sender"):
        ob.bind(public_hex(generate_key()), "gtx-local", 1)


def test_tx_kept_until_committed_and_republished_in_order(tmp_path: Path) -> None:
    ob = opened(tmp_path, "committed")
    mem = DeviceMemory()
    for i in range(3):
        _, mem = ob.store("m1", [tel(i), read(i * 1000, mem.read_id)], mem, signer())
    ids = [p.row_id for p in ob.pending(100)]
    ob.acknowledge(ids, now_ms=10_000)
    assert ob.depth().messages == {"telemetry": 0, "tx": 3}
    assert ob.pending(100) == []
    assert ob.republish_overdue(now_ms=10_500, republish_ms=1000) == 0
    assert ob.republish_overdue(now_ms=11_000, republish_ms=1000) == 3
    assert [p.seq for p in ob.pending(100)] == [5_000, 5_001, 5_002]
    assert ob.commit_through("tx", 5_001) == 2
    assert [p.seq for p in ob.pending(100)] == [5_002]


def test_resends_back_off_until_something_commits(tmp_path: Path) -> None:
    ob = opened(tmp_path, "committed")
    mem = DeviceMemory()
    _, mem = ob.store("m1", [read(0)], mem, signer())
    ob.acknowledge([p.row_id for p in ob.pending(10)], now_ms=0)
    t = 0
    waits = []
    for _ in range(6):  # re-send, acknowledged at once, never committed
        start = t
        while not ob.republish_overdue(now_ms=t, republish_ms=1000):
            t += 100
        waits.append(t - start)
        ob.acknowledge([p.row_id for p in ob.pending(10)], now_ms=t)
    assert waits == [1000, 2000, 4000, 8000, 8000, 8000]
    _, mem = ob.store("m1", [read(1000, mem.read_id)], mem, signer())
    ob.acknowledge([p.row_id for p in ob.pending(10)], now_ms=t)
    assert ob.commit_through("tx", 5_000) == 1  # progress: back to the first delay
    assert ob.republish_overdue(now_ms=t + 999, republish_ms=1000) == 0
    assert ob.republish_overdue(now_ms=t + 1000, republish_ms=1000) == 1


def test_a_new_tx_goes_out_after_the_late_ones(tmp_path: Path) -> None:
    """Reads the hub showed uncommitted are re-sent ahead of the next one, in seq order, so
    the chain never commits a later seq of the gateway before them."""
    ob = opened(tmp_path, "committed")
    mem = DeviceMemory()
    for i in range(2):
        _, mem = ob.store("m1", [read(i * 1000, mem.read_id)], mem, signer())
    ob.acknowledge([p.row_id for p in ob.pending(10)], now_ms=10_000)
    # Not known to be late yet (the hub was not asked): the new one goes alone.
    _, mem = ob.store("m1", [read(2000, mem.read_id)], mem, signer())
    assert [p.seq for p in ob.pending(10)] == [5_002]
    ob.acknowledge([p.row_id for p in ob.pending(10)], now_ms=10_000)
    # The hub, asked at 12,000, has none of them: all three are late.
    assert ob.commit_through("tx", 0, now_ms=12_000) == 0
    _, mem = ob.store("m1", [tel(1)], mem, signer())  # telemetry changes nothing
    assert [p.stream for p in ob.pending(10)] == ["telemetry"]
    _, mem = ob.store("m1", [read(3000, mem.read_id)], mem, signer())
    assert [(p.stream, p.seq) for p in ob.pending(10)] == [
        ("tx", 5_000), ("tx", 5_001), ("tx", 5_002), ("telemetry", 5_000), ("tx", 5_003)
    ]  # fmt: skip
    # Re-sent and acknowledged again (refused again by a hub that does not know the
    # gateway yet): their first acknowledgement still makes them late.
    ob.acknowledge([p.row_id for p in ob.pending(10)], now_ms=20_000)
    _, mem = ob.store("m1", [read(4000, mem.read_id)], mem, signer())
    assert [p.seq for p in ob.pending(10)] == [5_000, 5_001, 5_002, 5_003, 5_004]
    ob.acknowledge([p.row_id for p in ob.pending(10)], now_ms=20_001)
    assert ob.commit_through("tx", 5_002, now_ms=20_100) == 3
    # 5,003 and 5,004 were first acknowledged under 2 s before that answer: not late yet.
    _, mem = ob.store("m1", [read(5000, mem.read_id)], mem, signer())
    assert [p.seq for p in ob.pending(10)] == [5_005]
    ob.acknowledge([p.row_id for p in ob.pending(10)], now_ms=20_200)
    assert ob.commit_through("tx", 5_002, now_ms=22_100) == 0
    # Now 5,003 and 5,004 are late, 5,005 is not: it goes again all the same, so the
    # re-send has no hole for the chain to commit past.
    _, mem = ob.store("m1", [read(6000, mem.read_id)], mem, signer())
    assert [p.seq for p in ob.pending(10)] == [5_003, 5_004, 5_005, 5_006]


def test_quota_thins_old_telemetry_but_never_tx(tmp_path: Path) -> None:
    ob = opened(tmp_path)
    mem = DeviceMemory()
    for i in range(300):
        bodies: list[Body] = [tel(i)]
        if i % 100 == 0:
            bodies.append(read(i * 1000, mem.read_id))
        _, mem = ob.store("m1", bodies, mem, signer(ts=i * 1000))
    before = ob.depth()
    dropped = ob.enforce_quota(before.payload_bytes // 2, interval_ms=60_000)
    after = ob.depth()
    assert dropped > 0
    assert after.payload_bytes <= before.payload_bytes // 2
    assert after.messages["tx"] == 3
    assert ob.enforce_quota(10, 60_000) == after.messages["telemetry"]
    assert ob.depth().messages == {"telemetry": 0, "tx": 3}


def settings_for(broker: Broker, tmp_path: Path, window: int = 100):
    return parse_settings(
        f"""
[gateway]
key = "/x"
chain = "gtx-local"
zone = "pea/x"
state_dir = "{tmp_path}"
interval_s = 60
[mqtt]
url = "{broker.url}"
window = {window}
keepalive_s = 5
[[device]]
name = "m1"
profile = "sdm630"
transport = "tcp://127.0.0.1:1"
"""
    )


async def test_backlog_drains_in_order_far_faster_than_readings_arrive(
    tmp_path: Path, broker: Broker
) -> None:
    ob = opened(tmp_path)
    mem = DeviceMemory()
    n = 3000
    for i in range(0, n, 100):  # a long outage's worth of readings, stored in batches
        ob._db.execute("BEGIN")
        for j in range(i, i + 100):
            env = sign(KEY, "gtx-local", tel(j), 10_000 + j, j)
            ob._db.execute(
                "INSERT INTO message (stream, seq, kind, device, ts_ms, payload) "
                "VALUES ('telemetry', ?, 'telemetry', 'm1', ?, ?)",
                (env.seq, j, env.to_bytes()),
            )
        ob._db.execute("COMMIT")
    _, mem = ob.store("m1", [read(0)], mem, signer())
    sub = Subscriber(broker.port, f"gtx/v1/+/gw/{GW}/#")
    sub.start()
    store = OutboxThread(ob)
    now = lambda: time.time_ns() // 1_000_000  # noqa: E731
    uplink = Uplink(
        settings_for(broker, tmp_path),
        GW,
        store,
        lambda: birth_payload(GW, "pea/x", ["m1"], now()),
        now,
    )
    started = time.monotonic()
    task = asyncio.create_task(uplink.run())
    try:
        while (await store.call(ob.depth)).unpublished:
            await asyncio.sleep(0.02)
            assert time.monotonic() - started < 30
        elapsed = time.monotonic() - started
        await uplink.goodbye()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(store.close)
    rate = (n + 1) / elapsed
    # Ten meters at 1 Hz make 10 readings/s; the drain must beat that by far (10x here, a
    # bound a loaded machine keeps: this is a behaviour check, not a throughput figure).
    assert rate > 100, rate
    deadline = time.monotonic() + 10
    while len([t for t, _ in sub.snapshot() if not t.endswith("/status")]) < n + 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    sub.stop()
    got = [parse(p).seq for t, p in sub.snapshot() if t.endswith("/telemetry")]
    assert got == sorted(got) == list(range(10_000, 10_000 + n))  # in order, no gaps
    v = verify(sub.snapshot(), GW)
    assert v.kinds == {"telemetry": n, "meter_read": 1}
    birth = json.loads(v.status[0])
    assert birth["state"] == "online"
    assert birth["gateway"] == GW
    assert v.status[-1] == b"offline"


def test_status_readable_while_daemon_writes(tmp_path: Path) -> None:
    ob = opened(tmp_path)
    ob.store("m1", [tel(1)], DeviceMemory(), signer())
    ro = Outbox(tmp_path / "o.sqlite", readonly=True)
    assert ro.depth().messages == {"telemetry": 1, "tx": 0}
    with pytest.raises(sqlite3.OperationalError):
        ro._db.execute("DELETE FROM message")
    ro.close()
