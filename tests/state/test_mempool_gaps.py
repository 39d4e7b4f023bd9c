"""The mempool holds a gateway's transaction behind a missing seq until the re-send fills
the gap (or the hold runs out), against the real state machine."""

from __future__ import annotations

import pytest

from hub.errors import TxRejected, Unregistered
from hub.mempool import Mempool
from tests.state.harness import MIN, T0, ZERO, Net, pub
from wire.kinds import MeterRead, Transfer

F1 = "pea/ayu/sub1/f1"
HOLD = 10_000


def setup() -> tuple[Net, Mempool, list[int]]:
    net = Net(balances={"buyer": 1_000})
    net.ok(net.register("gw", "buyer", F1, ("pv", "solar", 6_000), ("m", "grid", 6_000)))
    clock = [0]
    return net, Mempool(net.app, gap_hold_ms=HOLD, clock=lambda: clock[0]), clock


def test_a_gateway_tx_behind_a_lost_one_waits_for_the_resend() -> None:
    net, pool, clock = setup()
    net.ok(net.read("gw", "pv", T0, 0, 0, "solar"), at=T0 + 1)
    net.ok(at=T0 + 2 * MIN + 1)
    assert net.app.gapless_next(pub("gw")) == 2
    lost = net.read("gw", "pv", T0 + MIN, 0, 50, "solar")  # seq 2: dropped by the broker
    later = net.read("gw", "m", T0 + MIN, 700, 0, "grid")  # seq 3, another device
    assert pool.add(later)
    clock[0] = HOLD - 1
    assert not pool.has_txs()
    assert pool.reap(10) == []
    assert pool.held() == 1
    # The gateway re-sends its uncommitted tail in order: the gap fills, both go together.
    assert pool.add(lost)
    assert not pool.add(later)  # already pending
    assert pool.has_txs()
    assert pool.held() == 0
    txs = list(pool.reap(10))
    assert txs == [lost, later]
    net.ok(*txs)
    assert net.app.gapless_next(pub("gw")) == 4


def test_the_hold_runs_out_and_the_later_tx_goes_as_it_is() -> None:
    net, pool, clock = setup()
    net.ok(net.read("gw", "pv", T0, 0, 0, "solar"), at=T0 + 1)
    net.ok(at=T0 + 2 * MIN + 1)
    net.read("gw", "pv", T0 + MIN, 0, 50, "solar")  # seq 2, never arrives
    later = net.read("gw", "m", T0 + MIN, 700, 0, "grid")
    after = net.read("gw", "m", T0 + 2 * MIN, 800, 0, "grid")
    clock[0] = 1_000
    assert pool.add(later)
    assert pool.add(after)
    assert pool.held() == 2
    clock[0] = 1_000 + HOLD
    assert pool.reap(10) == [later, after]
    net.ok(later, after)


def test_clients_and_a_gateways_first_seq_are_never_held() -> None:
    net, pool, _ = setup()
    # The buyer's client signs with clock-based seqs: gaps are normal.
    net.ok(net.tx("buyer", Transfer(to=pub("seller"), amount=1), seq=5))
    gap = net.tx("buyer", Transfer(to=pub("seller"), amount=1), seq=1_700_000_000_000)
    assert net.app.gapless_next(pub("buyer")) is None
    assert pool.add(gap)
    # A registered gateway's first transaction may have any seq (its outbox started at
    # its creation time in unix ms).
    body = MeterRead(device="m", interval=T0, import_wh=0, export_wh=0, source="grid", prev=ZERO)
    first = net.tx("gw", body, seq=1_700_000_000_001)
    assert net.app.gapless_next(pub("gw")) == 0
    assert pool.add(first)
    assert pool.held() == 0
    assert set(pool.reap(10)) == {gap, first}
    # ... but not the one after a hole behind it.
    body = MeterRead(device="pv", interval=T0, import_wh=0, export_wh=0, source="solar", prev=ZERO)
    after_hole = net.tx("gw", body, seq=1_700_000_000_003)
    assert pool.add(after_hole)
    assert pool.held() == 1
    assert set(pool.reap(10)) == {gap, first}


def test_a_seq_this_pool_refused_is_no_gap() -> None:
    net, pool, _ = setup()
    net.ok(net.read("gw", "pv", T0, 0, 0, "solar"), at=T0 + 1)
    net.ok(at=T0 + 2 * MIN + 1)
    body = MeterRead(
        device="heat-pump", interval=T0 + MIN, import_wh=1, export_wh=0, source="grid", prev=ZERO
    )
    unknown = net.tx("gw", body)  # seq 2: a device the installer did not register
    with pytest.raises(TxRejected, match="not registered"):
        pool.add(unknown)
    later = net.read("gw", "m", T0 + MIN, 700, 0, "grid")  # seq 3 goes without a wait
    assert pool.add(later)
    assert pool.held() == 0
    assert pool.reap(10) == [later]


def unregistered() -> tuple[Net, Mempool, list[int]]:
    net = Net(balances={"buyer": 1_000})
    clock = [0]
    return net, Mempool(net.app, gap_hold_ms=HOLD, clock=lambda: clock[0]), clock


def test_a_resend_straddling_the_registration_loses_no_read() -> None:
    net, pool, clock = unregistered()
    first = net.read("gw", "m", T0, 0, 0, "grid")  # seq 1
    second = net.read("gw", "m", T0 + MIN, 70, 0, "grid")  # seq 2, chains to seq 1
    with pytest.raises(Unregistered, match="unregistered"):
        pool.add(first)  # reaches this validator just before the registration commits
    net.ok(net.register("gw", "buyer", F1, ("m", "grid", 6_000)), at=T0 + 1)
    assert net.app.gapless_next(pub("gw")) == 0
    clock[0] = 1_000
    assert pool.add(second)  # ... and the next one just after: it waits for the first
    assert pool.held() == 1
    assert not pool.has_txs()
    clock[0] = HOLD  # the gateway's next re-send brings the first again, in order
    assert pool.add(first)
    assert pool.held() == 0
    assert pool.reap(10) == [first, second]
    net.ok(first, second, at=T0 + 2 * MIN + 1)
    assert net.app.gapless_next(pub("gw")) == 3


def test_a_registered_gateways_chain_starts_at_its_first_seq_the_pool_has() -> None:
    net, pool, _ = unregistered()
    lost = net.read("gw", "m", T0, 0, 0, "grid")  # seq 1: never reached this validator
    second = net.read("gw", "m", T0 + MIN, 70, 0, "grid")  # seq 2: refused, unregistered
    with pytest.raises(Unregistered):
        pool.add(second)
    net.ok(net.register("gw", "buyer", F1, ("m", "grid", 6_000)), at=T0 + 1)
    # The re-send goes in seq order; the first seq this pool sees starts the chain.
    assert pool.add(lost)
    assert pool.add(second)
    assert pool.held() == 0
    assert pool.reap(10) == [lost, second]
    # Without a re-send of the refused one, what follows it goes when the hold runs out.
    net2, pool2, clock2 = unregistered()
    a = net2.read("gw", "m", T0, 0, 0, "grid")
    b = net2.read("gw", "m", T0 + MIN, 70, 0, "grid")
    with pytest.raises(Unregistered):
        pool2.add(a)
    net2.ok(net2.register("gw", "buyer", F1, ("m", "grid", 6_000)), at=T0 + 1)
    assert pool2.add(b)
    assert pool2.reap(10) == []
    clock2[0] = HOLD
    assert pool2.reap(10) == [b]


def test_a_seq_refused_for_another_reason_after_the_registration_is_no_gap() -> None:
    net, pool, _ = unregistered()
    body = MeterRead(
        device="boiler", interval=T0, import_wh=1, export_wh=0, source="grid", prev=ZERO
    )
    stray = net.tx("gw", body)  # seq 1: a device the installer did not register
    good = net.read("gw", "m", T0, 0, 0, "grid")  # seq 2
    with pytest.raises(Unregistered):
        pool.add(stray)
    net.ok(net.register("gw", "buyer", F1, ("m", "grid", 6_000)), at=T0 + 1)
    with pytest.raises(TxRejected, match="not registered on this gateway"):
        pool.add(stray)  # the re-send: refused again, for good this time
    assert pool.add(good)
    assert pool.held() == 0
    assert pool.reap(10) == [good]
