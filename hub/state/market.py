"""The energy market's transactions: `offer`, `bid`, `cancel`; gate closure and expiry.

An order is checked in full before anything is written: the interval is a delivery interval
start, ahead of gate closure and within the horizon; the sender is a registered gateway or
the owner of one in the order's zone; an offer is at or above the price floor and within the
capacity of the sender's devices of that source for the interval; a bid is at or below the
time-of-use ceiling and its maximum cost, ceil(Wh x (price + wheeling cap) / 1000) satang,
is escrowed at once. Then it is matched (`matching.match`) and the rest rests in the book.

Each fill moves the bid's share of escrow, ceil-difference of its filled Wh, from the bid to
the trade, so the sum over fills of one bid is exactly what the bid locked; settlement
spends it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.errors import TxRejected
from hub.state.accounts import charge_fee, lock, release, require_funds
from hub.state.book import Order, Status
from hub.state.matching import Fill, Network, match
from hub.state.params import ceiling_for
from hub.state.record import Record
from hub.state.registry import capacity_wh, gateway, owned, party, trader_zone_gateways
from wire.envelope import Envelope
from wire.kinds import Bid, Cancel, Offer

if TYPE_CHECKING:
    from hub.state.state import State

__all__ = ["IntervalInfo", "Trade", "cancel", "close_gates", "place_order"]


@dataclass(frozen=True, slots=True)
class IntervalInfo(Record):
    """Counters of one delivery interval (table `intervals`, key: its start ms)."""

    orders: int = 0
    """Orders accepted for it (ids in table `iorders`, keys `start:n`)."""
    trades: int = 0
    """Trades made (table `trades`, keys `start:n`)."""
    closed: bool = False
    """Gate closed: the book is gone, open orders were closed."""
    settled: bool = False
    """Settled: every trade has a settlement record and the statement exists."""


@dataclass(frozen=True, slots=True)
class Trade(Record):
    """One match between a bid and an offer (table `trades`, key `interval:n`)."""

    id: str
    """`interval:n`, n counting from 0 within the interval."""
    interval: int
    """Delivery interval start, unix ms."""
    bid: str
    """Bid order id."""
    offer: str
    """Offer order id."""
    buyer: str
    """Account that signed the bid (pays)."""
    seller: str
    """Account that signed the offer (is paid)."""
    buyer_zone: str
    """Zone of the buyer."""
    seller_zone: str
    """Zone of the seller."""
    source: str
    """Source of the energy."""
    energy_wh: int
    """Energy traded, Wh."""
    price: int
    """Trade price, satang/kWh."""
    wheeling: int
    """Wheeling fee per kWh the buyer pays on top, satang/kWh."""
    feeders: tuple[str, ...]
    """Feeders crossed."""
    escrow: int
    """Satang of the buyer locked for this trade until settlement."""
    maker: str
    """Side that was resting: `offer` or `bid`."""
    height: int
    """Height of the block that made it."""
    time_ms: int
    """Time of that block, unix ms."""


def interval_info(st: State, interval: int) -> IntervalInfo:
    """Counters of `interval` (empty when it has no orders)."""
    info = st.get("intervals", str(interval))
    return info if info is not None else IntervalInfo()


def _check_timing(st: State, interval: int, expires: int) -> None:
    p = st.params
    if interval % p.interval_ms:
        raise TxRejected(
            f"interval {interval} is not the start of a delivery interval "
            f"(a multiple of {p.interval_ms} ms)"
        )
    gate = interval - p.gate_closure_s * 1000
    if st.time_ms >= gate:
        raise TxRejected(
            f"after gate closure: orders for interval {interval} closed at {gate} "
            f"(block time {st.time_ms}); order for a later interval"
        )
    if interval - st.time_ms > p.horizon_s * 1000:
        raise TxRejected(f"interval {interval} is more than {p.horizon_s} s ahead")
    if expires <= st.time_ms:
        raise TxRejected(f"expired: expires {expires} is not after block time {st.time_ms}")


def _scope_keys(
    interval: int, owner: str, sender: str, from_gateway: bool, zone: str, source: str
) -> list[str]:
    """`offered`-table keys an offer counts against.

    The owner's sites in the zone, and the gateway itself when a gateway sent it.
    """
    keys = [f"{interval}/{owner}@{zone}/{source}"]
    if from_gateway:
        keys.append(f"{interval}/{sender}/{source}")
    return keys


def _scopes(st: State, tx: Envelope, body: Offer) -> list[tuple[str, int]]:
    """Capacity scopes an offer counts against: (offered-table key, capacity Wh)."""
    owner = party(st, tx.sender)
    from_gateway = gateway(st, tx.sender) is not None
    same_zone = []
    for key in owned(st, owner):
        g = gateway(st, key)
        if g is not None and g.zone == body.zone and not g.suspended:
            same_zone.append(key)
    keys = _scope_keys(body.interval, owner, tx.sender, from_gateway, body.zone, body.source)
    caps = [capacity_wh(st, tuple(same_zone), body.source)]
    if from_gateway:
        caps.append(capacity_wh(st, (tx.sender,), body.source))
    return list(zip(keys, caps, strict=True))


def place_order(st: State, tx: Envelope, body: Offer | Bid) -> None:
    """Apply an `offer` or `bid`: check, escrow, match, rest.

    Raises:
        TxRejected: with the rule the order breaks.
    """
    p = st.params
    _check_timing(st, body.interval, body.expires)
    what = "sell" if isinstance(body, Offer) else "buy"
    gateways = trader_zone_gateways(st, tx.sender, body.zone, what)
    escrow = 0
    scopes: list[tuple[str, int]] = []
    if isinstance(body, Offer):
        if body.price < p.price_floor:
            raise TxRejected(
                f"under floor: price {body.price} satang/kWh is below the floor {p.price_floor}"
            )
        scopes = _scopes(st, tx, body)
        for key, cap in scopes:
            used = st.get("offered", key) or 0
            if used + body.energy_wh > cap:
                raise TxRejected(
                    f"over capacity: {body.energy_wh} Wh of {body.source} on top of {used} Wh "
                    f"already offered exceeds the {cap} Wh the registered devices can produce "
                    f"in one interval"
                )
        sources: tuple[str, ...] = (body.source,)
        wheel_cap = 0
        side = "offer"
        fee_what = "the offer fee"
    else:
        ceiling = ceiling_for(p, body.interval)
        if body.price > ceiling:
            raise TxRejected(
                f"over ceiling: price {body.price} satang/kWh is above the ceiling {ceiling} "
                f"for interval {body.interval}"
            )
        wheel_cap = p.wheeling_cap
        # The bid's whole energy at `Order.escrow_for`, the rule its fills release by.
        escrow = -(-body.energy_wh * (body.price + wheel_cap) // 1000)
        sources = tuple(sorted(body.sources))
        side = "bid"
        fee_what = f"escrow of the bid's maximum cost ({escrow} satang) plus the fee"
    require_funds(st, tx.sender, escrow + p.tx_fee, fee_what)
    # -- checked; from here on only writes --
    charge_fee(st, tx.sender)
    for key, _cap in scopes:
        st.put("offered", key, (st.get("offered", key) or 0) + body.energy_wh)
    if escrow:
        lock(st, tx.sender, escrow)
    meta = st.meta()
    order = Order(
        id=tx.message_id(),
        side=side,  # type: ignore[arg-type]
        sender=tx.sender,
        party=party(st, tx.sender),
        gateways=gateways,
        interval=body.interval,
        zone=body.zone,
        price=body.price,
        sources=sources,
        energy_wh=body.energy_wh,
        remaining_wh=body.energy_wh,
        expires=body.expires,
        seq=meta.order_seq + 1,
        wheel_cap=wheel_cap,
        escrow=escrow,
        status="open",
        height=st.height,
    )
    opened = meta.open_intervals
    if body.interval not in opened:
        opened = tuple(sorted((*opened, body.interval)))
    st.set_meta(dataclasses.replace(meta, order_seq=order.seq, open_intervals=opened))
    info = interval_info(st, body.interval)
    st.put("iorders", f"{body.interval}:{info.orders:08d}", order.id)
    st.put("intervals", str(body.interval), dataclasses.replace(info, orders=info.orders + 1))
    _match_and_rest(st, order)


def _network(st: State, interval: int) -> Network:
    p = st.params

    def flow(feeder: str) -> int:
        return int(st.get("flows", f"{interval}/{feeder}") or 0)

    def capacity(feeder: str) -> int:
        cap = st.get("feeders", feeder)
        return int(cap) if cap is not None else p.feeder_capacity_wh

    return Network(flow, capacity, p.wheeling_per_hop, p.wheeling_cap)


def _order(st: State, oid: str) -> Order:
    o = st.get("orders", oid)
    if o is None:  # pragma: no cover - the book only holds known orders
        raise KeyError(oid)
    return o  # type: ignore[no-any-return]


def _match_and_rest(st: State, taker: Order) -> None:
    book = st.book(taker.interval)
    result = match(
        book, taker, lambda oid: _order(st, oid), _network(st, taker.interval), st.time_ms
    )
    for fill in result.fills:
        taker = _apply_fill(st, taker, fill)
    for oid in result.expired:
        close_order(st, _order(st, oid), "expired")
    if taker.remaining_wh == 0:
        taker = dataclasses.replace(taker, status="filled")
    else:
        book.add(taker)
    st.put("orders", taker.id, taker)


def _apply_fill(st: State, taker: Order, fill: Fill) -> Order:
    maker = _order(st, fill.maker)
    bid, offer = (taker, maker) if taker.side == "bid" else (maker, taker)
    e = fill.energy_wh
    reserve = bid.escrow_for(bid.filled_wh + e) - bid.escrow_for(bid.filled_wh)

    def after(o: Order) -> Order:
        rest = o.remaining_wh - e
        escrow = o.escrow - reserve if o.side == "bid" else o.escrow
        status: Status = "filled" if rest == 0 else o.status
        return dataclasses.replace(o, remaining_wh=rest, escrow=escrow, status=status)

    maker_after = after(maker)
    st.put("orders", maker.id, maker_after)
    for f in fill.feeders:
        key = f"{taker.interval}/{f}"
        st.put("flows", key, (st.get("flows", key) or 0) + e)
    info = interval_info(st, taker.interval)
    tid = f"{taker.interval}:{info.trades:08d}"
    trade = Trade(
        id=tid,
        interval=taker.interval,
        bid=bid.id,
        offer=offer.id,
        buyer=bid.sender,
        seller=offer.sender,
        buyer_zone=bid.zone,
        seller_zone=offer.zone,
        source=offer.sources[0],
        energy_wh=e,
        price=fill.price,
        wheeling=fill.wheeling,
        feeders=fill.feeders,
        escrow=reserve,
        maker=maker.side,
        height=st.height,
        time_ms=st.time_ms,
    )
    st.put("trades", tid, trade)
    st.put("intervals", str(taker.interval), dataclasses.replace(info, trades=info.trades + 1))
    return after(taker)


def close_order(st: State, order: Order, status: Status) -> None:
    """End an open order: release a bid's escrow, an offer's unused capacity."""
    if order.status != "open":
        return
    if order.side == "bid" and order.escrow:
        release(st, order.sender, order.escrow)
    if order.side == "offer" and order.remaining_wh and status != "closed":
        _unoffer(st, order)
    st.put("orders", order.id, dataclasses.replace(order, escrow=0, status=status))


def _unoffer(st: State, order: Order) -> None:
    # The owner at placement (`party`), not today's: a re-registered gateway's earlier
    # offer frees the capacity it took from its owner then.
    from_gateway = gateway(st, order.sender) is not None
    keys = _scope_keys(
        order.interval, order.party, order.sender, from_gateway, order.zone, order.sources[0]
    )
    for key in keys:
        left = (st.get("offered", key) or 0) - order.remaining_wh
        st.put("offered", key, left if left > 0 else None)


def cancel(st: State, tx: Envelope, body: Cancel) -> None:
    """Apply a `cancel`: the unfilled part of one's own open order is released.

    Raises:
        TxRejected: unknown order, someone else's, or no longer open.
    """
    order: Order | None = st.get("orders", body.order)
    if order is None:
        raise TxRejected(f"no order {body.order[:16]}… on chain")
    if order.sender != tx.sender:
        raise TxRejected(f"order {body.order[:16]}… belongs to {order.sender[:16]}…, not to you")
    if order.status != "open":
        raise TxRejected(f"order {body.order[:16]}… is {order.status}; nothing to cancel")
    require_funds(st, tx.sender, st.params.tx_fee, "the cancel fee")
    charge_fee(st, tx.sender)
    close_order(st, order, "cancelled")


def close_gates(st: State) -> None:
    """Close the books whose gate closure has passed: open orders end as `closed`."""
    gate_ms = st.params.gate_closure_s * 1000
    for interval in st.meta().open_intervals:
        if st.time_ms < interval - gate_ms:
            break
        info = interval_info(st, interval)
        if info.closed:
            continue
        for n in range(info.orders):
            oid = st.get("iorders", f"{interval}:{n:08d}")
            close_order(st, _order(st, oid), "closed")
        st.ov.drop_book(interval)
        st.put("intervals", str(interval), dataclasses.replace(info, closed=True))
