"""Decoders: known vectors, and properties over any register image."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hw.decode import (
    DecodeError,
    decode_point,
    decode_profile,
    decode_scale_factor,
    plausibility_problems,
)
from hw.measurement import Measurements
from hw.profile import TYPE_WORDS, PointSpec, list_profiles, load_profile
from hw.sim.encoding import (
    EncodeError,
    encode_point,
    encode_profile,
    measurement_value,
    sunspec_layout,
)
from hw.sunspec import resolve_profile

from .conftest import tolerance

PROFILES = {name: load_profile(name) for name in list_profiles()}
ALL_POINTS = [p for prof in PROFILES.values() for p in prof.points]


def f32(value: float) -> tuple[int, int]:
    raw = struct.unpack(">HH", struct.pack(">f", value))
    return raw[0], raw[1]


def spec(**kw: object) -> PointSpec:
    base: dict[str, object] = {"name": "p", "address": 0, "type": "u16"}
    base.update(kw)
    return PointSpec(**base)  # type: ignore[arg-type]


def test_float32_volts_to_decivolts_rounds_not_truncates() -> None:
    # 230.1 is 230.099998... in float32: truncation would give 2300.
    assert decode_point(spec(type="float32", scale=1), f32(230.1)) == 2301
    assert decode_point(spec(type="float32", scale=3), f32(1234.567)) == 1234567
    assert decode_point(spec(type="float32", scale=3), f32(49.98)) == 49980


def test_half_to_even_rounding() -> None:
    assert decode_point(spec(type="float32"), f32(2.5)) == 2
    assert decode_point(spec(type="float32"), f32(3.5)) == 4
    assert decode_point(spec(type="s16", scale=-1), [25]) == 2
    assert decode_point(spec(type="s16", scale=-1), [0xFFE7]) == -2  # -2.5


def test_word_and_byte_order() -> None:
    big = spec(type="u32")
    little_words = spec(type="u32", word_order="little")
    little_bytes = spec(type="u32", byte_order="little")
    assert decode_point(big, [0x0001, 0x0002]) == 0x0001_0002
    assert decode_point(little_words, [0x0002, 0x0001]) == 0x0001_0002
    assert decode_point(little_bytes, [0x0100, 0x0200]) == 0x0001_0002


def test_huawei_signed_power_and_gains() -> None:
    p = PROFILES["huawei-sun2000"]
    assert decode_point(p.point("active_power"), [0xFFFF, 0xFC18]) == -1000
    assert decode_point(p.point("grid_frequency"), [5001]) == 50010
    assert decode_point(p.point("total_yield"), [0x0001, 0x0000]) == 655360
    assert decode_point(p.point("phase_a_voltage"), [2301]) == 2301


def test_sunspec_scale_factor() -> None:
    w = spec(type="s16", scale_factor="W_SF")
    assert decode_point(w, [1234], scale_factor=1) == 12340
    assert decode_point(w, [1234], scale_factor=-2) == 12
    assert decode_scale_factor(spec(type="sunssf"), [0xFFFE]) == -2
    with pytest.raises(DecodeError, match="needs scale factor 'W_SF'"):
        decode_point(w, [1234])
    with pytest.raises(DecodeError, match=r"SunSpec allows -10..10"):
        decode_scale_factor(spec(name="W_SF", type="sunssf"), [0x8000])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_are_decode_errors(value: float) -> None:
    with pytest.raises(DecodeError, match="the device reports no value"):
        decode_point(spec(type="float32"), f32(value))


def test_out_of_range_and_bad_registers() -> None:
    with pytest.raises(DecodeError, match="out of range"):
        decode_point(spec(type="float32", scale=3), f32(3e38))
    with pytest.raises(DecodeError, match="out of range"):
        decode_point(spec(type="u64"), [0xFFFF] * 4)
    with pytest.raises(DecodeError, match="needs 2 registers, got 1"):
        decode_point(spec(type="u32"), [1])
    with pytest.raises(DecodeError, match=r"not 0..65535"):
        decode_point(spec(type="u16"), [70000])


any_spec = st.builds(
    PointSpec,
    name=st.just("p"),
    address=st.integers(0, 1000),
    type=st.sampled_from(sorted(TYPE_WORDS)),
    word_order=st.sampled_from(["big", "little"]),
    byte_order=st.sampled_from(["big", "little"]),
    scale=st.integers(-12, 12),
    scale_factor=st.none() | st.just("SF"),
)


@settings(max_examples=200)
@given(
    data=st.data(),
    point=st.sampled_from(ALL_POINTS) | any_spec,
    sf=st.none() | st.integers(-20, 20),
)
def test_any_registers_decode_or_raise_decode_error(
    data: st.DataObject, point: PointSpec, sf: int | None
) -> None:
    length = data.draw(st.integers(0, 5) | st.just(point.count))
    registers = data.draw(
        st.lists(
            st.integers(-5, 0x1_0005) | st.integers(0, 0xFFFF), min_size=length, max_size=length
        )
    )
    before = list(registers)
    try:
        result = decode_point(point, registers, sf)
    except DecodeError:
        pass
    else:
        assert isinstance(result, int)
        assert abs(result) <= 2**53
    assert registers == before


@settings(max_examples=200)
@given(point=any_spec, value=st.integers(-(2**40), 2**40), sf=st.integers(-10, 10))
def test_encode_then_decode_is_within_resolution(point: PointSpec, value: int, sf: int) -> None:
    factor = sf if point.scale_factor else None
    try:
        registers = encode_point(point, value, factor)
    except EncodeError:
        assume(False)
        return
    try:
        decoded = decode_point(point, registers, factor)
    except DecodeError:
        # Only legitimate when the value is beyond what decode accepts.
        assert abs(value) > 2**53 - 10 ** max(0, point.scale + (factor or 0))
        return
    assert abs(decoded - value) <= tolerance(point, value, factor or 0)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(PROFILES)))
def test_any_register_image_decodes_or_raises(data: st.DataObject, name: str) -> None:
    profile = PROFILES[name]
    if profile.protocol == "sunspec":
        smap, _ = sunspec_layout(profile, 40000)
        profile = resolve_profile(profile, smap)
    image = {}
    for p in profile.measured_points():
        for a in range(p.address, p.end):
            if data.draw(st.integers(0, 40)) == 0:
                continue  # missing register
            image[(p.function, a)] = data.draw(
                st.integers(0, 0xFFFF) | st.sampled_from([0, 0x7FC0, 0x7F80, 0x8000, 0xFFFF])
            )
    try:
        m = decode_profile(profile, image)
    except DecodeError:
        return
    assert isinstance(m, Measurements)


def test_encode_profile_round_trips_a_reading() -> None:
    reading = Measurements(
        power_w=-1234,
        voltage_dv=2301,
        frequency_mhz=49980,
        import_wh=1_234_567,
        export_wh=765_432,
        phases={
            "voltage_l1_dv": 2301,
            "voltage_l2_dv": 2299,
            "voltage_l3_dv": 2310,
            "power_l1_w": -400,
            "power_l2_w": -400,
            "power_l3_w": -434,
            "current_l1_ma": 1738,
            "current_l2_ma": 1740,
            "current_l3_ma": 1888,
        },
    )
    p = PROFILES["sdm630"]
    assert decode_profile(p, encode_profile(p, reading)) == reading


def test_sunspec_not_implemented_points_are_left_out() -> None:
    p = PROFILES["sunspec-inverter"]
    reading = Measurements(
        power_w=3000,
        voltage_dv=2300,
        frequency_mhz=50000,
        export_wh=10,
        phases={"current_ma": 13040},
    )
    image = encode_profile(p, reading, base=40000, model_ids=(1, 101, 120, 123))
    smap, _ = sunspec_layout(p, 40000, (1, 101, 120, 123))
    got = decode_profile(resolve_profile(p, smap), image)
    assert got.phases.get("voltage_l2_dv") is None
    assert got.power_w == 3000
    assert got.voltage_dv == 2300
    assert got.phases["voltage_l1_dv"] == 2300
    assert got.export_wh == 10


def test_unresolved_sunspec_profile_is_refused() -> None:
    with pytest.raises(DecodeError, match="run SunSpec discovery"):
        decode_profile(PROFILES["sunspec-inverter"], {})


def test_plausibility_names_the_value() -> None:
    p = PROFILES["sdm120"]
    ok = Measurements(power_w=500, voltage_dv=2300, frequency_mhz=50000, import_wh=1)
    assert plausibility_problems(p, ok) == []
    bad = Measurements(power_w=500_000, voltage_dv=2300, frequency_mhz=5000)
    problems = plausibility_problems(p, bad)
    assert any("power_w 500000 W" in x for x in problems)
    assert any("frequency_mhz 5000 mHz" in x for x in problems)


@settings(max_examples=100)
@given(
    name=st.sampled_from(sorted(PROFILES)),
    power=st.integers(-30_000, 30_000),
    volts=st.integers(1800, 2600),
    hz=st.integers(45_000, 65_000),
    energy=st.integers(2, 4_000_000),  # SunSpec acc32 0 means "not implemented"
)
def test_profile_round_trip_within_resolution(
    name: str, power: int, volts: int, hz: int, energy: int
) -> None:
    profile = PROFILES[name]
    reading = Measurements(
        power_w=power,
        voltage_dv=volts,
        frequency_mhz=hz,
        import_wh=energy,
        export_wh=energy // 2,
        phases={
            **{f"voltage_l{i}_dv": volts + i - 1 for i in (1, 2, 3)},
            **{f"power_l{i}_w": power // 3 for i in (1, 2, 3)},
            **{f"current_l{i}_ma": abs(power) * 3 for i in (1, 2, 3)},
            "current_ma": abs(power) * 4,
            "dc_power_w": abs(power),
            "daily_yield_wh": energy // 100,
        },
    )
    image = encode_profile(profile, reading)
    resolved = profile
    if profile.protocol == "sunspec":
        smap, _ = sunspec_layout(profile, 40000)
        resolved = resolve_profile(profile, smap)
    got = decode_profile(resolved, image)
    for spec in resolved.measured_points():
        factor = 0
        if spec.scale_factor:
            sf = resolved.point(spec.scale_factor)
            factor = decode_scale_factor(sf, [image[(sf.function, sf.address)]])
        for m in spec.measurements:
            want = measurement_value(reading, m)
            have = measurement_value(got, m)
            assert want is not None
            assert have is not None
            assert abs(have - want) <= tolerance(spec, want, factor), (m, have, want)
