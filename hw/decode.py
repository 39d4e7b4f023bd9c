"""Pure register decoding: 16-bit registers in, integer measurements out.

No I/O and no mutation of inputs. Any register values decode to an integer or raise
`DecodeError`; any other exception from this module is a bug. Floats from the device are
converted exactly (via `fractions.Fraction`) and rounded half to even, so a float32 of
230.1 V becomes 2301 dV, never 2300 from a truncation.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from fractions import Fraction

from hw.measurement import MAX_ENERGY_WH, Measurements
from hw.profile import HEADLINE_MEASUREMENTS, Function, PointSpec, Profile

RegisterImage = Mapping[tuple[Function, int], int]
"""Register values keyed by (function, address): what a device served for one reading."""

MAX_DECODED = MAX_ENERGY_WH
"""Largest magnitude a decoded value may have (exact in every JSON implementation)."""

SUNSSF_RANGE = range(-10, 11)
"""Valid SunSpec scale factors."""

NOT_IMPLEMENTED: Mapping[str, int] = {
    "u16": 0xFFFF,
    "s16": 0x8000,
    "sunssf": 0x8000,
    "u32": 0xFFFF_FFFF,
    "s32": 0x8000_0000,
    "acc32": 0,
    "u64": 0xFFFF_FFFF_FFFF_FFFF,
    "s64": 0x8000_0000_0000_0000,
    "float32": 0x7FC0_0000,
}
"""Raw value of each type that SunSpec reserves for "not implemented" (decoding refuses it,
the simulator serves it for points a device lacks)."""


class DecodeError(ValueError):
    """Registers cannot be turned into a valid integer; the message names point and reason."""


def registers_to_bytes(spec: PointSpec, registers: Sequence[int]) -> bytes:
    """Assemble a point's registers into big-endian bytes, honouring word and byte order.

    Raises:
        DecodeError: wrong register count or a value outside 0..65535.
    """
    if len(registers) != spec.count:
        raise DecodeError(
            f"point {spec.name!r} ({spec.type}) needs {spec.count} registers, got {len(registers)}"
        )
    for value in registers:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise DecodeError(f"point {spec.name!r}: register value {value!r} is not 0..65535")
    words = list(registers)
    if spec.word_order == "little":
        words.reverse()
    out = bytearray()
    for word in words:
        pair = word.to_bytes(2, "big")
        out += pair if spec.byte_order == "big" else pair[::-1]
    return bytes(out)


def raw_integer(spec: PointSpec, registers: Sequence[int]) -> int:
    """The point's registers as one unsigned integer, most significant bits first.

    Raises:
        DecodeError: wrong register count or a value outside 0..65535.
    """
    return int.from_bytes(registers_to_bytes(spec, registers), "big")


def is_not_implemented(spec: PointSpec, registers: Sequence[int]) -> bool:
    """Whether the registers hold SunSpec's "not implemented" value for the point's type.

    Raises:
        DecodeError: wrong register count or a value outside 0..65535.
    """
    raw = raw_integer(spec, registers)
    if spec.type == "float32":
        return math.isnan(struct.unpack(">f", raw.to_bytes(4, "big"))[0])
    return raw == NOT_IMPLEMENTED[spec.type]


def _native(spec: PointSpec, registers: Sequence[int]) -> int | Fraction:
    data = registers_to_bytes(spec, registers)
    if spec.type == "float32":
        value = struct.unpack(">f", data)[0]
        if math.isnan(value) or math.isinf(value):
            raise DecodeError(
                f"point {spec.name!r}: float32 is {value} (registers "
                f"{', '.join(f'0x{r:04X}' for r in registers)}); the device reports no value"
            )
        return Fraction(value)
    signed = spec.type in ("s16", "s32", "s64", "sunssf")
    return int.from_bytes(data, "big", signed=signed)


def decode_scale_factor(spec: PointSpec, registers: Sequence[int]) -> int:
    """Decode a SunSpec scale-factor point (a power of ten between -10 and 10).

    Raises:
        DecodeError: not implemented (0x8000) or outside -10..10.
    """
    if spec.type not in ("sunssf", "s16"):
        raise DecodeError(f"point {spec.name!r} has type {spec.type}, not a scale factor")
    value = _native(spec, registers)
    if value not in SUNSSF_RANGE:
        raise DecodeError(
            f"scale factor {spec.name!r} is {value}; SunSpec allows -10..10 "
            "(0x8000 means the device does not implement it)"
        )
    return int(value)


def decode_point(spec: PointSpec, registers: Sequence[int], scale_factor: int | None = None) -> int:
    """Decode one point into its measurement unit.

    The value is `native x 10**(spec.scale + scale_factor)`, rounded half to even.

    Args:
        spec: the point.
        registers: exactly `spec.count` register values (0..65535), in wire order.
        scale_factor: decoded SunSpec scale factor, required iff `spec.scale_factor` is set.

    Returns:
        The integer value in the measurement unit (W, dV, mHz, Wh, mA ...).

    Raises:
        DecodeError: wrong register count, bad register value, NaN/Inf, missing or invalid
            scale factor, or a result beyond +-2**53.
    """
    if spec.scale_factor is not None and scale_factor is None:
        raise DecodeError(f"point {spec.name!r} needs scale factor {spec.scale_factor!r}")
    if scale_factor is not None and scale_factor not in SUNSSF_RANGE:
        raise DecodeError(f"point {spec.name!r}: scale factor {scale_factor} is outside -10..10")
    exponent = spec.scale + (scale_factor or 0)
    native = _native(spec, registers)
    # Bound before scaling so a float32 near 3.4e38 never builds a huge Fraction.
    if abs(native) > MAX_DECODED * 10 ** max(0, -exponent):
        raise DecodeError(
            f"point {spec.name!r}: value {float(native):.6g} {spec.unit} is out of range"
        )
    scaled = native * Fraction(10) ** exponent
    result = round(scaled)
    if abs(result) > MAX_DECODED:
        raise DecodeError(
            f"point {spec.name!r}: value {float(native):.6g} {spec.unit} x 10^{exponent} "
            f"is out of range (|value| > 2**53)"
        )
    return result


def point_registers(spec: PointSpec, image: RegisterImage) -> tuple[int, ...]:
    """The registers of one point taken from an image.

    Raises:
        DecodeError: a register of the point is missing from the image.
    """
    out = []
    for address in range(spec.address, spec.end):
        value = image.get((spec.function, address))
        if value is None:
            raise DecodeError(
                f"point {spec.name!r}: {spec.function} register {address} was not read"
            )
        out.append(value)
    return tuple(out)


def decode_profile(profile: Profile, image: RegisterImage) -> Measurements:
    """Decode every measured point of a profile from a register image.

    SunSpec profiles must be resolved first (`hw.sunspec.resolve_profile`); their
    "not implemented" values are left out of the result instead of failing.

    Raises:
        DecodeError: a register is missing or a value cannot be decoded.
    """
    sunspec = profile.protocol == "sunspec"
    values: dict[str, int] = {}
    for spec in profile.measured_points():
        if spec.models:
            raise DecodeError(
                f"profile {profile.name!r}: point {spec.name!r} has no absolute address yet; "
                "run SunSpec discovery (hw.sunspec.resolve_profile) first"
            )
        if not spec.measurements:
            continue
        registers = point_registers(spec, image)
        if sunspec and is_not_implemented(spec, registers):
            continue
        factor: int | None = None
        if spec.scale_factor is not None:
            sf_spec = profile.point(spec.scale_factor)
            sf_registers = point_registers(sf_spec, image)
            if sunspec and is_not_implemented(sf_spec, sf_registers):
                continue
            factor = decode_scale_factor(sf_spec, sf_registers)
        value = decode_point(spec, registers, factor)
        for name in spec.measurements:
            values[name] = value
    return Measurements(
        power_w=values.get("power_w"),
        voltage_dv=values.get("voltage_dv"),
        frequency_mhz=values.get("frequency_mhz"),
        import_wh=values.get("import_wh"),
        export_wh=values.get("export_wh"),
        phases={k: v for k, v in sorted(values.items()) if k not in HEADLINE_MEASUREMENTS},
    )


def plausibility_problems(profile: Profile, reading: Measurements) -> list[str]:
    """Values of a reading outside the profile's physical limits, as sentences.

    An empty list means the reading is plausible. Cumulative counters going backwards
    need the previous reading and are checked by the caller.
    """
    lim = profile.limits
    problems: list[str] = []
    min_power = lim.min_power_w if lim.min_power_w is not None else -lim.max_power_w
    powers = {"power_w": reading.power_w}
    powers.update({k: v for k, v in reading.phases.items() if k.startswith("power_")})
    for name, power in powers.items():
        if power is not None and not min_power <= power <= lim.max_power_w:
            problems.append(f"{name} {power} W outside {min_power}..{lim.max_power_w} W")
    volts = {"voltage_dv": reading.voltage_dv}
    volts.update({k: v for k, v in reading.phases.items() if k.startswith("voltage_")})
    for name, dv in volts.items():
        if dv is not None and not lim.min_voltage_dv <= dv <= lim.max_voltage_dv:
            problems.append(f"{name} {dv} dV outside {lim.min_voltage_dv}..{lim.max_voltage_dv} dV")
    hz = reading.frequency_mhz
    if hz is not None and not lim.min_frequency_mhz <= hz <= lim.max_frequency_mhz:
        problems.append(
            f"frequency_mhz {hz} mHz outside {lim.min_frequency_mhz}..{lim.max_frequency_mhz} mHz"
        )
    for name, wh in (("import_wh", reading.import_wh), ("export_wh", reading.export_wh)):
        if wh is not None and not 0 <= wh <= lim.max_energy_wh:
            problems.append(f"{name} {wh} Wh outside 0..{lim.max_energy_wh} Wh")
    return problems
