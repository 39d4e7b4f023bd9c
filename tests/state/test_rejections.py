"""Every rejection path, with the reason a sender can act on."""

from __future__ import annotations

import json

import pytest

from hub.errors import TxRejected
from tests.state.harness import MIN, T0, Net, key, pub
from wire.envelope import parse, sign
from wire.errors import BadSignature
from wire.kinds import Cancel, Proposal, Transfer, Vote

F1 = "pea/ayu/sub1/f1"
X = T0 + 3 * MIN


@pytest.fixture
def net() -> Net:
    n = Net(balances={"buyer": 1_000, "seller": 10})
    n.ok(
        n.register("gw", "seller", F1, ("pv", "solar", 6_000)),  # 100 Wh per 1-min interval
        n.register("gw-b", "buyer", F1, ("m", "grid", 6_000)),
    )
    return n


def test_unregistered_offer_and_read(net: Net) -> None:
    assert "unregistered" in net.fail(net.offer("stranger", X, 10, 300, F1))
    assert "unregistered" in net.fail(net.read("stranger", "pv", T0, 0, 0, "solar"))


def test_register_needs_installer_role(net: Net) -> None:
    from wire.kinds import DeviceEntry, Register

    body = Register(
        gateway=pub("x"),
        owner=pub("y"),
        zone=F1,
        devices=(DeviceEntry(name="pv", source="solar", capacity_w=1),),
    )
    assert "installer role" in net.fail(net.tx("buyer", body))


def test_replayed_and_out_of_order_seq(net: Net) -> None:
    t = net.tx("buyer", Transfer(to=pub("seller"), amount=1))
    net.ok(t)
    assert "replayed or out of order" in net.fail(t)
    old = net.tx("buyer", Transfer(to=pub("seller"), amount=1), seq=1)
    assert "not above the last committed seq" in net.fail(old)


def test_out_of_order_meter_read(net: Net) -> None:
    net.ok(net.read("gw", "pv", T0, 0, 0, "solar"), at=T0 + 1)
    net.ok(net.read("gw", "pv", T0 + MIN, 0, 50, "solar"), at=T0 + MIN)
    from wire.kinds import MeterRead

    older = MeterRead(
        device="pv", interval=T0 + MIN, import_wh=0, export_wh=60, source="solar", prev="ab" * 32
    )
    # same boundary, different content: evidence, not merely out of order
    reason = net.fail(net.tx("gw", older))
    assert "equivocation" in reason
    assert net.q("gateways", pub("gw")).suspended
    assert net.q("evidence", f"{pub('gw')}/pv/{T0 + MIN}") is not None
    assert "suspended" in net.fail(net.offer("gw", X, 10, 300, F1))


def test_meter_read_prev_mismatch_and_backwards_and_capacity(net: Net) -> None:
    net.ok(net.read("gw", "pv", T0, 0, 100, "solar"), at=T0 + 1)
    from wire.kinds import MeterRead

    wrong = MeterRead(
        device="pv", interval=T0 + MIN, import_wh=0, export_wh=150, source="solar", prev="cd" * 32
    )
    assert "out of order: prev" in net.fail(net.tx("gw", wrong), at=T0 + MIN)
    assert "went backwards" in net.fail(net.read("gw", "pv", T0 + MIN, 0, 99, "solar"))
    # the refused read still advanced the chain; 6 kW for 2 min is at most 200 Wh
    assert "over capacity" in net.fail(
        net.read("gw", "pv", T0 + 2 * MIN, 0, 301, "solar"), at=T0 + 2 * MIN
    )
    net.ok(net.read("gw", "pv", T0 + 3 * MIN, 0, 400, "solar"), at=T0 + 3 * MIN)  # 300 in 3 min
    future = net.read("gw", "pv", T0 + 10 * MIN, 0, 400, "solar")
    assert "in the future" in net.fail(future)


def test_offer_over_capacity(net: Net) -> None:
    net.ok(net.offer("gw", X, 60, 300, F1))
    reason = net.fail(net.offer("seller", X, 41, 300, F1))  # owner counts the same devices
    assert "over capacity" in reason
    assert "100 Wh" in reason


def test_under_floor_over_ceiling(net: Net) -> None:
    assert "under floor" in net.fail(net.offer("gw", X, 10, 199, F1))
    assert "over ceiling" in net.fail(net.bid("buyer", X, 10, 601, F1))


def test_unfunded_bid(net: Net) -> None:
    reason = net.fail(net.bid("buyer", X, 10_000, 500, F1))  # needs 5,400 satang
    assert "unfunded" in reason
    assert "5400" in reason


def test_after_gate_closure_and_misaligned(net: Net) -> None:
    assert "after gate closure" in net.fail(net.bid("buyer", X, 10, 300, F1), at=X - MIN)
    assert "not the start" in net.fail(net.bid("buyer", X + 5, 10, 300, F1))


def test_cancel_someone_elses(net: Net) -> None:
    o = net.offer("gw", X, 10, 300, F1)
    net.ok(o)
    assert "not to you" in net.fail(net.tx("buyer", Cancel(order=o.message_id())))


def test_transfer_unfunded_and_fee() -> None:
    net = Net(params={"tx_fee": 5}, balances={"a": 100}, validators=("v1", "v2"))
    assert "unfunded" in net.fail(net.tx("a", Transfer(to=pub("b"), amount=96)))
    net.ok(net.tx("a", Transfer(to=pub("b"), amount=95)))
    # fee 5 went to the pool and was shared: 2 each, 1 stays
    assert net.balance("a")[0] == 0
    assert net.balance("v1")[0] == 2
    assert net.balance("v2")[0] == 2
    assert net.balance("pool:fees")[0] == 1


def test_bad_signature_refused_by_parse(net: Net) -> None:
    env = net.tx("buyer", Transfer(to=pub("seller"), amount=1))
    obj = json.loads(env.to_bytes())
    obj["body"]["amount"] = 2
    with pytest.raises(BadSignature):
        parse(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode(), "gtx-test")


def test_check_tx_rejects_with_reason(net: Net) -> None:
    with pytest.raises(TxRejected, match="unfunded"):
        net.app.check_tx(net.bid("buyer", X, 10_000, 500, F1))
    with pytest.raises(TxRejected, match="no voting weight"):
        net.app.check_tx(
            net.tx(
                "buyer",
                Proposal(action="param_change", target="tx_fee", value=1, roles=(), note=""),
            )
        )
    with pytest.raises(TxRejected, match="no proposal"):
        net.app.check_tx(net.tx("auth", Vote(proposal="ab" * 32, yes=True)))


def test_check_tx_admits_a_read_just_past_the_boundary(net: Net) -> None:
    net.ok(at=T0 + MIN - 5)
    net.app.check_tx(net.read("gw", "pv", T0 + MIN, 0, 0, "solar"))
    with pytest.raises(TxRejected, match="in the future"):
        net.app.check_tx(net.read("gw", "pv", T0 + 3 * MIN, 0, 0, "solar"))


def test_a_backlog_of_chained_reads_is_admitted_and_commits_in_one_block(net: Net) -> None:
    """A gateway back from an outage sends a device's reads back to back: each `prev` is the
    read still pending before it. The mempool admits them behind it; the block judges them."""
    from hub.mempool import Mempool

    pool = Mempool(net.app)
    net.ok(net.read("gw", "pv", T0, 0, 0, "solar"), at=T0 + 1)
    net.ok(at=T0 + 4 * MIN + 1)
    backlog = [net.read("gw", "pv", T0 + i * MIN, 0, 40 * i, "solar") for i in range(1, 5)]
    # The second read alone fails admission: its `prev` is not on chain yet.
    with pytest.raises(TxRejected, match="out of order: prev"):
        net.app.check_tx(backlog[1])
    for env in backlog:
        assert pool.add(env)
    # Behind them, what the predecessors cannot change is still checked.
    taken = net.tx("gw", Transfer(to=pub("buyer"), amount=1), seq=backlog[2].seq)
    with pytest.raises(TxRejected, match="already pending"):
        pool.add(taken)
    foreign = sign(key("gw"), "other-chain", Transfer(to=pub("buyer"), amount=1), 99, T0)
    with pytest.raises(TxRejected, match="is for chain 'other-chain'"):
        pool.add(foreign)
    txs = list(pool.reap(100))
    assert txs == backlog
    net.ok(*txs)
    assert net.q("meters", f"{pub('gw')}/pv").last_id == backlog[-1].message_id()


def test_a_queued_transaction_that_turns_out_invalid_fails_in_its_block(net: Net) -> None:
    from hub.mempool import Mempool

    pool = Mempool(net.app)
    net.ok(net.read("gw", "pv", T0, 0, 0, "solar"), at=T0 + 1)
    net.ok(at=T0 + 3 * MIN + 1)
    first = net.read("gw", "pv", T0 + MIN, 0, 50, "solar")
    over = net.read("gw", "pv", T0 + 2 * MIN, 0, 10_000, "solar")  # 6 kW: 100 Wh a minute
    assert pool.add(first)
    assert pool.add(over)
    results = net.block(*pool.reap(10))
    assert [r.ok for r in results] == [True, False]
    assert "over capacity" in results[1].reason
