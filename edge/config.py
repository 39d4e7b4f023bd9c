"""Gateway configuration: one TOML file parsed once at start into a frozen `Settings`.

Every error names the key (with the device it belongs to) and says what is expected, e.g.

```
edge.toml: [[device]] #2 'meter2' key 'poll_ms': must be an integer from 100 to 3600000, got 'fast'
```

Only `load_settings` reads the file; everything after works on the frozen values.
"""

from __future__ import annotations

import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from edge.errors import ConfigError
from edge.transport import FORMS, Transport, parse_transport
from hw.profile import Profile, ProfileError, load_profile
from wire.envelope import CHAIN
from wire.kinds import DEVICE, SOURCES, ZONE, Source
from wire.mqtt import BrokerSettings, MqttTableError, parse_mqtt_table

KeepTx = Literal["puback", "committed"]

_GATEWAY_KEYS = frozenset({"key", "chain", "zone", "state_dir", "interval_s"})
_MQTT_MORE_KEYS = frozenset({"client_id", "window", "publish_timeout_ms"})
_OUTBOX_KEYS = frozenset({"quota_kb", "keep_tx_until", "republish_s"})
_POLLING_KEYS = frozenset(
    {
        "timeout_ms",
        "retries",
        "retry_backoff_ms",
        "degraded_after",
        "degraded_poll_ms",
        "frame_gap_ms",
    }
)
_METRICS_KEYS = frozenset({"host", "port"})
_HUB_KEYS = frozenset({"url", "ca", "poll_s", "timeout_ms"})
_DEVICE_KEYS = frozenset(
    {"name", "profile", "transport", "unit", "poll_ms", "source", "timeout_ms"}
)
_TOP_KEYS = frozenset({"gateway", "mqtt", "outbox", "polling", "metrics", "hub", "device"})


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """One `[[device]]` table."""

    name: str
    """Device name, unique on the gateway; appears in every message about it."""
    profile: str
    """Profile name or file (`hw/profiles`), as configured."""
    spec: Profile
    """That profile, loaded once when the config is read."""
    transport: Transport
    """Where the device is reached."""
    unit: int
    """Modbus unit id 1..247 (ignored for iec61850)."""
    poll_ms: int
    """Telemetry period in ms."""
    source: Source
    """Energy source carried in meter_read (solar, grid ...)."""
    timeout_ms: int
    """Per-request timeout in ms."""

    def describe(self) -> str:
        """Operator-facing identity: `meter1 (sdm630, tcp://127.0.0.1:5020 unit 1)`."""
        if self.transport.kind == "iec61850":
            return f"{self.name} ({self.profile}, {self.transport.url})"
        return f"{self.name} ({self.profile}, {self.transport.url} unit {self.unit})"


@dataclass(frozen=True, slots=True)
class MqttSettings(BrokerSettings):
    """The `[mqtt]` table: the broker (`wire.mqtt`, as in hub.toml) and the uplink's own keys."""

    client_id: str | None = None
    """MQTT client id; None derives `gtx-<first 16 hex of the key>`."""
    window: int = 100
    """QoS 1 messages in flight at once while draining."""
    publish_timeout_ms: int = 10_000
    """How long to wait for a PUBACK before reconnecting."""


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """The `[outbox]` table."""

    quota_kb: int
    """Payload bytes (KiB) above which old telemetry is thinned."""
    keep_tx_until: KeepTx
    """`puback`: tx messages leave at PUBACK; `committed`: only once the chain committed them."""
    republish_s: int
    """With `committed`: re-send tx messages not committed after this many seconds."""


@dataclass(frozen=True, slots=True)
class HubSettings:
    """The `[hub]` table: a validator's HTTP API, where the gateway learns what committed."""

    url: str
    """Base URL, `http://HOST:PORT` or `https://HOST:PORT` (no trailing slash)."""
    ca: str | None
    """CA file for an https URL; None uses the system's trust store."""
    poll_s: int
    """Seconds between two questions while tx messages wait for their commit."""
    timeout_ms: int
    """Per-request timeout in ms."""


@dataclass(frozen=True, slots=True)
class PollingSettings:
    """The `[polling]` table: defaults of every bus scheduler."""

    timeout_ms: int
    """Default per-request timeout in ms."""
    retries: int
    """Extra tries of a request that got no answer (healthy devices only)."""
    retry_backoff_ms: int
    """First retry delay after a failed poll; doubles per failure."""
    degraded_after: int
    """Consecutive failures after which a device is marked degraded."""
    degraded_poll_ms: int
    """Poll period of a degraded device."""
    frame_gap_ms: int
    """Silence after each device's poll on a serial bus."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole gateway configuration, validated."""

    source: str
    """Config file path, for messages."""
    key_path: Path
    """Gateway Ed25519 key file."""
    chain: str
    """Chain id."""
    zone: str
    """Grid zone path."""
    state_dir: Path
    """Where the outbox database and status file live."""
    interval_ms: int
    """Delivery interval in ms (a meter_read per device at every boundary)."""
    mqtt: MqttSettings
    """Uplink."""
    outbox: OutboxSettings
    """Outbox retention."""
    polling: PollingSettings
    """Scheduler defaults."""
    metrics_host: str
    """Prometheus endpoint address."""
    metrics_port: int | None
    """Prometheus endpoint port; None disables it."""
    hub: HubSettings | None
    """Where commits are learned (`[hub]`); None without that table."""
    devices: tuple[DeviceSettings, ...]
    """Devices in config order."""

    @property
    def outbox_path(self) -> Path:
        """The SQLite outbox file."""
        return self.state_dir / "outbox.sqlite"

    @property
    def status_path(self) -> Path:
        """The status snapshot the daemon writes for `gtx edge status`."""
        return self.state_dir / "status.json"


class _Reader:
    """Typed access to one TOML table, raising `ConfigError` that names the key."""

    def __init__(
        self, source: str, where: str, table: Mapping[str, Any], allowed: frozenset[str]
    ) -> None:
        self.source, self.where, self.table = source, where, table
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(unknown[0], f"unknown key; allowed keys: {', '.join(sorted(allowed))}")

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.where} key {key!r}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.table

    def text(
        self,
        key: str,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.error(key, f"missing; expected {hint or 'a string'}")
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string ({hint or 'text'}), got {value!r}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"must be {hint}, got {value!r}")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if key in self.table else None

    def integer(self, key: str, default: int | None, lo: int, hi: int, unit: str = "") -> int:
        value = self.table.get(key, default)
        if value is None:
            raise self.error(key, f"missing; expected an integer from {lo} to {hi}{unit}")
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.error(key, f"must be an integer from {lo} to {hi}{unit}, got {value!r}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.table.get(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)


def _table(source: str, doc: Mapping[str, Any], name: str, required: bool) -> Mapping[str, Any]:
    value = doc.get(name)
    if value is None:
        if required:
            raise ConfigError(f"{source}: missing table [{name}]; see docs/examples/edge.toml")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{name}] must be a table, got {type(value).__name__}")
    return value


def _device(
    source: str, index: int, raw: object, polling: PollingSettings, base: Path
) -> DeviceSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [[device]] #{index} must be a table")
    label = f"[[device]] #{index}"
    if isinstance(raw.get("name"), str):
        label += f" {raw['name']!r}"
    r = _Reader(source, label, raw, _DEVICE_KEYS)
    name = r.text("name", pattern=re.compile(DEVICE), hint="letters, digits, _ . - (at most 64)")
    profile = r.text("profile", hint="a profile name like 'sdm630' or a profile file")
    try:
        spec = load_profile(profile, base)
    except ProfileError as exc:
        raise r.error("profile", str(exc)) from exc
    try:
        transport = parse_transport(r.text("transport", hint=FORMS))
    except ConfigError as exc:
        raise r.error("transport", str(exc)) from None
    unit = r.integer("unit", 1, 1 if transport.kind != "iec61850" else 0, 247)
    poll_ms = r.integer("poll_ms", 1000, 100, 3_600_000, " ms")
    source_name = cast(Source, r.choice("source", "grid", SOURCES))
    timeout_ms = r.integer("timeout_ms", polling.timeout_ms, 10, 60_000, " ms")
    return DeviceSettings(
        name=name,
        profile=profile,
        spec=spec,
        transport=transport,
        unit=unit,
        poll_ms=poll_ms,
        source=source_name,
        timeout_ms=timeout_ms,
    )


def _mqtt(source: str, raw: Mapping[str, Any], base: Path) -> MqttSettings:
    try:
        broker = parse_mqtt_table(raw, base, more_keys=_MQTT_MORE_KEYS)
    except MqttTableError as exc:
        raise ConfigError(f"{source}: [mqtt] key {exc.key!r}: {exc.problem}") from exc
    r = _Reader(
        source, "[mqtt]", {k: v for k, v in raw.items() if k in _MQTT_MORE_KEYS}, _MQTT_MORE_KEYS
    )
    return broker.extended(
        MqttSettings,
        client_id=r.optional_text("client_id"),
        window=r.integer("window", 100, 1, 1000),
        publish_timeout_ms=r.integer("publish_timeout_ms", 10_000, 100, 600_000, " ms"),
    )


def _hub(source: str, raw: object, base: Path) -> HubSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [hub] must be a table, got {type(raw).__name__}")
    r = _Reader(source, "[hub]", raw, _HUB_KEYS)
    url_text = r.text("url", hint="http://HOST:PORT or https://HOST:PORT of a validator's API")
    try:
        url = urlsplit(url_text)
        url.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError as exc:
        raise r.error("url", f"is not a URL ({exc}); expected http://HOST:PORT") from exc
    if url.scheme not in ("http", "https") or not url.hostname or url.query:
        raise r.error("url", f"must be http://HOST:PORT or https://HOST:PORT, got {url_text!r}")
    ca = None if not r.has("ca") else base / r.text("ca")
    if ca is not None:
        if url.scheme != "https":
            raise r.error("ca", "a CA file needs an https:// url")
        if not ca.is_file():
            raise r.error("ca", f"file {str(ca)!r} does not exist")
        try:  # loaded now, so a wrong file is refused at start, by key
            ssl.create_default_context(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            raise r.error("ca", f"{ca} is not a PEM CA bundle: {exc}") from exc
    return HubSettings(
        url=url_text.rstrip("/"),
        ca=None if ca is None else str(ca),
        poll_s=r.integer("poll_s", 15, 1, 3600, " s"),
        timeout_ms=r.integer("timeout_ms", 5000, 100, 60_000, " ms"),
    )


def parse_settings(text: str, source: str = "<config>", base: Path | None = None) -> Settings:
    """Parse and validate a config document.

    Args:
        text: the TOML text.
        source: file name used in messages.
        base: the directory relative file names are relative to (the config file's);
            None: the working directory.

    Raises:
        ConfigError: the first problem found, naming the key and what is expected.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown table [{unknown[0]}]; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    root = base or Path()
    g = _Reader(source, "[gateway]", _table(source, doc, "gateway", True), _GATEWAY_KEYS)
    key_path = root / g.text("key", hint="the key file written by `gtx edge keygen`")
    chain = g.text("chain", pattern=CHAIN, hint="a chain id like 'gtx-local'")
    zone = g.text("zone", pattern=re.compile(ZONE), hint="a zone path like 'pea/ayutthaya/sub-01'")
    state_dir = root / g.text("state_dir", hint="a writable directory, e.g. /var/lib/gridtokenx")
    interval_s = g.integer("interval_s", None, 1, 86_400, " s (must match the hub)")

    hub = _hub(source, doc["hub"], root) if "hub" in doc else None
    o = _Reader(source, "[outbox]", _table(source, doc, "outbox", False), _OUTBOX_KEYS)
    keep = o.choice("keep_tx_until", "committed" if hub else "puback", ("puback", "committed"))
    if keep == "committed" and hub is None:
        raise o.error(
            "keep_tx_until",
            "'committed' needs a [hub] table with the url of a validator's API "
            '(e.g. url = "http://hub.example:8600"), where the gateway learns what committed',
        )
    outbox = OutboxSettings(
        quota_kb=o.integer("quota_kb", 262_144, 16, 2**31, " KiB"),
        keep_tx_until="committed" if keep == "committed" else "puback",
        republish_s=o.integer("republish_s", 300, 5, 86_400, " s"),
    )
    p = _Reader(source, "[polling]", _table(source, doc, "polling", False), _POLLING_KEYS)
    polling = PollingSettings(
        timeout_ms=p.integer("timeout_ms", 1000, 10, 60_000, " ms"),
        retries=p.integer("retries", 1, 0, 5),
        retry_backoff_ms=p.integer("retry_backoff_ms", 200, 0, 60_000, " ms"),
        degraded_after=p.integer("degraded_after", 3, 1, 100),
        degraded_poll_ms=p.integer("degraded_poll_ms", 30_000, 100, 3_600_000, " ms"),
        frame_gap_ms=p.integer("frame_gap_ms", 5, 0, 1000, " ms"),
    )
    m = _Reader(source, "[metrics]", _table(source, doc, "metrics", False), _METRICS_KEYS)
    metrics_host = m.text("host", "127.0.0.1", hint="an address to listen on")
    metrics_port = m.integer("port", 0, 0, 65_535) if m.has("port") else None

    raw_devices = doc.get("device", [])
    if not isinstance(raw_devices, list) or not raw_devices:
        raise ConfigError(
            f"{source}: no [[device]] tables; add at least one (name, profile, transport, unit)"
        )
    devices = tuple(
        _device(source, i, d, polling, root) for i, d in enumerate(raw_devices, start=1)
    )
    seen: dict[str, int] = {}
    units: dict[tuple[str, int], str] = {}
    for i, dev in enumerate(devices, start=1):
        if dev.name in seen:
            raise ConfigError(
                f"{source}: [[device]] #{i} key 'name': {dev.name!r} is already used by "
                f"device #{seen[dev.name]}; names must be unique"
            )
        seen[dev.name] = i
        if dev.transport.kind != "iec61850":
            where = (dev.transport.bus, dev.unit)
            if where in units:
                raise ConfigError(
                    f"{source}: [[device]] #{i} {dev.name!r} key 'unit': unit {dev.unit} on "
                    f"{dev.transport.url} is already device {units[where]!r}"
                )
            units[where] = dev.name
    _check_buses(source, devices)
    return Settings(
        source=source,
        key_path=key_path,
        chain=chain,
        zone=zone,
        state_dir=state_dir,
        interval_ms=interval_s * 1000,
        mqtt=_mqtt(source, _table(source, doc, "mqtt", False), root),
        outbox=outbox,
        polling=polling,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        hub=hub,
        devices=devices,
    )


def _check_buses(source: str, devices: tuple[DeviceSettings, ...]) -> None:
    """Devices on one serial port must agree on its speed and parity."""
    first: dict[str, DeviceSettings] = {}
    for dev in devices:
        t = dev.transport
        other = first.setdefault(t.bus, dev)
        if t.kind == "rtu" and (other.transport.baud, other.transport.parity) != (t.baud, t.parity):
            raise ConfigError(
                f"{source}: device {dev.name!r} key 'transport': {t.path} is set to "
                f"{t.baud} baud parity {t.parity} but device {other.name!r} on the same port "
                f"uses {other.transport.baud} baud parity {other.transport.parity}; one RS-485 "
                "bus has one speed"
            )


def load_settings(path: Path) -> Settings:
    """Read and validate the config file at `path`.

    Raises:
        ConfigError: unreadable file or invalid content; the message names the key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 (TOML requires it)"
        ) from exc
    return parse_settings(text, str(path), path.parent)


def buses(settings: Settings) -> dict[str, tuple[DeviceSettings, ...]]:
    """Devices grouped by physical bus, in config order."""
    out: dict[str, list[DeviceSettings]] = {}
    for dev in settings.devices:
        out.setdefault(dev.transport.bus, []).append(dev)
    return {bus: tuple(devs) for bus, devs in out.items()}
