"""Physical models: deterministic, plausible, energy never decreasing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hw.physics import (
    MS_PER_HOUR,
    EnergyIntegrator,
    Grid,
    HouseholdLoad,
    PvArray,
    clear_sky_ghi,
)

from .conftest import NIGHT_BKK_MS, NOON_BKK_MS

DAY_START = NOON_BKK_MS - 12 * MS_PER_HOUR  # local midnight


def test_pv_is_zero_at_night_in_bangkok() -> None:
    pv = PvArray(rated_w=5000)
    for minutes in range(0, 5 * 60, 7):  # 00:00-05:00 local
        assert pv.power_w(DAY_START + minutes * 60_000) == 0
    for minutes in range(19 * 60, 24 * 60, 7):  # 19:00-24:00 local
        assert pv.power_w(DAY_START + minutes * 60_000) == 0
    assert pv.power_w(NIGHT_BKK_MS) == 0


def test_clear_sky_peak_is_near_solar_noon() -> None:
    # Bangkok solar noon is about 12:20 local in March (lon 100.5 E, UTC+7, EoT -7 min).
    samples = [(clear_sky_ghi(DAY_START + m * 60_000), m) for m in range(0, 24 * 60, 5)]
    _, peak_minute = max(samples)
    assert 12 * 60 <= peak_minute <= 12 * 60 + 40
    pv = PvArray(rated_w=5000, clouds=False)
    peak = pv.power_w(DAY_START + peak_minute * 60_000)
    assert 3500 <= peak <= 4200  # 5 kWp x ~1000 W/m2 x PR 0.8


def test_clouds_only_dim() -> None:
    clear = PvArray(rated_w=5000, clouds=False, seed=3)
    cloudy = PvArray(rated_w=5000, seed=3)
    dips = 0
    for m in range(8 * 60, 16 * 60, 3):
        t = DAY_START + m * 60_000
        assert cloudy.power_w(t) <= clear.power_w(t)
        assert cloudy.power_w(t) >= 0.29 * clear.power_w(t)
        dips += cloudy.power_w(t) < 0.9 * clear.power_w(t)
    assert dips > 0


def test_models_are_deterministic_for_a_seed() -> None:
    times = [NOON_BKK_MS + k * 61_000 for k in range(50)]
    for model in (PvArray(seed=7), HouseholdLoad(seed=7)):
        assert [model.power_w(t) for t in times] == [model.power_w(t) for t in times]
    assert [HouseholdLoad(seed=7).power_w(t) for t in times] != [
        HouseholdLoad(seed=8).power_w(t) for t in times
    ]


def test_load_has_evening_peak() -> None:
    load = HouseholdLoad(seed=1)
    night = load.power_w(DAY_START + 3 * MS_PER_HOUR)
    evening = load.power_w(DAY_START + 19 * MS_PER_HOUR + 30 * 60_000)
    assert evening > 3 * night
    assert 150 < night < 500


def test_grid_stays_near_nominal() -> None:
    grid = Grid(seed=2)
    for k in range(300):
        t = NOON_BKK_MS + k * 37_000
        assert 2230 <= grid.voltage_dv(t, 1 + k % 3) <= 2370
        assert 49_940 <= grid.frequency_mhz(t) <= 50_060


@settings(max_examples=150)
@given(
    steps=st.lists(
        st.tuples(st.integers(-5_000_000, 5_000_000), st.integers(-10_000, 120_000)), max_size=60
    )
)
def test_energy_never_decreases(steps: list[tuple[int, int]]) -> None:
    e = EnergyIntegrator.starting_at(1000, 2000, 0)
    now = 0
    for power, dt in steps:
        now += dt
        nxt = e.advance(power, now)
        assert nxt.import_wh >= e.import_wh
        assert nxt.export_wh >= e.export_wh
        e = nxt


def test_energy_integrates_exactly() -> None:
    e = EnergyIntegrator.starting_at(0, 0, 0)
    for k in range(1, 3601):
        e = e.advance(1000, k * 1000)  # 1 kW for an hour, one-second steps
    assert e.import_wh == 1000
    e = e.advance(-3600, 3601 * 1000)  # 3.6 kW export for 1 s = 1 Wh
    assert e.export_wh == 1
    assert e.import_wh == 1000
