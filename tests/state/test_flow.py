"""Scenario: register, read, offer, bid, trade, settle, certificates (pre-state, inputs, post)."""

from __future__ import annotations

from hub.state.queries import (
    account_info,
    book_view,
    certificates_of,
    reference_price,
    settlements_of,
    statement_of,
    trades_of,
)
from hub.state.settlement import sign_statement, verify_statement
from tests.state.harness import CHAIN, MIN, T0, Net, key, pub, replay

F1 = "pea/ayu/sub1/f1"
F2 = "pea/ayu/sub1/f2"
X = T0 + 3 * MIN  # delivery interval [X, X + 1 min)


def setup() -> Net:
    net = Net(balances={"buyer": 10_000, "seller": 1_000})
    net.ok(
        net.register("gw-s", "seller", F1, ("pv", "solar", 10_000)),
        net.register("gw-b", "buyer", F2, ("mains", "grid", 20_000)),
    )
    return net


def test_trade_settles_with_shortfall_and_certificate() -> None:
    net = setup()
    # 10 kW for 1 min can make 166 Wh; offer 150 Wh at 300 satang/kWh from the gateway.
    offer = net.offer("gw-s", X, 150, 300, F1, expires=X)
    bid = net.bid("buyer", X, 100, 400, F2, expires=X)
    net.ok(offer)
    net.ok(bid)
    # Bid escrows ceil(100 * (400 + 40) / 1000) = 44 satang.
    assert net.balance("buyer") == (10_000 - 44, 44)
    (trade,) = trades_of(net.app.view(), X)
    assert trade["price"] == 300
    assert trade["energy_wh"] == 100
    assert trade["wheeling"] == 20  # f1 -> sub1 -> f2: 2 hops x 10
    assert trade["seller"] == pub("gw-s")
    assert trade["buyer"] == pub("buyer")
    book = book_view(net.app.view(), X, None)
    assert [o["remaining_wh"] for o in book["offers"]] == [50]
    assert book["bids"] == []
    # Reads at both boundaries: the seller exported 80 Wh, the buyer imported 90 Wh.
    net.ok(
        net.read("gw-s", "pv", X, 0, 1_000, "solar"),
        net.read("gw-b", "mains", X, 5_000, 0, "grid"),
        at=X + 1,
    )
    net.ok(
        net.read("gw-s", "pv", X + MIN, 0, 1_080, "solar"),
        net.read("gw-b", "mains", X + MIN, 5_090, 0, "grid"),
        at=X + MIN + 1,
    )
    buyer0, seller0 = net.balance("buyer"), net.balance("gw-s")
    net.ok(at=X + MIN + 30_000)  # grace passed: settlement runs in this block
    (s,) = settlements_of(net.app.view(), X)
    assert (s["delivered_wh"], s["shortfall_wh"]) == (80, 20)
    # cost = floor(80 * 320 / 1000) = 25; seller floor(80*300/1000) = 24; wheeling 1; rounding 0
    assert (s["paid"], s["seller_received"], s["wheeling_fee"], s["rounding"]) == (25, 24, 1, 0)
    assert s["imbalance_charge"] == 12  # floor(20 * 600 / 1000)
    assert s["refund"] == 44 - 25
    assert net.balance("buyer") == (buyer0[0] + 44 - 25, 0)
    assert net.balance("gw-s")[0] == seller0[0] + 24 - 12
    assert net.balance("grid:pea") == (1 + 12, 0)
    (cert,) = certificates_of(net.app.view(), pub("buyer"))
    assert cert["energy_wh"] == 80
    assert cert["source"] == "solar"
    assert cert["zone"] == F1
    assert cert["co2_avoided_g"] == 80 * 400 // 1000
    statement = statement_of(net.app.view(), X)
    assert statement is not None
    assert statement["traded_wh"] == 100
    assert statement["delivered_wh"] == 80
    assert len(statement["hash"]) == 64
    sig = sign_statement(key("val1"), CHAIN, X, statement["hash"])
    assert verify_statement(pub("val1"), CHAIN, X, statement["hash"], sig)
    assert not verify_statement(pub("val1"), CHAIN, X + MIN, statement["hash"], sig)
    zones = {z["zone"]: z for z in statement["zones"]}
    assert zones[F2]["measured_import_wh"] == 90
    assert reference_price(net.app.view(), X, F1) == {
        "interval": X,
        "zone": F1,
        "price": 300,
        "energy_wh": 100,
    }
    # Accounts report committed seqs so gateways know what to re-publish.
    assert account_info(net.app.view(), pub("gw-s"))["seq"] == net.seqs["gw-s"]
    # ... and whether they are registered gateways (a new one re-sends what was refused).
    assert account_info(net.app.view(), pub("gw-s"))["registered"] is True
    assert account_info(net.app.view(), pub("seller"))["registered"] is False  # its owner
    assert replay(net.genesis, net.blocks).state_hash() == net.app.state_hash()


def test_gate_closure_closes_book_and_releases_escrow() -> None:
    net = setup()
    net.ok(net.bid("buyer", X, 100, 400, F2, expires=X))
    assert net.balance("buyer")[1] == 44
    net.ok(at=X - MIN)  # gate closure instant
    assert net.balance("buyer") == (10_000, 0)
    assert book_view(net.app.view(), X, None)["bids"] == []


def test_cancel_releases_unfilled_part() -> None:
    net = setup()
    net.ok(net.offer("gw-s", X, 40, 300, F1))
    bid = net.bid("buyer", X, 100, 400, F2)
    net.ok(bid)
    # 40 Wh filled, escrow moved to the trade: ceil(40*440/1000) = 18; bid keeps 44 - 18.
    from wire.kinds import Cancel

    net.ok(net.tx("buyer", Cancel(order=bid.message_id())))
    assert net.balance("buyer") == (10_000 - 18, 18)
    reason = net.fail(net.tx("buyer", Cancel(order=bid.message_id())))
    assert "cancelled" in reason


def test_nearer_seller_wins_at_equal_effective_price() -> None:
    net = Net(balances={"buyer": 10_000})
    near, far = "pea/a/s1/f1", "pea/a/s2/f1"
    net.ok(
        net.register("gw-far", "far", far, ("pv", "solar", 10_000)),
        net.register("gw-near", "near", near, ("pv", "solar", 10_000)),
        net.register("gw-b", "buyer", near, ("m", "grid", 10_000)),
    )
    # far: 280 + 4 hops*10 = 320 effective; near: 320 + 0 = 320. Equal: nearer wins.
    net.ok(net.offer("gw-far", X, 50, 280, far))
    net.ok(net.offer("gw-near", X, 50, 320, near))
    net.ok(net.bid("buyer", X, 50, 400, near))
    (trade,) = trades_of(net.app.view(), X)
    assert trade["seller"] == pub("gw-near")


def test_feeder_capacity_caps_cross_zone_flow() -> None:
    net = Net(params={"feeder_capacity_wh": 30}, balances={"buyer": 10_000})
    net.ok(
        net.register("gw-s", "seller", F1, ("pv", "solar", 10_000)),
        net.register("gw-b", "buyer", F2, ("m", "grid", 10_000)),
    )
    net.ok(net.offer("gw-s", X, 100, 300, F1))
    net.ok(net.bid("buyer", X, 100, 400, F2))
    assert sum(t["energy_wh"] for t in trades_of(net.app.view(), X)) == 30


def test_no_self_trade_between_gateway_and_its_owner() -> None:
    net = Net(balances={"owner": 10_000})
    net.ok(net.register("gw", "owner", F1, ("pv", "solar", 10_000)))
    net.ok(net.offer("gw", X, 50, 300, F1))
    net.ok(net.bid("owner", X, 50, 400, F1))
    assert trades_of(net.app.view(), X) == []


def test_cancel_after_the_gateway_changed_owner_frees_the_old_owners_capacity() -> None:
    from wire.kinds import Cancel

    net = setup()
    offer = net.offer("gw-s", X, 150, 300, F1)
    net.ok(offer)
    old_owner = f"{X}/{pub('seller')}@{F1}/solar"
    assert net.q("offered", old_owner) == 150
    net.ok(net.register("gw-s", "seller2", F1, ("pv", "solar", 10_000)))  # sold the house
    net.ok(net.tx("gw-s", Cancel(order=offer.message_id())))
    assert net.q("offered", old_owner) is None
    assert net.q("offered", f"{X}/{pub('gw-s')}/solar") is None
