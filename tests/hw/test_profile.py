"""Profile loading: shipped profiles load; bad files fail with messages naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw.profile import ProfileError, list_profiles, load_profile, parse_profile

GOOD = """
[device]
kind = "meter"
function = "input"

[points.v]
address = 0
type = "float32"
scale = 1
measurement = "voltage_dv"
"""


def test_shipped_profiles_are_listed_and_load() -> None:
    names = list_profiles()
    assert names == ["huawei-sun2000", "sdm120", "sdm630", "sunspec-inverter"]
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.measured_points()


def test_sdm630_map_matches_the_eastron_manual() -> None:
    p = load_profile("sdm630")
    assert p.point("total_power").address == 0x34
    assert p.point("frequency").address == 0x46
    assert p.point("import_energy").address == 0x48
    assert p.point("export_energy").address == 0x4A
    assert [p.point(f"power_l{i}").address for i in (1, 2, 3)] == [0x0C, 0x0E, 0x10]
    assert all(pt.function == "input" and pt.type == "float32" for pt in p.points)
    assert p.point("voltage_l1").measurements == ("voltage_dv", "voltage_l1_dv")


def test_inverters_count_yield_as_export() -> None:
    for name in ("huawei-sun2000", "sunspec-inverter"):
        p = load_profile(name)
        fed = {m for pt in p.points for m in pt.measurements}
        assert p.kind == "inverter"
        assert "export_wh" in fed
        assert "import_wh" not in fed


def test_load_by_path(tmp_path: Path) -> None:
    f = tmp_path / "mymeter.toml"
    f.write_text(GOOD)
    p = load_profile(f)
    assert p.name == "mymeter"
    assert p.point("v").function == "input"


def test_unknown_profile_lists_shipped_ones() -> None:
    with pytest.raises(ProfileError, match=r"no profile named 'nope'.*sdm630"):
        load_profile("nope")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[device\nkind=1", "not valid TOML"),
        (GOOD.replace('type = "float32"', 'type = "float16"'), "point 'v' type: must be one of"),
        (GOOD.replace("address = 0", ""), "point 'v': missing key 'address'"),
        (GOOD.replace('type = "float32"', ""), "point 'v': missing key 'type'"),
        (GOOD.replace("scale = 1", "scael = 1"), "point 'v': unknown key 'scael'"),
        (GOOD.replace('kind = "meter"', 'kind = "toaster"'), r"\[device\] kind"),
        (GOOD.replace("address = 0", "address = -1"), "address: must be between 0"),
        (GOOD.replace("address = 0", 'address = "0"'), "address: must be an integer"),
        (GOOD.replace('"voltage_dv"', '"volts"'), "'volts' is not a measurement name"),
        (GOOD + '\n[points.w]\naddress = 1\ntype = "u16"\n', "'w'.*overlap point 'v'"),
        (
            GOOD + '\n[points.w]\naddress = 2\ntype = "u16"\nmeasurement = "voltage_dv"\n',
            "already fed by point 'v'",
        ),
        (GOOD.replace("scale = 1", 'scale_factor = "V_SF"'), "no point named 'V_SF'"),
        (GOOD.replace("address = 0", "model = 103\noffset = 2"), "only for sunspec"),
        (GOOD + "\n[limits]\nmax_power_w = 1.5\n", r"\[limits\] max_power_w: must be an integer"),
        ("[device]\nkind='meter'\n", "at least one point"),
    ],
)
def test_bad_profiles_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ProfileError, match=match) as info:
        load_profile(f)
    assert str(f) in str(info.value)


def test_sunspec_points_need_model_and_offset() -> None:
    text = """
[device]
kind = "inverter"
protocol = "sunspec"
[points.W]
model = 103
type = "s16"
measurement = "power_w"
"""
    with pytest.raises(ProfileError, match="point 'W': missing key 'offset'"):
        parse_profile(text, "x.toml")


def test_scale_factor_must_be_sunssf() -> None:
    text = (
        GOOD.replace("scale = 1", 'scale_factor = "sf"') + '\n[points.sf]\naddress=9\ntype="u32"\n'
    )
    with pytest.raises(ProfileError, match="a scale factor must be sunssf or s16"):
        parse_profile(text, "x.toml")
