"""Device profiles: register maps loaded from TOML data files into frozen specs.

A profile is one TOML file in `hw/profiles/` (or any path). Contributors add a meter by
writing its vendor's register map as data; no Python changes. The file format:

```toml
[device]
name = "sdm120"            # defaults to the file stem
vendor = "Eastron"
kind = "meter"             # meter | inverter
protocol = "modbus"        # modbus | sunspec
function = "input"         # default register table: holding | input
word_order = "big"         # default order of 16-bit words in multi-word values
byte_order = "big"         # default order of bytes inside each register
default_unit = 1

[limits]                   # physical range used for sanity checks
max_power_w = 9200

[points.active_power]
address = 0x000C           # or, for sunspec profiles: model = 103 and offset = 14
type = "float32"           # u16 s16 u32 s32 u64 s64 float32 sunssf acc32
unit = "W"                 # the unit the device reports
scale = 0                  # power of ten taking the device unit to the measurement unit
scale_factor = "W_SF"      # optional: name of a SunSpec scale-factor point
measurement = "power_w"    # or a list, e.g. ["voltage_dv", "voltage_l1_dv"]
```
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Function = Literal["holding", "input"]
"""Modbus register table: holding (FC3) or input (FC4)."""

Order = Literal["big", "little"]

TYPE_WORDS: Mapping[str, int] = {
    "u16": 1,
    "s16": 1,
    "sunssf": 1,
    "u32": 2,
    "s32": 2,
    "acc32": 2,
    "float32": 2,
    "u64": 4,
    "s64": 4,
}
"""Register count of each supported point type."""

HEADLINE_MEASUREMENTS = frozenset(
    {"power_w", "voltage_dv", "frequency_mhz", "import_wh", "export_wh"}
)
"""Measurements that fill the named fields of `Measurements`; others go to `phases`."""

_EXTRA_MEASUREMENT = re.compile(r"^[a-z][a-z0-9_]*_(w|dv|mhz|wh|ma|pct|va|var)$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DEVICE_KEYS = frozenset(
    {
        "name",
        "vendor",
        "model",
        "description",
        "kind",
        "protocol",
        "function",
        "word_order",
        "byte_order",
        "default_unit",
    }
)
_POINT_KEYS = frozenset(
    {
        "address",
        "offset",
        "model",
        "function",
        "type",
        "word_order",
        "byte_order",
        "unit",
        "scale",
        "scale_factor",
        "measurement",
        "access",
        "description",
        "sim_value",
    }
)
_LIMIT_KEYS = frozenset(
    {
        "max_power_w",
        "min_power_w",
        "min_voltage_dv",
        "max_voltage_dv",
        "min_frequency_mhz",
        "max_frequency_mhz",
        "max_energy_wh",
    }
)
_SUNSPEC_KEYS = frozenset({"bases", "models"})
_TOP_KEYS = frozenset({"device", "limits", "points", "sunspec"})


class ProfileError(ValueError):
    """A profile file is invalid; the message names the file, the point and the problem."""


@dataclass(frozen=True, slots=True)
class PointSpec:
    """Where one value lives in a device's registers and how to turn it into an integer."""

    name: str
    """Point name as written in the profile (vendor or SunSpec name)."""
    address: int
    """Register address (0-based PDU address); for SunSpec points the offset in the model."""
    type: str
    """One of `TYPE_WORDS`."""
    function: Function = "holding"
    """Register table to read."""
    word_order: Order = "big"
    """Order of 16-bit words: big means the most significant word first."""
    byte_order: Order = "big"
    """Order of the two bytes inside each register."""
    scale: int = 0
    """Power of ten taking the device unit to the measurement unit (kWh to Wh is 3)."""
    scale_factor: str | None = None
    """Name of the point holding a SunSpec scale factor (power of ten) added to `scale`."""
    measurements: tuple[str, ...] = ()
    """Measurements this point feeds; empty for scale factors, controls and nameplate."""
    unit: str = ""
    """Unit the device reports, for documentation (e.g. `kWh`)."""
    models: tuple[int, ...] = ()
    """SunSpec model ids the point may live in (first present wins); empty for plain Modbus."""
    access: Literal["r", "rw"] = "r"
    """`rw` for writable controls."""
    description: str = ""
    """Free text from the vendor's map."""
    sim_value: int | None = None
    """Value a simulator serves for a scale factor or constant point."""

    @property
    def count(self) -> int:
        """Number of 16-bit registers the point occupies."""
        return TYPE_WORDS[self.type]

    @property
    def end(self) -> int:
        """One past the last register address of the point."""
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class Limits:
    """Physical range of a device's readings, used to reject garbage before signing."""

    max_power_w: int = 10_000_000
    """Largest plausible absolute active power in W."""
    min_power_w: int | None = None
    """Smallest plausible power in W (defaults to -max_power_w)."""
    min_voltage_dv: int = 0
    """Lowest plausible voltage in dV."""
    max_voltage_dv: int = 10_000
    """Highest plausible voltage in dV."""
    min_frequency_mhz: int = 40_000
    """Lowest plausible grid frequency in mHz."""
    max_frequency_mhz: int = 70_000
    """Highest plausible grid frequency in mHz."""
    max_energy_wh: int = 2**53
    """Largest plausible cumulative energy register in Wh."""


@dataclass(frozen=True, slots=True)
class SunSpecSpec:
    """Where to look for the SunSpec marker and which models the profile uses."""

    bases: tuple[int, ...] = (40000, 50000, 0)
    """Candidate base addresses of the `SunS` marker, tried in order."""
    models: tuple[int, ...] = ()
    """Model ids the profile expects (for documentation and the simulator's chain)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A device's register map: points, physical limits and protocol details."""

    name: str
    """Profile name (file stem), e.g. `sdm630`."""
    kind: Literal["meter", "inverter"]
    """Meter or inverter: tells which way energy counts."""
    points: tuple[PointSpec, ...]
    """All points, sorted by (function, address)."""
    protocol: Literal["modbus", "sunspec"] = "modbus"
    """Plain register map, or SunSpec (addresses found by discovery)."""
    default_unit: int = 1
    """Modbus unit id the device ships with."""
    limits: Limits = field(default_factory=Limits)
    """Physical range for sanity checks."""
    sunspec: SunSpecSpec | None = None
    """SunSpec discovery parameters, for `protocol = "sunspec"`."""
    vendor: str = ""
    """Manufacturer."""
    description: str = ""
    """Free text."""
    source: str = ""
    """File the profile was loaded from, for error messages."""

    def point(self, name: str) -> PointSpec:
        """Return the point called `name`.

        Raises:
            KeyError: no such point.
        """
        for spec in self.points:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name}: no point named {name!r}")

    def measured_points(self) -> tuple[PointSpec, ...]:
        """Points to read for `Measurements`: those feeding a measurement and their factors."""
        wanted = {p.name for p in self.points if p.measurements}
        wanted |= {p.scale_factor for p in self.points if p.measurements and p.scale_factor}
        return tuple(p for p in self.points if p.name in wanted)


def profiles_dir() -> Path:
    """Directory of the profiles shipped with the package."""
    return Path(__file__).resolve().parent / "profiles"


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def load_profile(name_or_path: str | Path, base: Path | None = None) -> Profile:
    """Load a shipped profile by name (`sdm630`) or any profile file by path.

    A relative file path is relative to `base` (a config file's directory), if given.

    Raises:
        ProfileError: the file is missing, not TOML, or not a valid profile; the message
            names the file, the point and the problem.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".toml"):
        path = (base or Path()) / name_or_path
    else:
        path = profiles_dir() / f"{text}.toml"
        if not path.is_file():
            raise ProfileError(
                f"no profile named {text!r}; shipped profiles: {', '.join(list_profiles())}"
            )
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc.strerror}") from exc
    return parse_profile(raw, source=str(path), default_name=path.stem)


def parse_profile(text: str, source: str = "<string>", default_name: str = "") -> Profile:
    """Parse profile TOML text.

    Args:
        text: the TOML document.
        source: file name used in error messages.
        default_name: profile name when `[device] name` is absent.

    Raises:
        ProfileError: invalid TOML or invalid profile content.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML: {exc}") from exc
    return _build_profile(doc, source, default_name)


def _fail(source: str, where: str, problem: str) -> ProfileError:
    return ProfileError(f"{source}: {where}: {problem}")


def _check_keys(source: str, where: str, table: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(
            source, where, f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )


def _table(source: str, where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, where, f"must be a table, got {type(value).__name__}")
    return value


def _int(source: str, where: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(source, where, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise _fail(source, where, f"must be between {lo} and {hi}, got {value}")
    return value


def _choice(source: str, where: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(source, where, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _build_profile(doc: Mapping[str, Any], source: str, default_name: str) -> Profile:
    _check_keys(source, "top level", doc, _TOP_KEYS)
    device = _table(source, "[device]", doc.get("device", {}))
    _check_keys(source, "[device]", device, _DEVICE_KEYS)
    name = str(device.get("name", default_name or "profile"))
    kind = _choice(source, "[device] kind", device.get("kind"), ("meter", "inverter"))
    protocol = _choice(
        source, "[device] protocol", device.get("protocol", "modbus"), ("modbus", "sunspec")
    )
    defaults = {
        "function": _choice(
            source, "[device] function", device.get("function", "holding"), ("holding", "input")
        ),
        "word_order": _choice(
            source, "[device] word_order", device.get("word_order", "big"), ("big", "little")
        ),
        "byte_order": _choice(
            source, "[device] byte_order", device.get("byte_order", "big"), ("big", "little")
        ),
    }
    default_unit = _int(source, "[device] default_unit", device.get("default_unit", 1), 0, 247)

    limits_raw = _table(source, "[limits]", doc.get("limits", {}))
    _check_keys(source, "[limits]", limits_raw, _LIMIT_KEYS)
    limit_values = {
        key: _int(source, f"[limits] {key}", value, -(2**62), 2**62)
        for key, value in limits_raw.items()
    }
    limits = Limits(**limit_values)

    sunspec: SunSpecSpec | None = None
    if protocol == "sunspec":
        ss = _table(source, "[sunspec]", doc.get("sunspec", {}))
        _check_keys(source, "[sunspec]", ss, _SUNSPEC_KEYS)
        bases = ss.get("bases", [40000, 50000, 0])
        models = ss.get("models", [])
        if not isinstance(bases, list) or not bases:
            raise _fail(source, "[sunspec] bases", "must be a non-empty list of addresses")
        if not isinstance(models, list):
            raise _fail(source, "[sunspec] models", "must be a list of model ids")
        sunspec = SunSpecSpec(
            bases=tuple(_int(source, "[sunspec] bases", b, 0, 65533) for b in bases),
            models=tuple(_int(source, "[sunspec] models", m, 1, 65534) for m in models),
        )
    elif "sunspec" in doc:
        raise _fail(source, "[sunspec]", 'only allowed with [device] protocol = "sunspec"')

    points_raw = _table(source, "[points]", doc.get("points", {}))
    if not points_raw:
        raise _fail(source, "[points]", "a profile needs at least one point")
    points = tuple(
        _build_point(source, pname, _table(source, f"[points.{pname}]", praw), defaults, protocol)
        for pname, praw in points_raw.items()
    )
    _check_points(source, points, protocol)
    ordered = tuple(sorted(points, key=lambda p: (p.models, p.function, p.address)))
    return Profile(
        name=name,
        kind="meter" if kind == "meter" else "inverter",
        points=ordered,
        protocol="sunspec" if protocol == "sunspec" else "modbus",
        default_unit=default_unit,
        limits=limits,
        sunspec=sunspec,
        vendor=str(device.get("vendor", "")),
        description=str(device.get("description", "")),
        source=source,
    )


def _build_point(
    source: str,
    name: str,
    raw: Mapping[str, Any],
    defaults: Mapping[str, str],
    protocol: str,
) -> PointSpec:
    where = f"point {name!r}"
    if not _NAME.match(name):
        raise _fail(source, where, "name must start with a letter and use only A-Z a-z 0-9 _")
    _check_keys(source, where, raw, _POINT_KEYS)
    if "type" not in raw:
        raise _fail(source, where, f"missing key 'type' (one of {', '.join(TYPE_WORDS)})")
    ptype = _choice(source, f"{where} type", raw["type"], tuple(TYPE_WORDS))
    count = TYPE_WORDS[ptype]
    models: tuple[int, ...] = ()
    if protocol == "sunspec":
        if "address" in raw:
            raise _fail(source, where, "sunspec points use 'model' and 'offset', not 'address'")
        if "model" not in raw or "offset" not in raw:
            missing = "model" if "model" not in raw else "offset"
            raise _fail(source, where, f"missing key {missing!r} (sunspec points need both)")
        model_raw = raw["model"]
        model_list = model_raw if isinstance(model_raw, list) else [model_raw]
        if not model_list:
            raise _fail(source, f"{where} model", "must name at least one model id")
        models = tuple(_int(source, f"{where} model", m, 1, 65534) for m in model_list)
        address = _int(source, f"{where} offset", raw["offset"], 2, 65535 - count)
    else:
        for key in ("model", "offset"):
            if key in raw:
                raise _fail(source, where, f"{key!r} is only for sunspec profiles; use 'address'")
        if "address" not in raw:
            raise _fail(source, where, "missing key 'address'")
        address = _int(source, f"{where} address", raw["address"], 0, 65536 - count)
    measurement = raw.get("measurement", [])
    mlist = measurement if isinstance(measurement, list) else [measurement]
    for m in mlist:
        if not isinstance(m, str) or not (
            m in HEADLINE_MEASUREMENTS or _EXTRA_MEASUREMENT.match(m)
        ):
            raise _fail(
                source,
                f"{where} measurement",
                f"{m!r} is not a measurement name: use one of "
                f"{', '.join(sorted(HEADLINE_MEASUREMENTS))} or name_<unit> with unit "
                "w, dv, mhz, wh, ma, pct, va or var (e.g. power_l1_w)",
            )
    scale_factor = raw.get("scale_factor")
    if scale_factor is not None and not isinstance(scale_factor, str):
        raise _fail(source, f"{where} scale_factor", "must be the name of another point")
    sim_value = raw.get("sim_value")
    if sim_value is not None:
        sim_value = _int(source, f"{where} sim_value", sim_value, -(2**63), 2**64 - 1)
    function = _choice(
        source, f"{where} function", raw.get("function", defaults["function"]), ("holding", "input")
    )
    word_order = _choice(
        source,
        f"{where} word_order",
        raw.get("word_order", defaults["word_order"]),
        ("big", "little"),
    )
    byte_order = _choice(
        source,
        f"{where} byte_order",
        raw.get("byte_order", defaults["byte_order"]),
        ("big", "little"),
    )
    access = _choice(source, f"{where} access", raw.get("access", "r"), ("r", "rw"))
    return PointSpec(
        name=name,
        address=address,
        type=ptype,
        function="input" if function == "input" else "holding",
        word_order="little" if word_order == "little" else "big",
        byte_order="little" if byte_order == "little" else "big",
        scale=_int(source, f"{where} scale", raw.get("scale", 0), -12, 12),
        scale_factor=scale_factor,
        measurements=tuple(str(m) for m in mlist),
        unit=str(raw.get("unit", "")),
        models=models,
        access="rw" if access == "rw" else "r",
        description=str(raw.get("description", "")),
        sim_value=sim_value,
    )


def _check_points(source: str, points: tuple[PointSpec, ...], protocol: str) -> None:
    by_name = {p.name: p for p in points}
    fed: dict[str, str] = {}
    for p in points:
        for m in p.measurements:
            if m in fed:
                raise _fail(
                    source,
                    f"point {p.name!r}",
                    f"measurement {m!r} is already fed by point {fed[m]!r}",
                )
            fed[m] = p.name
        if p.scale_factor is not None:
            sf = by_name.get(p.scale_factor)
            if sf is None:
                raise _fail(
                    source,
                    f"point {p.name!r} scale_factor",
                    f"no point named {p.scale_factor!r}",
                )
            if sf.type not in ("sunssf", "s16"):
                raise _fail(
                    source,
                    f"point {p.name!r} scale_factor",
                    f"point {sf.name!r} has type {sf.type}; a scale factor must be sunssf or s16",
                )
            if protocol == "sunspec" and sf.models != p.models:
                raise _fail(
                    source,
                    f"point {p.name!r} scale_factor",
                    f"point {sf.name!r} is in model {sf.models}, not {p.models}",
                )
    ordered = sorted(points, key=lambda p: (p.models, p.function, p.address))
    for a, b in itertools.pairwise(ordered):
        if a.models == b.models and a.function == b.function and b.address < a.end:
            raise _fail(
                source,
                f"point {b.name!r}",
                f"registers {b.address}..{b.end - 1} overlap point {a.name!r} "
                f"({a.address}..{a.end - 1}, {a.function})",
            )
