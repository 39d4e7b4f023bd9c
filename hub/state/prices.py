"""Reference prices the validators publish for gateways after each block. Pure.

After a block commits, the intervals its orders were for get a `ZonePrice` for every zone
with trades: the zones of both sides of each trade and every ancestor zone up to the
authority, since a zone's reference price counts its sub-zones (`queries.reference_price`).
The node publishes only those that changed since it last published.
"""

from __future__ import annotations

from collections.abc import Iterable

from hub.state.queries import trades_of
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
        # One pass over the trades: each adds to every zone it touches (both sides' zones
        # and their ancestors, once each), as `queries.reference_price` counts one zone.
        totals: dict[str, list[int]] = {}
        for t in trades_of(st, interval):
            for zone in {*ancestors(t["seller_zone"]), *ancestors(t["buyer_zone"])}:
                energy_value = totals.setdefault(zone, [0, 0])
                energy_value[0] += t["energy_wh"]
                energy_value[1] += t["energy_wh"] * t["price"]
        for zone, (energy, value) in sorted(totals.items()):
            out.append(
                ZonePrice(
                    zone=zone,
                    interval=interval,
                    price=value // energy if energy else 0,
                    energy_wh=energy,
                    height=height,
                )
            )
    return out[:SEQ_PER_BLOCK]
