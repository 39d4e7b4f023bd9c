"""Seeded simulations of the consensus core: safety always, liveness once the network heals."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hub.simulation import (
    Behaviour,
    Crash,
    Partition,
    SafetyViolation,
    Scenario,
    random_scenario,
    run,
)

SEEDS_4 = range(200)
SEEDS_7 = range(40)


def _check_live(scenario: Scenario) -> None:
    report = run(scenario)
    base = max(report.heights_at_heal.values())
    assert min(report.heights.values()) >= base + 3, (
        f"seed {scenario.seed} (n={scenario.n}): no progress after healing: "
        f"{report.heights_at_heal} -> {report.heights}; {scenario}"
    )


@pytest.mark.parametrize("seed", SEEDS_4)
def test_random_faults_4(seed: int) -> None:
    _check_live(random_scenario(seed, 4))


@pytest.mark.parametrize("seed", SEEDS_7)
def test_random_faults_7(seed: int) -> None:
    _check_live(random_scenario(seed, 7))


def test_perfect_network_commits_every_heartbeat_and_all_txs() -> None:
    report = run(Scenario(seed=1, duration_ms=5_000))
    assert min(report.heights.values()) >= 15
    assert report.committed_txs >= 30  # one tx every 150 ms, minus the last in flight
    assert report.evidence == 0


def test_equivocator_is_caught_and_evidence_committed() -> None:
    report = run(Scenario(seed=3, byzantine={0: "equivocate"}, duration_ms=6_000))
    assert report.evidence > 0
    assert min(report.heights.values()) >= 5


def test_no_quorum_no_commit_then_resumes() -> None:
    # Two of four down for 3 s: nothing can commit; afterwards the chain resumes.
    scenario = Scenario(
        seed=5,
        crashes=(Crash(2, 1_000, 4_000), Crash(3, 1_000, 4_000)),
        duration_ms=8_000,
        heal_ms=4_000,
    )
    sim_report = run(scenario)
    assert min(sim_report.heights.values()) >= max(sim_report.heights_at_heal.values()) + 3


def test_minority_partition_catches_up_by_sync() -> None:
    scenario = Scenario(
        seed=9,
        partitions=(Partition(500, 3_000, (frozenset({0, 1, 2}), frozenset({3}))),),
        duration_ms=6_000,
        heal_ms=3_000,
    )
    report = run(scenario)
    assert report.heights[3] >= report.heights_at_heal[0]
    assert report.heights_at_heal[3] < report.heights_at_heal[0]  # it really fell behind


def test_safety_violation_is_detected() -> None:
    # The checker itself must be able to fail: two honest signatures for one slot.
    from tests.hub.simulation import Sim
    from wire.consensus import BftPrevote
    from wire.envelope import sign

    sim = Sim(Scenario(seed=0))
    node = sim.nodes[0]
    a = sign(node.key, "gtx-sim", BftPrevote(height=1, round=0, block=""), 1, 1)
    b = sign(node.key, "gtx-sim", BftPrevote(height=1, round=0, block="a" * 64), 2, 1)
    sim.check_signature_history(node, a)
    with pytest.raises(SafetyViolation):
        sim.check_signature_history(node, b)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    drop=st.sampled_from([0.0, 0.1, 0.3]),
    duplicate=st.sampled_from([0.0, 0.2]),
    max_delay_ms=st.integers(1, 120),
    byzantine=st.sampled_from([{}, {0: "equivocate"}, {1: "random"}, {2: "silent"}]),
    crash_at=st.integers(100, 2_000),
)
def test_property_no_two_blocks_at_one_height(
    seed: int,
    drop: float,
    duplicate: float,
    max_delay_ms: int,
    byzantine: dict[int, Behaviour],
    crash_at: int,
) -> None:
    honest = next(i for i in range(4) if i not in byzantine)
    scenario = Scenario(
        seed=seed,
        duration_ms=3_000,
        drop=drop,
        duplicate=duplicate,
        max_delay_ms=max_delay_ms,
        byzantine=byzantine,
        crashes=(Crash(honest, crash_at, crash_at + 400),),
        heal_ms=3_000,
    )
    run(scenario)  # raises SafetyViolation on any fork or honest double signature
