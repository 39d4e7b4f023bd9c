"""Shared fixtures for the hardware tests: fixed clocks, tolerances, free link paths."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from hw.profile import PointSpec

# 2026-03-20 12:00 Bangkok (05:00 UTC): midday sun, PV well above zero.
NOON_BKK_MS = int(datetime(2026, 3, 20, 5, 0, tzinfo=UTC).timestamp() * 1000)
# 2026-03-20 02:00 Bangkok: night.
NIGHT_BKK_MS = int(datetime(2026, 3, 19, 19, 0, tzinfo=UTC).timestamp() * 1000)


class SteppedClock:
    """A clock tests move by hand (unix ms)."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock(NOON_BKK_MS)


def tolerance(spec: PointSpec, value: int, scale_factor: int = 0) -> int:
    """Largest error the registers' resolution allows when serving `value` through `spec`."""
    exponent = spec.scale + scale_factor
    if spec.type == "float32":
        native = abs(value) / 10**exponent
        if native == 0:
            return 0
        ulp = 2.0 ** (math.floor(math.log2(native)) - 23)
        return math.ceil(ulp * 10**exponent / 2)
    return 10**exponent // 2 if exponent > 0 else 0
