"""Read planning: optimal packing properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.plan import MAX_READ_REGISTERS, PlanError, ReadRequest, naive_reads, plan_reads
from hw.profile import TYPE_WORDS, PointSpec, load_profile


@st.composite
def disjoint_points(draw: st.DrawFn) -> list[PointSpec]:
    points = []
    for function in ("holding", "input"):
        address = draw(st.integers(0, 300))
        for i in range(draw(st.integers(0, 40))):
            ptype = draw(st.sampled_from(sorted(TYPE_WORDS)))
            address += draw(st.integers(0, 60))
            if address + TYPE_WORDS[ptype] > 0x10000:
                break
            points.append(
                PointSpec(name=f"{function}{i}", address=address, type=ptype, function=function)
            )
            address += TYPE_WORDS[ptype]
    return points


@settings(max_examples=200)
@given(points=disjoint_points(), max_gap=st.integers(0, 130), max_registers=st.integers(4, 125))
def test_plan_properties(points: list[PointSpec], max_gap: int, max_registers: int) -> None:
    plan = plan_reads(points, max_gap=max_gap, max_registers=max_registers)
    # every point is read whole by one request
    for p in points:
        assert any(r.covers(p) for r in plan), p
    # no request too large, none overlapping within a function
    for r in plan:
        assert 1 <= r.count <= max_registers <= MAX_READ_REGISTERS
    for a, b in itertools.pairwise(plan):
        if a.function == b.function:
            assert a.end <= b.address
    # never more requests than one per point
    assert len(plan) <= len(naive_reads(points))
    # each request starts and ends on a point (no wasted registers at the edges)
    for r in plan:
        mine = [p for p in points if r.covers(p)]
        assert min(p.address for p in mine) == r.address
        assert max(p.end for p in mine) == r.end


@settings(max_examples=100)
@given(points=disjoint_points())
def test_bridging_everything_is_never_worse(points: list[PointSpec]) -> None:
    assert len(plan_reads(points, max_gap=125)) <= len(plan_reads(points, max_gap=0))


def test_sdm630_plan() -> None:
    points = load_profile("sdm630").measured_points()
    assert plan_reads(points) == (
        ReadRequest("input", 0x00, 0x12),
        ReadRequest("input", 0x34, 2),
        ReadRequest("input", 0x46, 6),
    )
    assert plan_reads(points, max_gap=16) == (
        ReadRequest("input", 0x00, 0x12),
        ReadRequest("input", 0x34, 0x4C - 0x34),
    )
    assert plan_reads(points, max_gap=100) == (ReadRequest("input", 0, 0x4C),)


def test_overlapping_points_are_read_together() -> None:
    a = PointSpec(name="a", address=10, type="u32")
    b = PointSpec(name="b", address=11, type="u16")
    assert plan_reads([a, b], max_gap=0) == (ReadRequest("holding", 10, 2),)


def test_bad_parameters() -> None:
    with pytest.raises(PlanError, match="max_gap"):
        plan_reads([], max_gap=-1)
    with pytest.raises(PlanError, match="max_registers"):
        plan_reads([], max_registers=126)
    with pytest.raises(PlanError, match=r"1..125"):
        ReadRequest("holding", 0, 126)
