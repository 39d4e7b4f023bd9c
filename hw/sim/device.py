"""Simulated devices: physics-driven readings served as a profile's register image.

A `SimulatedDevice` is fed the time (unix ms) by its server; it integrates energy,
samples the physical models (`hw.physics`) and encodes the reading with the device's
profile, so what a client decodes is exactly what the physics produced, to the
resolution of the registers. Values change once per `update_ms`, like a real meter's
measurement cycle, so a multi-request poll sees one consistent reading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from hw.measurement import Measurements
from hw.physics import BANGKOK_LAT, BANGKOK_LON, EnergyIntegrator, Grid, HouseholdLoad, PvArray
from hw.profile import Function, Profile
from hw.sim.encoding import encode_profile

Fault = Literal["timeout", "exception", "garbage"]
"""How a faulty unit misbehaves: never answers, answers exception 4, or sends bad frames."""

FAULTS: tuple[Fault, ...] = ("timeout", "exception", "garbage")

ILLEGAL_ADDRESS = 2
"""Modbus exception code for a read outside the device's registers."""
DEVICE_FAILURE = 4
"""Modbus exception code a faulty unit answers with."""


@dataclass(frozen=True, slots=True)
class Site:
    """Where a simulated device sits: PV array, household load and grid."""

    lat: float = BANGKOK_LAT
    """Latitude, degrees north."""
    lon: float = BANGKOK_LON
    """Longitude, degrees east."""
    kwp_w: int = 5000
    """Rated PV power in W."""
    seed: int = 0
    """Seed of clouds, load noise and grid wander."""

    def pv(self) -> PvArray:
        """The site's PV array."""
        return PvArray(rated_w=self.kwp_w, lat=self.lat, lon=self.lon, seed=self.seed)

    def load(self) -> HouseholdLoad:
        """The site's household load."""
        return HouseholdLoad(seed=self.seed)

    def grid(self) -> Grid:
        """The grid at the site."""
        return Grid(seed=self.seed)


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    """Settings shared by every simulated unit of a server."""

    sunspec_base: int = 40000
    """Address of the SunS marker (SunSpec profiles)."""
    sunspec_models: tuple[int, ...] | None = None
    """SunSpec model chain (default: the profile's)."""
    start_import_wh: int = 1_234_567
    """Import counter at the first sample, in Wh."""
    start_export_wh: int = 765_432
    """Export counter at the first sample, in Wh."""
    update_ms: int = 1000
    """Measurement cycle: values change at most this often."""


@dataclass
class SimulatedDevice:
    """One simulated meter or inverter (mutable: it integrates energy over time)."""

    profile: Profile
    """The register map it serves."""
    site: Site = field(default_factory=Site)
    """Physical models behind the values."""
    fault: Fault | None = None
    """Misbehaviour for tests, None for a healthy device."""
    sunspec_base: int = 40000
    """Address of the SunS marker (SunSpec profiles)."""
    sunspec_models: tuple[int, ...] | None = None
    """SunSpec model chain (default: the profile's)."""
    start_import_wh: int = 1_234_567
    """Import counter at the first sample, in Wh."""
    start_export_wh: int = 765_432
    """Export counter at the first sample, in Wh."""
    update_ms: int = 1000
    """Measurement cycle: values change at most this often."""
    _energy: EnergyIntegrator | None = field(default=None, init=False)
    _day_start: tuple[int, int] = field(default=(-1, 0), init=False)
    _cache_slot: int | None = field(default=None, init=False)
    _reading: Measurements = field(default_factory=Measurements, init=False)
    _image: dict[tuple[Function, int], int] = field(default_factory=dict, init=False)

    @property
    def three_phase(self) -> bool:
        """Whether the device measures three phases (SunSpec 101 is single phase)."""
        if self.sunspec_models is not None and 103 not in self.sunspec_models:
            return False
        return any("voltage_l2_dv" in p.measurements for p in self.profile.points)

    def reading(self, now_ms: int) -> Measurements:
        """The device's measurements at `now_ms` (the truth a client should decode)."""
        self._refresh(now_ms)
        return self._reading

    def image(self, now_ms: int) -> dict[tuple[Function, int], int]:
        """The full register image at `now_ms`."""
        self._refresh(now_ms)
        return self._image

    def read(self, function: Function, address: int, count: int, now_ms: int) -> list[int] | int:
        """Serve a read request: the registers, or a Modbus exception code.

        Addresses inside the span of the device's register map read as 0 when unmapped
        (like most meters); outside it the answer is exception 2 (illegal address).
        """
        if self.fault == "exception":
            return DEVICE_FAILURE
        image = self.image(now_ms)
        out = [image.get((function, a)) for a in range(address, address + count)]
        if not any(v is not None for v in out) or not self._inside(function, address, count):
            return ILLEGAL_ADDRESS
        return [v or 0 for v in out]

    def _inside(self, function: Function, address: int, count: int) -> bool:
        keys = [a for (f, a) in self._image if f == function]
        return bool(keys) and min(keys) <= address and address + count <= max(keys) + 1

    def _refresh(self, now_ms: int) -> None:
        slot = now_ms // self.update_ms
        if slot == self._cache_slot:
            return
        sample_ms = slot * self.update_ms
        self._reading = self._sample(sample_ms)
        self._image = encode_profile(
            self.profile, self._reading, self.sunspec_base, self.sunspec_models
        )
        self._cache_slot = slot

    def _sample(self, now_ms: int) -> Measurements:
        site = self.site
        pv_w = site.pv().power_w(now_ms)
        grid = site.grid()
        inverter = self.profile.kind == "inverter"
        power = pv_w if inverter else site.load().power_w(now_ms) - pv_w
        if self._energy is None:
            self._energy = EnergyIntegrator.starting_at(
                0 if inverter else self.start_import_wh, self.start_export_wh, now_ms
            )
        # Meters count positive power as import; an inverter's output is export.
        self._energy = self._energy.advance(-power if inverter else power, now_ms)
        volts = [grid.voltage_dv(now_ms, phase) for phase in (1, 2, 3)]
        hz = grid.frequency_mhz(now_ms)
        values: dict[str, int] = {}
        if self.three_phase:
            split = _split_three(power)
            for i, (p, v) in enumerate(zip(split, volts, strict=True), start=1):
                values[f"power_l{i}_w"] = p
                values[f"voltage_l{i}_dv"] = v
                values[f"current_l{i}_ma"] = _current_ma(p, v)
        else:
            values["voltage_l1_dv"] = volts[0]
            values["current_l1_ma"] = _current_ma(power, volts[0])
            values["power_l1_w"] = power
        values["current_ma"] = _current_ma(power, volts[0])
        export_wh = self._energy.export_wh
        day = (now_ms + 7 * 3_600_000) // 86_400_000
        if self._day_start[0] != day:
            self._day_start = (day, export_wh)
        values["daily_yield_wh"] = export_wh - self._day_start[1]
        values["dc_power_w"] = round(pv_w * 100 / 97)
        wanted = {m for p in self.profile.points for m in p.measurements}
        return Measurements(
            power_w=power,
            voltage_dv=volts[0],
            frequency_mhz=hz,
            import_wh=None if inverter else self._energy.import_wh,
            export_wh=export_wh,
            phases={k: v for k, v in sorted(values.items()) if k in wanted},
        )


def _split_three(power_w: int) -> tuple[int, int, int]:
    """Split a total into three slightly unbalanced phases that sum exactly."""
    l1 = power_w * 36 // 100
    l2 = power_w * 33 // 100
    return l1, l2, power_w - l1 - l2


def _current_ma(power_w: int, voltage_dv: int) -> int:
    """RMS current in mA for a resistive load (unity power factor)."""
    return abs(power_w) * 10_000 // max(1, voltage_dv)


def devices_for_units(
    profile: Profile,
    units: Sequence[int],
    site: Site,
    faults: dict[int, Fault] | None = None,
    options: DeviceOptions | None = None,
) -> dict[int, SimulatedDevice]:
    """One simulated device per unit id, each with its own seed (site seed + unit).

    Args:
        profile: the register map every unit serves.
        units: unit ids 1..247.
        site: the physics; unit `u` uses seed `site.seed + u` so readings differ.
        faults: misbehaving units for tests.
        options: SunSpec layout, starting counters and update period.
    """
    faults = faults or {}
    opts = options or DeviceOptions()
    out: dict[int, SimulatedDevice] = {}
    for unit in units:
        if not 1 <= unit <= 247:
            raise ValueError(f"unit id {unit} is outside 1..247")
        unit_site = dataclasses.replace(site, seed=site.seed + unit)
        out[unit] = SimulatedDevice(
            profile=profile,
            site=unit_site,
            fault=faults.get(unit),
            sunspec_base=opts.sunspec_base,
            sunspec_models=opts.sunspec_models,
            start_import_wh=opts.start_import_wh,
            start_export_wh=opts.start_export_wh,
            update_ms=opts.update_ms,
        )
    return out
