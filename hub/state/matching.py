"""Continuous matching: one incoming order against the book of its interval. Pure.

Rules (docs/market.md):

* An incoming bid takes the offer with the lowest effective price (offer price plus the
  wheeling fee of the route to the buyer); at equal effective price the nearer seller, then
  the earlier order. Offers above the bid's limit never match.
* An incoming offer takes the bid with the highest price; at equal price the nearer buyer,
  then the earlier order. Bids below the offer's limit never match.
* The trade price is the resting order's price; the buyer also pays the wheeling fee.
* The energy of each fill is capped by what is left on both orders and by the headroom of
  every feeder on the route in this interval. Orders of the same party never trade.
* A resting order at or past its `expires` no longer matches; matching reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hub.state.book import Book, Entry, Order
from hub.state.zones import route

__all__ = ["Fill", "Match", "Network", "match"]


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade produced by matching."""

    maker: str
    """Id of the resting order."""
    energy_wh: int
    """Energy traded, Wh."""
    price: int
    """Trade price (the resting order's), satang/kWh."""
    wheeling: int
    """Wheeling fee the buyer pays on top, satang/kWh."""
    feeders: tuple[str, ...]
    """Feeders the energy crosses (their flow grows by `energy_wh`)."""


@dataclass(slots=True)
class Match:
    """Everything one call of `match` decided."""

    fills: list[Fill] = field(default_factory=list)
    """Trades, in the order they were made."""
    expired: list[str] = field(default_factory=list)
    """Resting orders found past their expiry (the caller closes them)."""


@dataclass(frozen=True, slots=True)
class Network:
    """What matching needs to know of the grid for one interval."""

    flow: Callable[[str], int]
    """Energy already crossing a feeder in this interval, Wh."""
    capacity: Callable[[str], int]
    """Capacity of a feeder per interval, Wh."""
    per_hop: int
    """Wheeling fee per hop, satang/kWh."""
    wheel_cap: int
    """Highest wheeling fee, satang/kWh."""


def match(
    book: Book, taker: Order, orders: Callable[[str], Order], net: Network, time_ms: int
) -> Match:
    """Match `taker` against `book`, updating the book's index (not the orders).

    Args:
        book: the interval's book; filled and stale entries are popped from it.
        taker: the incoming order (not yet in the book).
        orders: looks up a resting order by id (its committed-so-far version).
        net: feeder flows and capacities, and the wheeling parameters.
        time_ms: block time, unix ms (expiry).

    Returns:
        The fills and the expired resting orders met on the way.
    """
    out = Match()
    left = taker.remaining_wh
    taken: dict[str, int] = {}  # resting order id -> remaining after this call
    extra: dict[str, int] = {}  # feeder -> flow added by this call
    expired: set[str] = set()
    buying = taker.side == "bid"
    if buying:
        accepted = set(taker.sources)
        groups = [(k, v) for k, v in sorted(book.offers.items()) if k[1] in accepted]
    else:
        groups = [(k, v) for k, v in sorted(book.bids.items()) if k[1] == taker.sources[0]]

    def headroom(feeders: tuple[str, ...]) -> int:
        room = left
        for f in feeders:
            room = min(room, net.capacity(f) - net.flow(f) - extra.get(f, 0))
        return room

    while left > 0:
        best: tuple[tuple[int, int, int], Order, int, int, tuple[str, ...]] | None = None
        for (zone, _source), entries in groups:
            resting, rest = _head(entries, taker, orders, taken, expired, time_ms)
            if resting is None:
                continue
            if buying and resting.price > taker.price:
                continue
            if not buying and resting.price < taker.price:
                continue
            r = route(zone, taker.zone) if buying else route(taker.zone, zone)
            room = headroom(r.feeders)
            if room <= 0:
                continue
            bid = taker if buying else resting
            wheel = min(r.wheeling(net.per_hop, net.wheel_cap), bid.wheel_cap)
            if buying:
                rank = (resting.price + wheel, r.distance, resting.seq)
            else:
                rank = (-resting.price, r.distance, resting.seq)
            if best is None or rank < best[0]:
                best = (rank, resting, rest, wheel, r.feeders)
        if best is None:
            break
        _, resting, rest, wheel, feeders = best
        energy = min(left, rest, headroom(feeders))
        out.fills.append(Fill(resting.id, energy, resting.price, wheel, feeders))
        left -= energy
        taken[resting.id] = rest - energy
        for f in feeders:
            extra[f] = extra.get(f, 0) + energy
    out.expired = sorted(expired)
    return out


def _head(
    entries: list[Entry],
    taker: Order,
    orders: Callable[[str], Order],
    taken: dict[str, int],
    expired: set[str],
    time_ms: int,
) -> tuple[Order | None, int]:
    """The best live resting order of a group and its remaining Wh (popping dead ends)."""
    i = len(entries) - 1
    while i >= 0:
        oid = entries[i][2]
        o = orders(oid)
        rest = taken.get(oid, o.remaining_wh)
        dead = o.status != "open" or rest <= 0
        if not dead and o.expires <= time_ms:
            expired.add(oid)
            dead = True
        if dead:
            if i == len(entries) - 1:
                entries.pop()
            i -= 1
            continue
        if o.party == taker.party:
            i -= 1  # no self-trades: look past it, it stays for others
            continue
        return o, rest
    return None, 0
