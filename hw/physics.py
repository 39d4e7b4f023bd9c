"""Deterministic physical models for simulated devices: sun, PV, household load, grid.

Time is always an argument (unix milliseconds) and randomness a seed, so a model gives
the same value for the same (seed, time) on every run. Internals use floats; everything
returned is an integer in W, dV, mHz or Wh.

Models:
- solar position from the NOAA-style approximations (declination, equation of time);
- clear-sky global horizontal irradiance after Haurwitz (1945):
  GHI = 1098 cos z exp(-0.057 / cos z) W/m2;
- PV output = rated kWp x GHI / 1000 W/m2 x performance ratio x cloud factor, where
  clouds are seeded value noise over 10-minute knots (clear most of the time, dips to 30 %);
- household load: base load plus morning and evening peaks in local time, seeded noise;
- grid voltage near 230 V and frequency near 50 Hz with slow deterministic wander.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime

BANGKOK_LAT = 13.7563
"""Default latitude, degrees north."""
BANGKOK_LON = 100.5018
"""Default longitude, degrees east."""
BANGKOK_UTC_OFFSET_H = 7
"""Indochina Time, used for the household load's daily rhythm."""

MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 86_400_000
_CLOUD_KNOT_MS = 600_000
_LOAD_KNOT_MS = 60_000


def _knot_noise(seed: int, stream: str, knot: int) -> float:
    """Uniform [0, 1) for one knot; string seeds hash with SHA-512, stable across runs."""
    return random.Random(f"{seed}:{stream}:{knot}").random()  # noqa: S311 (simulation noise)


def _smooth_noise(seed: int, stream: str, now_ms: int, knot_ms: int) -> float:
    """Value noise in [0, 1): cosine interpolation between seeded knots."""
    knot, rest = divmod(now_ms, knot_ms)
    a = _knot_noise(seed, stream, knot)
    b = _knot_noise(seed, stream, knot + 1)
    w = (1 - math.cos(math.pi * rest / knot_ms)) / 2
    return a * (1 - w) + b * w


def solar_elevation_cos(now_ms: int, lat: float = BANGKOK_LAT, lon: float = BANGKOK_LON) -> float:
    """Cosine of the solar zenith angle at a place and time (negative: sun below horizon).

    Args:
        now_ms: unix time in milliseconds.
        lat: latitude in degrees north.
        lon: longitude in degrees east.
    """
    ms_of_day = now_ms % _MS_PER_DAY
    n = datetime.fromtimestamp(now_ms // 1000, tz=UTC).timetuple().tm_yday
    hours_utc = ms_of_day / MS_PER_HOUR
    declination = math.radians(23.45) * math.sin(2 * math.pi * (284 + n) / 365)
    b = 2 * math.pi * (n - 81) / 364
    eot_min = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)
    solar_hours = hours_utc + lon / 15 + eot_min / 60
    hour_angle = math.radians(15 * (solar_hours - 12))
    phi = math.radians(lat)
    return math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(declination) * math.cos(
        hour_angle
    )


def clear_sky_ghi(now_ms: int, lat: float = BANGKOK_LAT, lon: float = BANGKOK_LON) -> float:
    """Haurwitz clear-sky global horizontal irradiance in W/m2 (0 at night)."""
    cos_z = solar_elevation_cos(now_ms, lat, lon)
    if cos_z <= 0.01:
        return 0.0
    return 1098.0 * cos_z * math.exp(-0.057 / cos_z)


def cloud_factor(now_ms: int, seed: int) -> float:
    """Fraction of clear-sky light getting through, 0.3..1.0, from seeded cloud noise."""
    u = _smooth_noise(seed, "cloud", now_ms, _CLOUD_KNOT_MS)
    depth = max(0.0, (u - 0.55) / 0.45)
    return 1.0 - 0.7 * depth


@dataclass(frozen=True, slots=True)
class PvArray:
    """A PV system: rated DC power, place, and performance ratio."""

    rated_w: int = 5000
    """Rated (peak) power in W at 1000 W/m2."""
    lat: float = BANGKOK_LAT
    """Latitude, degrees north."""
    lon: float = BANGKOK_LON
    """Longitude, degrees east."""
    seed: int = 0
    """Seed of the cloud process."""
    performance_ratio: float = 0.8
    """Losses from temperature, wiring and the inverter."""
    clouds: bool = True
    """Whether clouds dip the output (False: clear sky only)."""

    def power_w(self, now_ms: int) -> int:
        """AC output in W at `now_ms` (0 at night)."""
        ghi = clear_sky_ghi(now_ms, self.lat, self.lon)
        if ghi <= 0:
            return 0
        factor = cloud_factor(now_ms, self.seed) if self.clouds else 1.0
        return round(self.rated_w * ghi / 1000.0 * self.performance_ratio * factor)


@dataclass(frozen=True, slots=True)
class HouseholdLoad:
    """A Thai household's consumption: base load, morning and evening peaks, noise."""

    base_w: int = 250
    """Always-on load (fridge, router, standby) in W."""
    morning_peak_w: int = 700
    """Extra load at the morning peak (07:00 local) in W."""
    evening_peak_w: int = 1800
    """Extra load at the evening peak (19:30 local: air conditioning, cooking) in W."""
    midday_w: int = 400
    """Extra daytime load (13:00 local) in W."""
    utc_offset_h: int = BANGKOK_UTC_OFFSET_H
    """Local time offset from UTC in hours."""
    seed: int = 0
    """Seed of the noise."""

    def power_w(self, now_ms: int) -> int:
        """Consumption in W at `now_ms` (always positive)."""
        local_h = ((now_ms / MS_PER_HOUR) + self.utc_offset_h) % 24

        def bump(center: float, width: float) -> float:
            d = min(abs(local_h - center), 24 - abs(local_h - center))
            return math.exp(-0.5 * (d / width) ** 2)

        shape = (
            self.base_w
            + self.morning_peak_w * bump(7.0, 1.0)
            + self.midday_w * bump(13.0, 2.5)
            + self.evening_peak_w * bump(19.5, 1.5)
        )
        noise = 0.85 + 0.3 * _smooth_noise(self.seed, "load", now_ms, _LOAD_KNOT_MS)
        return max(1, round(shape * noise))


@dataclass(frozen=True, slots=True)
class Grid:
    """Grid voltage and frequency with slow, small, deterministic wander."""

    nominal_dv: int = 2300
    """Nominal line-to-neutral voltage in dV."""
    nominal_mhz: int = 50_000
    """Nominal frequency in mHz."""
    seed: int = 0
    """Seed of the noise."""

    def voltage_dv(self, now_ms: int, phase: int = 1) -> int:
        """Voltage of `phase` (1..3) in dV: within about +-6 V of nominal."""
        slow = 40 * math.sin(2 * math.pi * now_ms / (3 * MS_PER_HOUR) + phase)
        noise = 20 * (_smooth_noise(self.seed, f"v{phase}", now_ms, 10_000) - 0.5)
        return round(self.nominal_dv + slow + noise)

    def frequency_mhz(self, now_ms: int) -> int:
        """Frequency in mHz: within about +-50 mHz of nominal."""
        slow = 30 * math.sin(2 * math.pi * now_ms / 1_020_000)
        noise = 30 * (_smooth_noise(self.seed, "f", now_ms, 1_000) - 0.5)
        return round(self.nominal_mhz + slow + noise)


@dataclass(frozen=True, slots=True)
class EnergyIntegrator:
    """Cumulative import and export energy, integrated exactly in W*ms.

    Positive power is import, negative is export. The counters only ever grow: time that
    goes backwards or stands still adds nothing.
    """

    import_wms: int = 0
    """Imported energy in W*ms (3,600,000 W*ms = 1 Wh)."""
    export_wms: int = 0
    """Exported energy in W*ms."""
    last_ms: int | None = None
    """Time of the previous sample, None before the first."""

    @classmethod
    def starting_at(cls, import_wh: int, export_wh: int, now_ms: int) -> EnergyIntegrator:
        """An integrator whose counters start at the given Wh at `now_ms`."""
        if import_wh < 0 or export_wh < 0:
            raise ValueError("energy counters start at 0 Wh or more")
        return cls(import_wh * MS_PER_HOUR, export_wh * MS_PER_HOUR, now_ms)

    @property
    def import_wh(self) -> int:
        """Imported energy in whole Wh (rounded down)."""
        return self.import_wms // MS_PER_HOUR

    @property
    def export_wh(self) -> int:
        """Exported energy in whole Wh (rounded down)."""
        return self.export_wms // MS_PER_HOUR

    def advance(self, power_w: int, now_ms: int) -> EnergyIntegrator:
        """Add `power_w` held constant since the previous sample; returns the new state."""
        if self.last_ms is None:
            return EnergyIntegrator(self.import_wms, self.export_wms, now_ms)
        dt = now_ms - self.last_ms
        if dt <= 0:
            return self
        energy = power_w * dt
        if energy >= 0:
            return EnergyIntegrator(self.import_wms + energy, self.export_wms, now_ms)
        return EnergyIntegrator(self.import_wms, self.export_wms - energy, now_ms)
