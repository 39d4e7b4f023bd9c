"""Zone reference prices the validators publish: values, zone tree, determinism, signing."""

from __future__ import annotations

from hub.state.prices import SEQ_PER_BLOCK, ancestors, zone_prices
from hub.state.queries import reference_price
from tests.state.harness import CHAIN, key, pub
from tests.state.test_flow import F1, F2, X, setup
from wire import envelope


def test_ancestors() -> None:
    assert ancestors("pea/ayu/sub1/f1") == ["pea", "pea/ayu", "pea/ayu/sub1", "pea/ayu/sub1/f1"]


def test_prices_cover_both_sides_and_their_ancestors() -> None:
    net = setup()
    assert zone_prices(net.app.view(), 5, [X]) == []  # no trades yet
    net.ok(net.offer("gw-s", X, 100, 300, F1, expires=X))
    net.ok(net.bid("buyer", X, 100, 400, F2, expires=X))
    prices = zone_prices(net.app.view(), 7, [X, X])
    by_zone = {p.zone: p for p in prices}
    assert sorted(by_zone) == sorted(["pea", "pea/ayu", "pea/ayu/sub1", F1, F2])
    for p in prices:
        assert (p.interval, p.price, p.energy_wh, p.height) == (X, 300, 100, 7)
    # A second trade at the resting offer's lower price moves the volume-weighted price:
    # (100 x 300 + 50 x 200) / 150 = 266 (floor).
    net.ok(net.offer("gw-s", X, 50, 200, F1, expires=X))
    net.ok(net.bid("buyer", X, 50, 400, F2, expires=X))
    after = {p.zone: p for p in zone_prices(net.app.view(), 8, [X])}
    assert sorted(after) == sorted(by_zone)
    for p in after.values():
        assert (p.energy_wh, p.price, p.height) == (150, 266, 8)
        # The same figures the API's one-zone query gives.
        ref = reference_price(net.app.view(), X, p.zone)
        assert (ref["price"], ref["energy_wh"]) == (p.price, p.energy_wh)


def test_signed_zone_price_round_trips_with_height_based_seq() -> None:
    net = setup()
    net.ok(net.offer("gw-s", X, 150, 300, F1, expires=X))
    net.ok(net.bid("buyer", X, 100, 400, F2, expires=X))
    prices = zone_prices(net.app.view(), 9, [X])
    validator = key("validator")
    envs = [
        envelope.sign(validator, CHAIN, p, 9 * SEQ_PER_BLOCK + n, X) for n, p in enumerate(prices)
    ]
    for env, p in zip(envs, prices, strict=True):
        back = envelope.parse(env.to_bytes(), CHAIN)
        assert back.body == p
        assert back.stream == "grid"
        assert back.sender == pub("validator")
    assert [e.seq for e in envs] == sorted({e.seq for e in envs})
