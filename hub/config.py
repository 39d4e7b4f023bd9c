"""`hub.toml`: one validator's settings, parsed once at start into a frozen `Settings`.

```toml
[node]
key = "validator.key"        # relative paths are relative to this file's directory
genesis = "genesis.json"
data_dir = "."               # chain.db lives here
[mqtt]
url = "mqtt://127.0.0.1:1883"  # or mqtts://broker.example.net:8883 (TLS)
# username = "hub-egat"        # the broker account (ansible: gtx_broker_validators)
# password_file = "mqtt.password"   # or password = "..."; one of the two
# ca = "mqtt-ca.crt"           # mqtts only; default: the system CA store
# cert = "client.crt"          # mqtts only, with key: mutual TLS
# key = "client.key"
# keepalive_s = 10
[api]
host = "127.0.0.1"
port = 8600
[peers]
urls = ["http://127.0.0.1:8601", "http://127.0.0.1:8602"]
[mempool]
max_txs = 50000
gap_hold_s = 600    # a gateway's tx behind a missing seq waits this long for the re-send
```
Consensus timing is not here: it is a chain parameter (genesis `params`, prefix `bft_`),
identical on every validator.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hub.consensus.params import Params
from hub.errors import ConfigError
from hub.genesis import Genesis
from hub.state.params import params_from_genesis
from wire.mqtt import BrokerSettings, MqttTableError, parse_mqtt_table

__all__ = [
    "MqttSettings",
    "Settings",
    "check_genesis_params",
    "consensus_params",
    "load_settings",
]

PARAM_PREFIX = "bft_"


MqttSettings = BrokerSettings
"""hub.toml's `[mqtt]` table: `wire.mqtt`, the same keys and checks as edge.toml's."""


def _mqtt(table: dict[str, Any], base: Path) -> MqttSettings:
    """The `[mqtt]` table; relative files are relative to `base`.

    Keepalive is 10 s by default: a validator whose broker died must notice it soon.
    """
    try:
        return parse_mqtt_table(table, base, keepalive_s=10)
    except MqttTableError as exc:
        raise ConfigError(f"mqtt.{exc.key}", exc.problem) from exc


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one validator (or follower) needs to run."""

    config_path: Path
    """The hub.toml it came from."""
    key_path: Path
    """Validator key file (0600)."""
    genesis: Genesis
    """The chain's genesis."""
    data_dir: Path
    """Directory of chain.db."""
    mqtt: MqttSettings
    """Broker and how to log in."""
    api_host: str
    """HTTP API bind address."""
    api_port: int
    """HTTP API port."""
    peers: tuple[str, ...]
    """Base URLs of other validators' APIs, for block sync."""
    mempool_max_txs: int
    """Most pending transactions kept."""
    mempool_gap_hold_ms: int = 600_000
    """Longest wait of a gateway's transaction behind a missing seq (`hub.mempool`)."""

    @property
    def db_path(self) -> Path:
        """The SQLite chain store."""
        return self.data_dir / "chain.db"


def consensus_params(genesis: Genesis) -> Params:
    """Consensus timing from genesis parameters `bft_<name>` (defaults from `Params`).

    Raises:
        ConfigError: an unknown `bft_` name, or a value that is not a positive integer.
    """
    known = {f.name for f in fields(Params)}
    values: dict[str, Any] = {}
    for name, value in genesis.params.items():
        if not name.startswith(PARAM_PREFIX):
            continue
        short = name[len(PARAM_PREFIX) :]
        if short not in known:
            raise ConfigError(
                f"params.{name}",
                "unknown consensus parameter; known: "
                + ", ".join(PARAM_PREFIX + k for k in sorted(known)),
            )
        values[short] = value
    return Params(**values)


def check_genesis_params(genesis: Genesis) -> None:
    """Refuse a genesis whose parameters the node would not understand or accept.

    Every name must be consensus timing (`bft_<name>`) or a parameter of the energy state
    machine (`hub.state.params`), and every value within its range.

    Raises:
        ConfigError: naming the first offending parameter and what it may be.
    """
    consensus_params(genesis)
    params_from_genesis(genesis.params)


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(name, "must be a table")
    return value


def _get(table: dict[str, Any], section: str, key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{section}.{key}", "is required")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{section}.{key}", f"must be a {kind.__name__}, got {value!r}")
    return value


def load_settings(path: Path) -> Settings:
    """Read and check a hub.toml (and the genesis file it names).

    Raises:
        ConfigError: naming the key and what to write instead.
    """
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("", f"{path} does not exist; create it with `gtx hub init`") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from exc
    base = path.parent
    node, mqtt, api = _table(doc, "node"), _table(doc, "mqtt"), _table(doc, "api")
    peers, mempool = _table(doc, "peers"), _table(doc, "mempool")
    genesis_path = base / _get(node, "node", "genesis", str, "genesis.json")
    try:
        genesis = Genesis.from_bytes(genesis_path.read_bytes())
    except OSError as exc:
        raise ConfigError("node.genesis", f"cannot read {genesis_path}: {exc.strerror}") from exc
    port = _get(api, "api", "port", int, 8600)
    if not 0 <= port <= 65535:
        raise ConfigError("api.port", f"must be 0..65535, got {port}")
    urls = _get(peers, "peers", "urls", list, [])
    for url in urls:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError("peers.urls", f"each must be an http(s) URL, got {url!r}")
    max_txs = _get(mempool, "mempool", "max_txs", int, 50_000)
    if max_txs < 1:
        raise ConfigError("mempool.max_txs", "must be at least 1")
    gap_hold_s = _get(mempool, "mempool", "gap_hold_s", int, 600)
    if not 0 <= gap_hold_s <= 86_400:
        raise ConfigError("mempool.gap_hold_s", f"must be 0..86400 seconds, got {gap_hold_s}")
    check_genesis_params(genesis)  # fail at start, naming the parameter, not at first use
    return Settings(
        config_path=path,
        key_path=base / _get(node, "node", "key", str, "validator.key"),
        genesis=genesis,
        data_dir=base / _get(node, "node", "data_dir", str, "."),
        mqtt=_mqtt(mqtt, base),
        api_host=_get(api, "api", "host", str, "127.0.0.1"),
        api_port=port,
        peers=tuple(u.rstrip("/") for u in urls),
        mempool_max_txs=max_txs,
        mempool_gap_hold_ms=gap_hold_s * 1000,
    )
