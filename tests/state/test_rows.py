"""Row persistence: a block's changed rows, applied to the rows after the previous block,
rebuild exactly the committed state (hash, snapshot and order books); a block writes far
less than the whole state."""

from __future__ import annotations

import pytest

from hub.application import BlockContext
from hub.errors import HubError
from hub.state.app import EnergyApp
from tests.state.harness import CHAIN, MIN, Net, pub
from tests.state.test_flow import F1, F2, X, setup


def _rows(net: Net) -> tuple[dict[str, bytes | None], list[int]]:
    """Replay `net`'s blocks on a fresh app, keeping the rows each block changed."""
    app = EnergyApp(net.genesis)
    rows: dict[str, bytes | None] = {}
    written: list[int] = []
    for ctx, txs in net.blocks:
        ex = app.execute(ctx, txs)
        app.commit(ex)
        changes = app.state_changes(ex)
        written.append(sum(len(k) + len(v or b"") for k, v in changes.items()))
        rows.update(changes)
    return rows, written


def test_rows_rebuild_the_committed_state_with_its_books() -> None:
    net = setup()
    net.ok(net.offer("gw-s", X, 150, 300, F1), net.bid("buyer", X, 40, 400, F2))
    net.ok(net.bid("buyer", X + MIN, 10, 400, F2), net.offer("gw-s", X + MIN, 30, 250, F1))
    net.ok(net.read("gw-s", "pv", X, 0, 1_000, "solar"), at=X + 1)
    net.ok(net.read("gw-s", "pv", X + MIN, 0, 1_100, "solar"), at=X + MIN + 1)
    net.ok(at=X + MIN + 30_000)  # settles X: certificates, statement, escrow released
    rows, _ = _rows(net)
    fresh = EnergyApp(net.genesis)
    fresh.restore_rows(sorted(rows.items()))
    assert fresh.state_hash() == net.app.state_hash()
    assert fresh.snapshot() == net.app.snapshot()
    # Rows come in any order (one per key).
    again = EnergyApp(net.genesis)
    again.restore_rows(sorted(rows.items(), reverse=True))
    assert again.state_hash() == net.app.state_hash()
    # The rebuilt book of the open interval matches too: the same bid trades the same way.
    ctx = BlockContext(
        CHAIN, net.height + 1, net.time_ms + 1, pub("val1"), net.app.validators(), ()
    )
    bid = net.bid("buyer", X + MIN, 5, 400, F2)
    assert fresh.execute(ctx, [bid]).state_hash == net.app.execute(ctx, [bid]).state_hash


def test_a_deleted_genesis_row_stays_deleted() -> None:
    net = setup()
    app = EnergyApp(net.genesis)
    (table, key) = ("roles", pub("auth"))
    assert app.view().get(table, key) is not None
    app.restore_rows([(f"{table}/{key}", None)])
    assert app.view().get(table, key) is None
    assert app.state_hash() != EnergyApp(net.genesis).state_hash()


def test_a_block_writes_only_what_it_changed() -> None:
    net = setup()
    for i in range(60):  # a growing state: many open orders over many intervals
        net.ok(net.offer("gw-s", X + (i % 20) * MIN, 1 + i % 5, 300, F1))
    net.ok()  # an empty block
    _, written = _rows(net)
    state = len(net.app.snapshot())
    assert written[-1] < 600, written[-1]  # meta (height, time) only
    assert max(written[2:]) < state // 10, (written, state)


def test_restore_rows_refuses_foreign_or_incomplete_rows() -> None:
    app = EnergyApp(setup().genesis)
    with pytest.raises(HubError, match="names no EnergyApp table"):
        app.restore_rows([("nope/x", b"1")])
    with pytest.raises(HubError, match="unreadable"):
        app.restore_rows([("feeders/pea", b"{nope")])
