"""The outbox's running totals (kept by triggers) always equal a count of its messages."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.intake import DeviceMemory
from edge.outbox import Outbox
from tests.edge.test_outbox_uplink import GW, read, signer, tel, with_reads
from wire.struct import Body

COUNTED = (
    "SELECT stream, count(*), sum(acked_ms IS NULL), sum(length(payload)) "
    "FROM message GROUP BY stream"
)


def counted(ob: Outbox) -> dict[str, tuple[int, int, int]]:
    out = {"telemetry": (0, 0, 0), "tx": (0, 0, 0)}  # an empty stream counts zeros
    out.update({r[0]: (r[1], r[2], r[3]) for r in ob._db.execute(COUNTED).fetchall()})
    return out


def kept(ob: Outbox) -> dict[str, tuple[int, int, int]]:
    rows = ob._db.execute("SELECT stream, messages, unpublished, bytes FROM totals").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("store"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("ack"), st.integers(0, 6), st.integers(0, 50_000)),
        st.tuples(st.just("commit"), st.integers(0, 8), st.integers(0, 50_000)),
        st.tuples(st.just("republish"), st.integers(0, 50_000), st.integers(1, 5_000)),
        st.tuples(st.just("quota"), st.integers(0, 4_000), st.integers(1, 60_000)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, keep=st.sampled_from(["puback", "committed"]))
def test_totals_follow_every_change(ops: list[tuple[str, int, int]], keep: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ob = Outbox(Path(tmp) / "o.sqlite", keep)  # type: ignore[arg-type]
        ob.bind(GW, "gtx-local", 5_000)
        mem = DeviceMemory()
        n = 0
        for op, a, b in ops:
            if op == "store":
                bodies: list[Body] = [tel(n + i) for i in range(a)]
                if b:
                    bodies.append(read(n * 1000, mem.read_id))
                _, mem = ob.store("m1", bodies, mem, signer(ts=n * 1000))
                n += 1
            elif op == "ack":
                ob.acknowledge([p.row_id for p in ob.pending(a)], now_ms=b)
            elif op == "commit":
                ob.commit_through("tx", 5_000 + a - 1, now_ms=b)
            elif op == "republish":
                ob.republish_overdue(now_ms=a, republish_ms=b)
            else:
                ob.enforce_quota(a, interval_ms=b)
            assert kept(ob) == counted(ob)
            depth = ob.depth()
            assert depth.unpublished == sum(v[1] for v in counted(ob).values())
        ob.close()


def test_an_outbox_from_before_the_totals_gets_them_on_open(tmp_path: Path) -> None:
    ob = with_reads(tmp_path, 5)
    ob.acknowledge([p.row_id for p in ob.pending(3)], now_ms=1)
    want = ob.depth()
    ob._db.executescript(
        "DROP TRIGGER totals_insert; DROP TRIGGER totals_delete; DROP TRIGGER totals_ack;"
        "DROP TABLE totals;"
    )
    ob.close()
    old = sqlite3.connect(tmp_path / "o.sqlite")
    assert old.execute("SELECT count(*) FROM sqlite_master WHERE name = 'totals'").fetchone() == (
        0,
    )
    old.close()
    readonly = Outbox(tmp_path / "o.sqlite", readonly=True)  # `gtx edge status`: counts
    assert readonly.depth() == want
    readonly.close()
    ob = Outbox(tmp_path / "o.sqlite", "committed")
    assert ob.depth() == want
    assert kept(ob) == counted(ob)
    ob.store("m1", [tel(9)], DeviceMemory(), signer())
    assert kept(ob) == counted(ob)
    ob.close()
