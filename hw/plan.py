"""Read planning: cover a profile's points with the fewest Modbus read requests.

On RS-485 every request costs a turnaround (device latency, 3.5-character silences and
about 13 bytes of framing), so neighbouring points are read together and small gaps of
unused registers are bridged when that is cheaper than one more request. Pure: points in,
requests out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hw.profile import Function, PointSpec

MAX_READ_REGISTERS = 125
"""Modbus limit for one read holding/input registers request (FC3/FC4)."""

DEFAULT_MAX_GAP = 10
"""Unused registers bridged rather than starting a new request.

Ten registers are 20 bytes on the wire, about what a request's framing and silences cost
(8-byte request, 5 bytes of response overhead, two 3.5-character gaps), before counting the
device's own turnaround, so bridging up to here never makes a poll slower.
"""

FUNCTION_CODES: dict[Function, int] = {"holding": 3, "input": 4}
"""Modbus function code that reads each register table."""


class PlanError(ValueError):
    """The points cannot be planned (e.g. a gap parameter is invalid)."""


@dataclass(frozen=True, slots=True, order=True)
class ReadRequest:
    """One Modbus read: `count` registers from `address` in the `function` table."""

    function: Function
    """Register table (holding: FC3, input: FC4)."""
    address: int
    """First register address."""
    count: int
    """Number of registers, 1..125."""

    def __post_init__(self) -> None:
        """Reject requests Modbus cannot carry."""
        if not 1 <= self.count <= MAX_READ_REGISTERS:
            raise PlanError(f"a read covers 1..{MAX_READ_REGISTERS} registers, not {self.count}")
        if not 0 <= self.address <= 0xFFFF - self.count + 1:
            raise PlanError(f"read of {self.count} registers at {self.address} leaves 0..65535")

    @property
    def end(self) -> int:
        """One past the last register read."""
        return self.address + self.count

    @property
    def function_code(self) -> int:
        """The Modbus function code (3 or 4)."""
        return FUNCTION_CODES[self.function]

    def covers(self, spec: PointSpec) -> bool:
        """Whether this request reads every register of `spec`."""
        return (
            spec.function == self.function and self.address <= spec.address and spec.end <= self.end
        )


def plan_reads(
    points: Iterable[PointSpec],
    max_gap: int = DEFAULT_MAX_GAP,
    max_registers: int = MAX_READ_REGISTERS,
) -> tuple[ReadRequest, ...]:
    """Plan the fewest reads covering `points`.

    Within one function code, points are taken in address order and packed greedily: a
    point joins the current request if the unused registers before it are at most
    `max_gap` and the request stays within `max_registers`. Because points are atomic
    and feasibility only shrinks as a request grows, greedy packing is optimal for these
    constraints; requests never overlap and never outnumber the points.

    Args:
        points: points with absolute addresses (resolve SunSpec profiles first).
        max_gap: largest run of unused registers to read through (0 = only adjacent).
        max_registers: largest request, at most 125 (some devices accept fewer).

    Returns:
        Requests sorted by function then address.

    Raises:
        PlanError: invalid parameters, or a point wider than `max_registers`.
    """
    if max_gap < 0:
        raise PlanError(f"max_gap must be >= 0, got {max_gap}")
    if not 1 <= max_registers <= MAX_READ_REGISTERS:
        raise PlanError(f"max_registers must be 1..{MAX_READ_REGISTERS}, got {max_registers}")
    by_function: dict[Function, list[tuple[int, int]]] = {}
    for spec in points:
        if spec.count > max_registers:
            raise PlanError(
                f"point {spec.name!r} spans {spec.count} registers, more than {max_registers}"
            )
        by_function.setdefault(spec.function, []).append((spec.address, spec.end))
    requests: list[ReadRequest] = []
    for function in sorted(by_function):
        for start, end in _pack(
            _union(by_function[function], max_registers), max_gap, max_registers
        ):
            requests.append(ReadRequest(function, start, end - start))
    return tuple(requests)


def _union(spans: list[tuple[int, int]], max_registers: int) -> list[tuple[int, int]]:
    """Merge overlapping spans (points sharing registers must be read in one request)."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    for lo, hi in merged:
        if hi - lo > max_registers:
            raise PlanError(
                f"overlapping points span registers {lo}..{hi - 1}, more than {max_registers}"
            )
    return merged


def _pack(spans: list[tuple[int, int]], max_gap: int, max_registers: int) -> list[tuple[int, int]]:
    """Greedily pack disjoint sorted spans into as few requests as the limits allow."""
    out: list[tuple[int, int]] = []
    start, end = spans[0]
    for lo, hi in spans[1:]:
        if lo - end <= max_gap and hi - start <= max_registers:
            end = hi
        else:
            out.append((start, end))
            start, end = lo, hi
    out.append((start, end))
    return out


def naive_reads(points: Iterable[PointSpec]) -> tuple[ReadRequest, ...]:
    """One request per point: the baseline a plan must never exceed."""
    return tuple(sorted({ReadRequest(p.function, p.address, p.count) for p in points}))
