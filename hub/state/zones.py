"""The grid as a zone tree: distance, the feeders a trade crosses, wheeling, operators.

A zone is a path `authority/area/substation/feeder`. Energy sold from zone `a` to zone `b`
flows up from `a` to their deepest common zone and down to `b`; it crosses the feeder of
every zone on that path below the common one (the feeder connecting that zone to its
parent). The number of those feeders is the distance; the wheeling fee grows with it.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["Route", "operator_account", "route"]


class Route:
    """How energy travels from a seller's zone to a buyer's zone."""

    __slots__ = ("distance", "feeders")

    def __init__(self, feeders: tuple[str, ...]) -> None:
        """A route crossing `feeders` (zone paths, each the feeder to that zone's parent)."""
        self.feeders = feeders
        self.distance = len(feeders)

    def wheeling(self, per_hop: int, cap: int) -> int:
        """Wheeling fee for this route, satang/kWh."""
        return min(self.distance * per_hop, cap)


@lru_cache(maxsize=65_536)
def route(seller_zone: str, buyer_zone: str) -> Route:
    """The route between two zones (cached: it is pure)."""
    a = seller_zone.split("/")
    b = buyer_zone.split("/")
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    up = ["/".join(a[:i]) for i in range(len(a), common, -1)]
    down = ["/".join(b[:i]) for i in range(common + 1, len(b) + 1)]
    return Route(tuple(up + down))


def operator_account(zone: str) -> str:
    """The grid operator account of a zone: `grid:<authority>` (the path's first segment)."""
    return "grid:" + zone.split("/", 1)[0]
