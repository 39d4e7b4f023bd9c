"""Properties over random order flows and meter data (hypothesis).

A naive reference matcher (brute force over every open order) decides what each accepted
order should trade; the state machine must agree fill for fill. Orders may expire a few
blocks after placement, long before their gate: an expired resting order matches nothing.
After every block: money is conserved, escrow is never negative and equals what open bids
and unsettled trades lock, no trade lies outside either limit, no feeder carries more than
its capacity, and the governance stake total equals a count over the accounts. After
settlement: per interval, traded = delivered + shortfall and no seller pool is credited more
than its meters exported. Two independent apps fed the same blocks, and an app restored from
a snapshot mid-way, reach the same state hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hub.state.app import EnergyApp
from hub.state.queries import statement_of, trades_of
from hub.state.zones import route
from tests.state.harness import MIN, T0, Net, pub, replay
from wire.kinds import Cancel

X = T0 + 3 * MIN
ZONES = ("pea/a/s1/f1", "pea/a/s1/f2", "pea/a/s2/f1", "mea/b/s1/f1")
SELLERS = ("s0", "s1", "s2", "s3")
BUYERS = ("b0", "b1", "b2")
CAP = 150  # Wh per feeder per interval (small, so caps bind)
PER_HOP, WHEEL_CAP = 10, 40


@dataclass
class RefOrder:
    id: str
    side: str
    party: str
    zone: str
    price: int
    sources: tuple[str, ...]
    rem: int
    seq: int
    expires: int


@dataclass
class Ref:
    """The reference market: every open order in a list, matched by brute force."""

    orders: list[RefOrder] = field(default_factory=list)
    flows: dict[str, int] = field(default_factory=dict)
    trades: list[tuple[str, int, int]] = field(default_factory=list)  # (maker id, Wh, price)

    def submit(self, o: RefOrder, time_ms: int) -> None:
        while o.rem > 0:
            best = None
            for r in self.orders:
                if r.side == o.side or r.rem <= 0 or r.party == o.party:
                    continue
                if r.expires <= time_ms:  # expired while resting: no longer matches
                    continue
                bid, offer = (o, r) if o.side == "bid" else (r, o)
                if offer.sources[0] not in bid.sources or offer.price > bid.price:
                    continue
                rt = route(offer.zone, bid.zone)
                room = min([CAP - self.flows.get(f, 0) for f in rt.feeders] + [o.rem, r.rem])
                if room <= 0:
                    continue
                wheel = min(rt.distance * PER_HOP, WHEEL_CAP)
                rank = ((r.price + wheel) if o.side == "bid" else -r.price, rt.distance, r.seq)
                if best is None or rank < best[0]:
                    best = (rank, r, room, rt.feeders)
            if best is None:
                break
            _, r, room, feeders = best
            r.rem -= room
            o.rem -= room
            for f in feeders:
                self.flows[f] = self.flows.get(f, 0) + room
            self.trades.append((r.id, room, r.price))
        self.orders.append(o)

    def cancel(self, oid: str) -> None:
        for r in self.orders:
            if r.id == oid:
                r.rem = 0


action = st.one_of(
    st.tuples(
        st.just("offer"),
        st.sampled_from(SELLERS),
        st.integers(1, 120),
        st.integers(200, 400),
        st.sampled_from(("solar", "wind")),
        st.integers(0, 6),  # expires this many blocks after placement; 0: with the interval
    ),
    st.tuples(
        st.just("bid"),
        st.sampled_from((*BUYERS, "s0")),
        st.integers(1, 150),
        st.integers(150, 450),
        st.sampled_from((("solar",), ("wind",), ("solar", "wind"))),
        st.integers(0, 6),
    ),
    st.tuples(
        st.just("cancel"), st.integers(0, 30), st.just(0), st.just(0), st.just(""), st.just(0)
    ),
)


def _setup() -> Net:
    net = Net(
        params={
            "feeder_capacity_wh": CAP,
            "wheeling_per_hop": PER_HOP,
            "wheeling_cap": WHEEL_CAP,
            "tx_fee": 1,
            "gov_stake_wh_per_vote": 7,  # odd, so the running total's rounding is tested
        },
        balances={**{b: 2_000 for b in BUYERS}, **{f"gw-{s}": 50 for s in SELLERS}, "s0": 50},
        validators=("v1", "v2", "v3"),
    )
    regs = [
        net.register(f"gw-{s}", s, ZONES[i], ("pv", "solar", 6_000), ("wt", "wind", 3_000))
        for i, s in enumerate(SELLERS)
    ]
    regs += [
        net.register(f"gw-{b}", b, ZONES[i], ("m", "grid", 20_000)) for i, b in enumerate(BUYERS)
    ]
    net.ok(*regs)
    return net


def _total_money(app: EnergyApp) -> int:
    return sum(a.balance + a.escrow for a in app._store.tables["accounts"].values())


def _check_invariants(net: Net, money: int) -> None:
    app = net.app
    assert _total_money(app) == money
    view = app.view()
    locked: dict[str, int] = {}
    for o in app._store.tables["orders"].values():
        assert o.escrow >= 0
        assert 0 <= o.remaining_wh <= o.energy_wh
        if o.side == "bid" and o.status == "open":
            locked[o.sender] = locked.get(o.sender, 0) + o.escrow
        elif o.status != "open":
            assert o.escrow == 0
    for t in app._store.tables["trades"].values():
        if view.get("settlements", t.id) is None:
            locked[t.buyer] = locked.get(t.buyer, 0) + t.escrow
        offer, bid = view.get("orders", t.offer), view.get("orders", t.bid)
        assert offer.price <= t.price <= bid.price
        assert t.source in bid.sources
        assert offer.party != bid.party
    for k, a in app._store.tables["accounts"].items():
        assert a.escrow >= 0
        assert a.escrow == locked.get(k, 0), k
    for k, used in app._store.tables["flows"].items():
        assert used <= CAP, k
    stake = sum(a.traded_wh // 7 for a in app._store.tables["accounts"].values())
    assert view.meta().stake_weight == stake


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(action, min_size=4, max_size=30),
    cuts=st.lists(st.integers(1, 4), min_size=1, max_size=24),
    exports=st.lists(st.integers(0, 100), min_size=4, max_size=4),
    winds=st.lists(st.integers(0, 50), min_size=4, max_size=4),
    restore_at=st.integers(0, 10),
)
def test_random_order_flow(
    actions: list[tuple[str, str | int, int, int, object, int]],
    cuts: list[int],
    exports: list[int],
    winds: list[int],
    restore_at: int,
) -> None:
    net = _setup()
    money = _total_money(net.app)
    ref = Ref()
    placed: list[str] = []
    seq = 0
    i = 0
    blocks = 0
    snapshot = None
    while i < len(actions):
        cut = cuts[blocks % len(cuts)]
        chunk = actions[i : i + cut]
        i += cut
        txs, refs = [], []
        now = net.time_ms + 1  # this block's time (the harness steps 1 ms a block)
        for kind, who, a, b, c, e in chunk:
            expires = now + e if e else X
            if kind == "offer":
                assert isinstance(who, str)
                seller = f"gw-{who}"
                zone = ZONES[SELLERS.index(who)]
                env = net.offer(seller, X, a, b, zone, source=str(c), expires=expires)
                refs.append(
                    (
                        "o",
                        RefOrder(env.message_id(), "offer", who, zone, b, (str(c),), a, 0, expires),
                    )
                )
            elif kind == "bid":
                assert isinstance(who, str)
                zone = ZONES[BUYERS.index(who)] if who != "s0" else ZONES[0]
                sources = tuple(sorted(c))  # type: ignore[call-overload]
                env = net.bid(who, X, a, b, zone, sources=sources, expires=expires)
                order = RefOrder(env.message_id(), "bid", who, zone, b, sources, a, 0, expires)
                refs.append(("o", order))
            else:
                assert isinstance(who, int)
                if not placed:
                    continue
                oid = placed[who % len(placed)]
                owner = next(r for r in ref.orders if r.id == oid)
                sender = f"gw-{owner.party}" if owner.side == "offer" else owner.party
                env = net.tx(sender, Cancel(order=oid))
                refs.append(("c", oid))
            txs.append(env)
        results = net.block(*txs)
        blocks += 1
        for res, (what, item) in zip(results, refs, strict=True):
            if not res.ok:
                continue
            if what == "o":
                assert isinstance(item, RefOrder)
                seq += 1
                item.seq = seq
                ref.submit(item, now)
                placed.append(item.id)
            else:
                assert isinstance(item, str)
                ref.cancel(item)
        got = [
            (t["bid"] if t["maker"] == "bid" else t["offer"], t["energy_wh"], t["price"])
            for t in trades_of(net.app.view(), X)
        ]
        assert got == ref.trades
        _check_invariants(net, money)
        if blocks == restore_at:
            snapshot = (net.app.snapshot(), len(net.blocks))
    event(f"trades: {min(len(ref.trades), 8)}")
    expired = [o for o in net.app._store.tables["orders"].values() if o.status == "expired"]
    event(f"orders expired while resting: {min(len(expired), 3)}")
    # Meter data: each seller's devices export something over [X, X + 1 min).
    reads = []
    for s in SELLERS:
        reads += [
            net.read(f"gw-{s}", "pv", X, 0, 1_000, "solar"),
            net.read(f"gw-{s}", "wt", X, 0, 500, "wind"),
        ]
    net.ok(*reads, at=X)
    reads = []
    for n, s in enumerate(SELLERS):
        reads += [
            net.read(f"gw-{s}", "pv", X + MIN, 0, 1_000 + exports[n], "solar"),
            net.read(f"gw-{s}", "wt", X + MIN, 0, 500 + winds[n], "wind"),
        ]
    net.ok(*reads, at=X + MIN)
    net.ok(at=X + MIN + 30_000)
    _check_invariants(net, money)
    assert all(a.escrow == 0 for a in net.app._store.tables["accounts"].values())
    statement = statement_of(net.app.view(), X)
    if statement is not None:
        assert statement["traded_wh"] == statement["delivered_wh"] + statement["shortfall_wh"]
        view = net.app.view()
        for n, s in enumerate(SELLERS):
            for source, measured in (("solar", exports[n]), ("wind", winds[n])):
                delivered = sum(
                    view.get("settlements", t["id"]).delivered_wh
                    for t in trades_of(view, X)
                    if view.get("orders", t["offer"]).party == pub(s) and t["source"] == source
                )
                assert delivered <= measured
    # Determinism: an independent app, and one restored from a mid-way snapshot.
    assert replay(net.genesis, net.blocks).state_hash() == net.app.state_hash()
    if snapshot is not None:
        other = EnergyApp(net.genesis)
        other.restore(snapshot[0])
        for ctx, txs in net.blocks[snapshot[1] :]:
            other.commit(other.execute(ctx, txs))
        assert other.state_hash() == net.app.state_hash()
