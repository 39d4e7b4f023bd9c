"""`EnergyApp` under the real consensus core: the seeded simulation with crashes and faults.

The simulation normally drives the starter `TransferLedger`; here every node runs
`EnergyApp` instead (restored from its persisted state rows after crashes), and safety plus
liveness must hold just the same.
"""

from __future__ import annotations

import pytest

import tests.hub.simulation as simulation
from hub.state.app import EnergyApp


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulation_with_energy_app(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulation, "TransferLedger", EnergyApp)
    report = simulation.run(simulation.random_scenario(seed, 4))
    base = max(report.heights_at_heal.values())
    assert min(report.heights.values()) >= base + 3
    assert report.committed_txs > 0
