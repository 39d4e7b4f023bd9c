"""Register encoding: the inverse of `hw.decode`, so a simulator serves what a profile decodes.

Pure. `encode_point` turns an integer measurement into the point's registers;
`encode_profile` builds a whole register image for a reading, including the SunSpec
marker and model chain for SunSpec profiles.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from fractions import Fraction

from hw.decode import NOT_IMPLEMENTED, RegisterImage
from hw.measurement import Measurements
from hw.profile import Function, PointSpec, Profile
from hw.sunspec import (
    END_MODEL_ID,
    MODEL_LENGTHS,
    SUNS_MARKER,
    ModelEntry,
    SunSpecMap,
    resolve_profile,
)

_INT_RANGES = {
    "u16": (0, 0xFFFE),
    "s16": (-0x7FFF, 0x7FFF),
    "sunssf": (-10, 10),
    "u32": (0, 0xFFFF_FFFE),
    "s32": (-0x7FFF_FFFF, 0x7FFF_FFFF),
    "acc32": (0, 0xFFFF_FFFF),
    "u64": (0, 0xFFFF_FFFF_FFFF_FFFE),
    "s64": (-(2**63) + 1, 2**63 - 1),
}
"""Encodable native ranges; the extremes SunSpec reserves for "not implemented" are left out."""


class EncodeError(ValueError):
    """A value cannot be represented by a point's type and scale."""


def bytes_to_registers(spec: PointSpec, data: bytes) -> tuple[int, ...]:
    """Split big-endian bytes into the point's registers in wire order."""
    words = []
    for i in range(0, len(data), 2):
        pair = data[i : i + 2]
        words.append(int.from_bytes(pair if spec.byte_order == "big" else pair[::-1], "big"))
    if spec.word_order == "little":
        words.reverse()
    return tuple(words)


def not_implemented_registers(spec: PointSpec) -> tuple[int, ...]:
    """Registers carrying SunSpec's "not implemented" value for the point's type."""
    raw = NOT_IMPLEMENTED[spec.type]
    return bytes_to_registers(spec, raw.to_bytes(2 * spec.count, "big"))


def encode_point(spec: PointSpec, value: int, scale_factor: int | None = None) -> tuple[int, ...]:
    """Registers that `hw.decode.decode_point` turns back into `value` (within resolution).

    Args:
        spec: the point.
        value: integer in the measurement unit.
        scale_factor: SunSpec scale factor the registers are to be read with.

    Raises:
        EncodeError: the value does not fit the point's type at this scale.
    """
    exponent = spec.scale + (scale_factor or 0)
    native = Fraction(value) / Fraction(10) ** exponent
    if spec.type == "float32":
        try:
            data = struct.pack(">f", float(native))
        except (OverflowError, struct.error) as exc:
            raise EncodeError(f"point {spec.name!r}: {value} overflows float32") from exc
        return bytes_to_registers(spec, data)
    raw = round(native)
    lo, hi = _INT_RANGES[spec.type]
    if not lo <= raw <= hi:
        raise EncodeError(
            f"point {spec.name!r}: {value} is {raw} {spec.unit} at 10^{exponent}, "
            f"outside {spec.type} range {lo}..{hi}"
        )
    return bytes_to_registers(spec, (raw % 2 ** (16 * spec.count)).to_bytes(2 * spec.count, "big"))


def measurement_value(reading: Measurements, name: str) -> int | None:
    """The value of one measurement name in a reading (headline field or `phases`)."""
    headline = {
        "power_w": reading.power_w,
        "voltage_dv": reading.voltage_dv,
        "frequency_mhz": reading.frequency_mhz,
        "import_wh": reading.import_wh,
        "export_wh": reading.export_wh,
    }
    if name in headline:
        return headline[name]
    return reading.phases.get(name)


def sunspec_layout(
    profile: Profile, base: int, model_ids: Sequence[int] | None = None
) -> tuple[SunSpecMap, dict[tuple[Function, int], int]]:
    """The SunSpec skeleton of a device: marker, model headers, zeros, end marker.

    Args:
        profile: a SunSpec profile.
        base: address of the `SunS` marker (40000, 50000 or 0).
        model_ids: the chain to build; defaults to the profile's `[sunspec] models`.

    Raises:
        EncodeError: a model's length is unknown or the chain runs past 65535.
    """
    ids = (
        tuple(model_ids)
        if model_ids is not None
        else (profile.sunspec.models if profile.sunspec else ())
    )
    image: dict[tuple[Function, int], int] = {
        ("holding", base): SUNS_MARKER[0],
        ("holding", base + 1): SUNS_MARKER[1],
    }
    cursor = base + 2
    entries = []
    for model_id in ids:
        length = MODEL_LENGTHS.get(model_id)
        if length is None:
            raise EncodeError(f"model {model_id}: length unknown to hw.sunspec.MODEL_LENGTHS")
        if cursor + 2 + length + 2 > 0x10000:
            raise EncodeError(f"SunSpec chain from base {base} runs past register 65535")
        entries.append(ModelEntry(model_id, cursor, length))
        image[("holding", cursor)] = model_id
        image[("holding", cursor + 1)] = length
        for address in range(cursor + 2, cursor + 2 + length):
            image[("holding", address)] = 0
        cursor += 2 + length
    image[("holding", cursor)] = END_MODEL_ID
    image[("holding", cursor + 1)] = 0
    return SunSpecMap(base, tuple(entries)), image


def encode_profile(
    profile: Profile,
    reading: Measurements,
    base: int = 40000,
    model_ids: Sequence[int] | None = None,
) -> dict[tuple[Function, int], int]:
    """A register image from which `decode_profile` recovers `reading`.

    Points without a value in `reading` serve their `sim_value`, or SunSpec's
    "not implemented" value (SunSpec profiles), or zeros. Scale-factor points serve
    their `sim_value` (0 if absent).

    Args:
        profile: the device profile.
        reading: the values to serve.
        base: SunSpec base address (SunSpec profiles only).
        model_ids: SunSpec model chain (defaults to the profile's).

    Raises:
        EncodeError: a value does not fit its point.
    """
    image: dict[tuple[Function, int], int] = {}
    resolved = profile
    if profile.protocol == "sunspec":
        smap, image = sunspec_layout(profile, base, model_ids)
        resolved = resolve_profile(profile, smap)
    values = {spec.name: _point_value(spec, reading) for spec in resolved.points}
    factors = _choose_scale_factors(resolved, values)
    for spec in resolved.points:
        value = factors.get(spec.name, values[spec.name])
        if value is None:
            if profile.protocol == "sunspec" and spec.measurements:
                registers = not_implemented_registers(spec)
            else:
                registers = (0,) * spec.count
        else:
            factor = factors.get(spec.scale_factor) if spec.scale_factor else None
            registers = encode_point(spec, value, factor)
        for offset, register in enumerate(registers):
            image[(spec.function, spec.address + offset)] = register
    return image


def _point_value(spec: PointSpec, reading: Measurements) -> int | None:
    for name in spec.measurements:
        value = measurement_value(reading, name)
        if value is not None:
            return value
    return spec.sim_value


def _choose_scale_factors(profile: Profile, values: dict[str, int | None]) -> dict[str, int]:
    """Pick each scale factor like a device would: its `sim_value`, raised until all fit.

    A 10 kW inverter cannot serve 12,000 W in an s16 at W_SF 0, so W_SF becomes 1.
    """
    users: dict[str, list[PointSpec]] = {}
    for spec in profile.points:
        if spec.scale_factor is not None:
            users.setdefault(spec.scale_factor, []).append(spec)
    chosen: dict[str, int] = {}
    for sf_name, points in users.items():
        start = values.get(sf_name) or 0
        for factor in range(start, 11):
            try:
                for spec in points:
                    value = values[spec.name]
                    if value is not None:
                        encode_point(spec, value, factor)
            except EncodeError:
                continue
            chosen[sf_name] = factor
            break
        else:
            raise EncodeError(f"no scale factor {sf_name} up to 10 fits the values")
    return chosen


def image_span(image: RegisterImage) -> dict[Function, tuple[int, int]]:
    """Lowest address and one past the highest per function, for sizing server blocks."""
    spans: dict[Function, tuple[int, int]] = {}
    for function, address in image:
        lo, hi = spans.get(function, (address, address + 1))
        spans[function] = (min(lo, address), max(hi, address + 1))
    return spans
