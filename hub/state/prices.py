"""Reference prices the validators publish for gateways after each block. Pure.

After a block commits, the intervals its orders were for get a `ZonePrice` for every zone
with trades: the zones of both sides of each trade and every ancestor zone up to the
authority, since a zone's reference price counts its sub-zones (`queries.reference_price`).
The node publishes only those that changed since it last published.
"""

from __future__ import annotations

from collections.abc import Iterable

from hub.state.queries import reference_price, trades_of
from hub.state.state import State
from wire.kinds import ZonePrice

__all__ = ["SEQ_PER_BLOCK", "zone_prices"]

SEQ_PER_BLOCK = 65_536
"""`seq = height * SEQ_PER_BLOCK + n`: increasing across blocks without stored counters."""


def ancestors(zone: str) -> list[str]:
    """`a/b/c` -> `a`, `a/b`, `a/b/c`."""
    parts = zone.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def zone_prices(st: State, height: int, intervals: Iterable[int]) -> list[ZonePrice]:
    """The reference prices of `intervals` after block `height`.

    Args:
        st: committed state after the block.
        height: the block's height.
        intervals: delivery intervals the block's orders were for.

    Returns:
        One `ZonePrice` per (interval, zone with trades), sorted by interval then zone, at
        most `SEQ_PER_BLOCK`.
    """
    out: list[ZonePrice] = []
    for interval in sorted(set(intervals)):
        trades = trades_of(st, interval)
        zones = sorted(
            {
                z
                for t in trades
                for side in ("seller_zone", "buyer_zone")
                for z in ancestors(t[side])
            }
        )
        for zone in zones:
            ref = reference_price(st, interval, zone)
            out.append(
                ZonePrice(
                    zone=zone,
                    interval=interval,
                    price=ref["price"],
                    energy_wh=ref["energy_wh"],
                    height=height,
                )
            )
    return out[:SEQ_PER_BLOCK]
