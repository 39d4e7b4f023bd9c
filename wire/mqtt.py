"""The `[mqtt]` table that edge.toml and hub.toml share: where the broker is, how to log in.

Both programs read it with this one parser, so a key means the same in both files and is
checked the same way at start: `url` (`mqtt://HOST[:PORT]`, or `mqtts://` for TLS; port
1883 or 8883 by default), `username`, `password` or `password_file` (one of the two; the
file's first line, stripped, must not be empty), `ca`, `cert` and `key` (PEM files, mqtts
only; cert and key together; loaded at start so a wrong file is refused by name), and
`keepalive_s` (5 to 3600). Relative file names are relative to the config file's directory.
A program may allow more keys in its table (the gateway's publish window, for one) and
read them itself.

Errors are `MqttTableError(key, problem)`; each program words them in its own format.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = ["MQTT_KEYS", "BrokerSettings", "MqttTableError", "parse_mqtt_table"]

MQTT_KEYS = frozenset(
    {"url", "username", "password", "password_file", "ca", "cert", "key", "keepalive_s"}
)
"""The keys this module reads."""

_URL_HINT = "mqtt://HOST:PORT or mqtts://HOST:PORT"

B = TypeVar("B", bound="BrokerSettings")


class MqttTableError(ValueError):
    """A key of the `[mqtt]` table is wrong.

    Attributes:
        key: the key, without the table name (`password_file`).
        problem: what is wrong and what is expected.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where the broker is and how to log in."""

    host: str
    """Broker host name or address."""
    port: int
    """Broker port (default 1883, or 8883 for `mqtts://`)."""
    tls: bool = False
    """True for `mqtts://`."""
    username: str | None = None
    """Broker account, or None for anonymous."""
    password: str | None = None
    """Password (from `password` or `password_file`)."""
    ca: Path | None = None
    """CA bundle for TLS; None uses the system store."""
    cert: Path | None = None
    """Client certificate for mutual TLS."""
    key: Path | None = None
    """Its private key."""
    keepalive_s: int = 30
    """MQTT keepalive in seconds; the broker notices a dead client within 1.5x this."""

    @property
    def url(self) -> str:
        """`mqtt[s]://host:port`, for messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str) -> BrokerSettings:
        """Parse `mqtt://host[:port]` or `mqtts://host[:port]` (no credentials).

        Raises:
            MqttTableError: not an mqtt:// or mqtts:// URL with a host (key `url`).
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise MqttTableError("url", f"must be {_URL_HINT}; bad port in {url!r}") from exc
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise MqttTableError("url", f"must be {_URL_HINT}, got {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, port or (8883 if tls else 1883), tls)

    def tls_parameters(self) -> dict[str, Any] | None:
        """Keyword arguments for `aiomqtt.TLSParameters` (server verified), None without TLS."""
        if not self.tls:
            return None
        return {
            "ca_certs": None if self.ca is None else str(self.ca),
            "certfile": None if self.cert is None else str(self.cert),
            "keyfile": None if self.key is None else str(self.key),
            "cert_reqs": ssl.CERT_REQUIRED,
        }

    def extended(self, cls: type[B], **more: Any) -> B:
        """These settings as `cls` (a subclass with more fields), with `more` set."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(self)}, **more)


def _check_tls(ca: Path | None, cert: Path | None, key: Path | None) -> None:
    """Load the TLS files now, so a bad one is refused at start, by key."""
    context = ssl.create_default_context()
    try:
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, OSError) as exc:
        raise MqttTableError("ca", f"{ca} is not a PEM CA bundle: {exc}") from exc
    try:
        if cert is not None:
            context.load_cert_chain(str(cert), None if key is None else str(key))
    except (ssl.SSLError, OSError) as exc:
        raise MqttTableError(
            "cert", f"{cert} and {key} are not a matching PEM certificate and key: {exc}"
        ) from exc


def parse_mqtt_table(
    table: Mapping[str, Any],
    base: Path,
    *,
    more_keys: frozenset[str] = frozenset(),
    keepalive_s: int = 30,
) -> BrokerSettings:
    """Check the `[mqtt]` table and return the broker settings.

    Args:
        table: the TOML table (empty when the file has none: a local anonymous broker).
        base: the directory relative file names are relative to (the config file's).
        more_keys: keys the caller allows and reads itself.
        keepalive_s: the default keepalive.

    Raises:
        MqttTableError: the first wrong key (unknown, wrong type, file missing or unreadable,
            TLS files without mqtts, cert without key, ...).
    """
    allowed = MQTT_KEYS | more_keys
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise MqttTableError(unknown[0], f"unknown key; allowed keys: {', '.join(sorted(allowed))}")

    def text(key: str) -> str | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str) or not value:
            raise MqttTableError(key, f"must be a non-empty string, got {value!r}")
        return value

    broker = BrokerSettings.from_url(text("url") or "mqtt://127.0.0.1:1883")
    password = text("password")
    password_file = text("password_file")
    if password_file is not None:
        if password is not None:
            raise MqttTableError("password_file", "give either password or password_file, not both")
        path = base / password_file
        try:
            password = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise MqttTableError("password_file", f"cannot read {path}: {reason}") from exc
        if not password:
            raise MqttTableError("password_file", f"{path} is empty")
    files: dict[str, Path | None] = {}
    for key in ("ca", "cert", "key"):
        name = text(key)
        files[key] = None if name is None else base / name
        if name is None:
            continue
        if not broker.tls:
            raise MqttTableError(key, "TLS files need an mqtts:// url")
        if not (base / name).is_file():
            raise MqttTableError(key, f"file {str(base / name)!r} does not exist")
    if (files["cert"] is None) != (files["key"] is None):
        raise MqttTableError(
            "cert" if files["key"] is not None else "key", "cert and key go together"
        )
    if broker.tls:
        _check_tls(files["ca"], files["cert"], files["key"])
    keepalive = table.get("keepalive_s", keepalive_s)
    if isinstance(keepalive, bool) or not isinstance(keepalive, int) or not 5 <= keepalive <= 3600:
        raise MqttTableError(
            "keepalive_s", f"must be an integer from 5 to 3600 s, got {keepalive!r}"
        )
    return BrokerSettings(
        host=broker.host,
        port=broker.port,
        tls=broker.tls,
        username=text("username"),
        password=password,
        ca=files["ca"],
        cert=files["cert"],
        key=files["key"],
        keepalive_s=keepalive,
    )
