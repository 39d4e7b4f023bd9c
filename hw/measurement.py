"""The integer measurements every device reader produces, whatever its protocol."""

from __future__ import annotations

from dataclasses import dataclass, field

# Physical bounds a sane reading must respect (see docs/protocol.md "telemetry").
MAX_POWER_W = 10_000_000  # 10 MW: far above any LV prosumer site, catches garbage registers
MAX_VOLTAGE_DV = 10_000  # 1,000.0 V
MIN_FREQUENCY_MHZ = 40_000  # 40 Hz
MAX_FREQUENCY_MHZ = 70_000  # 70 Hz
MAX_ENERGY_WH = 2**53  # cumulative register ceiling; exact in every JSON implementation


@dataclass(frozen=True, slots=True)
class Measurements:
    """One instant's reading of a meter or inverter, in integer units.

    `None` means the device does not measure that quantity. Positive power is export
    (generation leaving the site) for inverters and import for meters, exactly as the
    device reports it; the profile's sign convention is documented next to the register.
    """

    power_w: int | None = None
    """Total active power in W."""
    voltage_dv: int | None = None
    """Line-to-neutral voltage in decivolts (phase 1 or the single phase)."""
    frequency_mhz: int | None = None
    """Grid frequency in millihertz."""
    import_wh: int | None = None
    """Cumulative energy imported from the grid in Wh (never decreases)."""
    export_wh: int | None = None
    """Cumulative energy exported to the grid in Wh (never decreases)."""
    phases: dict[str, int] = field(default_factory=dict)
    """Per-phase and extra values keyed by measurement name, e.g. `power_l1_w`, `voltage_l2_dv`."""

    def as_body_fields(self) -> dict[str, int]:
        """The five headline values with `None` as 0, the shape a `telemetry` body carries."""
        return {
            "power_w": self.power_w or 0,
            "voltage_dv": self.voltage_dv or 0,
            "frequency_mhz": self.frequency_mhz or 0,
            "import_wh": self.import_wh or 0,
            "export_wh": self.export_wh or 0,
        }
