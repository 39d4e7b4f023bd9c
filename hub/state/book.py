"""Orders and the order book of one delivery interval.

`Order` is the record kept in state (table `orders`, key: the order's message id). `Book` is
the derived price-time index matching walks: resting offers grouped by (zone, source) and
resting bids grouped by (zone, accepted source), each group a list sorted so its best order
is last (popped in O(1)). Filled, cancelled and expired orders are removed lazily when they
reach the end of a list. The book is rebuilt from open orders after a restore.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal, Self

from hub.state.record import Record

__all__ = ["Book", "Order", "Side"]

Side = Literal["offer", "bid"]
Status = Literal["open", "filled", "cancelled", "expired", "closed"]


@dataclass(frozen=True, slots=True)
class Order(Record):
    """An offer or bid as the state machine keeps it."""

    id: str
    """Message id of the offer or bid."""
    side: Side
    """`offer` (sell) or `bid` (buy)."""
    sender: str
    """Account that signed it (receives the proceeds or pays)."""
    party: str
    """Trading party: the owner behind a gateway, else the sender (no self-trades)."""
    gateways: tuple[str, ...]
    """Gateways whose meters settle this order."""
    interval: int
    """Delivery interval start, unix ms."""
    zone: str
    """Zone of the trader."""
    price: int
    """Limit price, satang/kWh (bids: before wheeling)."""
    sources: tuple[str, ...]
    """Source sold (offer: one) or accepted (bid)."""
    energy_wh: int
    """Energy ordered, Wh."""
    remaining_wh: int
    """Energy not yet matched, Wh."""
    expires: int
    """Unix ms from which it no longer matches."""
    seq: int
    """Time priority: the chain-wide order counter when it was accepted."""
    wheel_cap: int
    """Highest wheeling fee this bid escrowed for, satang/kWh (0 for offers)."""
    escrow: int
    """Satang still locked for the unmatched part (bids; 0 for offers)."""
    status: Status
    """`open`, `filled`, `cancelled`, `expired` (lapsed unfilled) or `closed` (gate)."""
    height: int
    """Height at which it was accepted."""

    @property
    def filled_wh(self) -> int:
        """Energy matched so far, Wh."""
        return self.energy_wh - self.remaining_wh

    def escrow_for(self, filled_wh: int) -> int:
        """Satang a bid locks for `filled_wh`: ceil(Wh x (price + wheel_cap) / 1000)."""
        return -(-filled_wh * (self.price + self.wheel_cap) // 1000)


Entry = tuple[int, int, str]
"""(rank, -seq, order id): the larger tuple is the better order."""


class Book:
    """Price-time index of the resting orders of one interval."""

    __slots__ = ("bids", "offers")

    def __init__(self) -> None:
        """An empty book."""
        self.offers: dict[tuple[str, str], list[Entry]] = {}
        self.bids: dict[tuple[str, str], list[Entry]] = {}

    def copy(self) -> Self:
        """An independent copy (lists copied, entries shared: they are immutable)."""
        other = type(self)()
        other.offers = {k: list(v) for k, v in self.offers.items()}
        other.bids = {k: list(v) for k, v in self.bids.items()}
        return other

    def add(self, order: Order) -> None:
        """Rest `order` in the book."""
        if order.side == "offer":
            entry: Entry = (-order.price, -order.seq, order.id)
            bisect.insort(self.offers.setdefault((order.zone, order.sources[0]), []), entry)
        else:
            entry = (order.price, -order.seq, order.id)
            for source in order.sources:
                bisect.insort(self.bids.setdefault((order.zone, source), []), entry)

    def size(self) -> int:
        """Entries in the index (including lazily removed ones)."""
        return sum(len(v) for v in self.offers.values()) + sum(len(v) for v in self.bids.values())
