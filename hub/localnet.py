"""`init_network`: create a local network of N validators in one directory (`gtx hub init`).

```
DIR/genesis.json
DIR/v0/validator.key  DIR/v0/hub.toml  DIR/v0/genesis.json
...
DIR/v{N-1}/...
```
Each validator gets its own key (mode 0600, the `gtx edge keygen` format), an API port
(`api_port_base + K`), the other validators as sync peers, and a copy of the shared genesis,
so every `vK` directory can be copied to its own machine as is. The validators of a local
network also hold the installer and authority roles (genesis `authorities`).

For an authenticated broker (ansible role `broker`: no anonymous clients, one account per
validator), `--mqtt-ca FILE` copies the broker's CA to each `vK/mqtt-ca.crt`, and
`--mqtt-user NAME` (once per validator, in order) with `--mqtt-password-dir DIR` copies
`DIR/NAME` (the layout of `ansible/credentials/mqtt/validators/`) to `vK/mqtt.password`
(0600); `hub.toml` then names them (`username`, `password_file`, `ca`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.config import check_genesis_params
from hub.errors import ConfigError
from hub.genesis import Genesis
from wire.keys import generate_key, public_hex, save_key
from wire.mqtt import BrokerSettings, MqttTableError

__all__ = ["LocalNetwork", "init_network", "write_config"]


@dataclass(frozen=True, slots=True)
class LocalNetwork:
    """What `init_network` created."""

    directory: Path
    """The network directory."""
    genesis: Genesis
    """The shared genesis."""
    keys: tuple[str, ...]
    """Public key of each validator, by index (vK holds keys[K])."""
    configs: tuple[Path, ...]
    """hub.toml of each validator, by index."""
    api_urls: tuple[str, ...]
    """API base URL of each validator, by index."""

    def to_json(self) -> dict[str, object]:
        """Summary for `gtx hub init` output."""
        return {
            "chain": self.genesis.chain,
            "directory": str(self.directory),
            "genesis_hash": self.genesis.hash(),
            "validators": [
                {"index": i, "key": key, "config": str(cfg), "api": url}
                for i, (key, cfg, url) in enumerate(
                    zip(self.keys, self.configs, self.api_urls, strict=True)
                )
            ],
        }


def write_config(
    path: Path,
    *,
    mqtt_url: str,
    api_port: int,
    peers: list[str],
    key: str = "validator.key",
    genesis: str = "genesis.json",
    data_dir: str = ".",
    api_host: str = "127.0.0.1",
    mqtt: Mapping[str, str] | None = None,
) -> None:
    """Write one hub.toml; `mqtt` adds keys to its [mqtt] table (username, ca...)."""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (mqtt or {}).items())
    path.write_text(
        "# GridTokenX hub node; see docs/consensus.md\n"
        "[node]\n"
        f"key = {json.dumps(key)}\n"
        f"genesis = {json.dumps(genesis)}\n"
        f"data_dir = {json.dumps(data_dir)}\n\n"
        "[mqtt]\n"
        f"url = {json.dumps(mqtt_url)}\n{extra}\n"
        "[api]\n"
        f"host = {json.dumps(api_host)}\n"
        f"port = {api_port}\n\n"
        "[peers]\n"
        f"urls = {json.dumps(peers)}\n\n"
        "[mempool]\n"
        "max_txs = 50000\n"
        "gap_hold_s = 600  # a gateway's tx behind a missing seq waits for the re-send\n",
        encoding="utf-8",
    )


def init_network(
    directory: Path,
    *,
    validators: int,
    chain: str,
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    api_port_base: int = 8600,
    fund: Mapping[str, int] | None = None,
    interval_s: int = 900,
    gate_closure_s: int | None = None,
    grace_s: int | None = None,
    params: Mapping[str, int] | None = None,
    time_ms: int = 0,
    mqtt_ca: Path | None = None,
    mqtt_users: Sequence[str] = (),
    mqtt_password_dir: Path | None = None,
) -> LocalNetwork:
    """Create keys, configs and the genesis of a local network.

    Args:
        directory: where to create it (must not hold a network already).
        validators: how many validators (4 tolerates 1 fault, 7 tolerates 2).
        chain: chain id.
        mqtt_url: broker every node connects to.
        api_port_base: validator K serves its API on this port + K.
        fund: initial balances in satang by account key.
        interval_s: market delivery interval in seconds (chain parameter `interval_s`).
        gate_closure_s: orders for an interval close this long before it starts (chain
            parameter `gate_closure_s`); None: one interval, as suits a local network.
        grace_s: wait after an interval ends before settling it (chain parameter
            `grace_s`); None: the state machine's default.
        params: further chain parameters by name: consensus timing (`bft_heartbeat_ms`)
            or state machine parameters (`price_floor`, `feeder_capacity_wh:<zone>`...).
            A name given here wins over the arguments above.
        time_ms: genesis time, unix ms.
        mqtt_ca: the broker's CA certificate, copied to every `vK/mqtt-ca.crt` (mqtts only).
        mqtt_users: the validators' broker accounts, one per validator (vK gets the K-th).
        mqtt_password_dir: where the password of account NAME is, as file NAME.

    Raises:
        ConfigError: bad arguments, an unknown or out-of-range parameter (checked before
            anything is written), or the directory already holds a network.
    """
    if not 1 <= validators <= 100:
        raise ConfigError("--validators", f"must be 1..100, got {validators}")
    if not 1 <= api_port_base <= 65535 - validators:
        raise ConfigError("--api-port-base", f"must leave room for {validators} ports")
    if interval_s < 1:
        raise ConfigError("--interval-s", "must be at least 1 second")
    chain_params = {
        "interval_s": interval_s,
        "gate_closure_s": interval_s if gate_closure_s is None else gate_closure_s,
    }
    if grace_s is not None:
        chain_params["grace_s"] = grace_s
    chain_params.update(params or {})
    try:
        check_genesis_params(
            Genesis(chain=chain, time_ms=time_ms, validators=("0" * 64,), params=chain_params)
        )
    except ConfigError as exc:
        if exc.key == "chain":  # checked with the parameters; blame the option that carries it
            raise ConfigError("--chain", exc.problem) from exc
        raise ConfigError("--param", str(exc)) from exc
    try:
        BrokerSettings.from_url(mqtt_url)
    except MqttTableError as exc:  # refused here, not only later by `gtx hub run`
        raise ConfigError("--mqtt", exc.problem) from exc
    mqtt = _mqtt_files(mqtt_url, validators, mqtt_ca, mqtt_users, mqtt_password_dir)
    if (directory / "genesis.json").exists():
        raise ConfigError("--dir", f"{directory} already holds a network; choose another --dir")
    directory.mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(validators):
        vdir = directory / f"v{i}"
        vdir.mkdir(exist_ok=True)
        key = generate_key()
        save_key(key, vdir / "validator.key")
        keys.append(public_hex(key))
    genesis = Genesis(
        chain=chain,
        time_ms=time_ms,
        validators=tuple(sorted(keys)),
        authorities=tuple(sorted(keys)),
        balances=dict(fund or {}),
        params=chain_params,
    )
    data = genesis.to_bytes()
    (directory / "genesis.json").write_bytes(data)
    urls = [f"http://127.0.0.1:{api_port_base + i}" for i in range(validators)]
    configs = []
    for i in range(validators):
        vdir = directory / f"v{i}"
        (vdir / "genesis.json").write_bytes(data)
        cfg = vdir / "hub.toml"
        extra: dict[str, str] = {}
        if mqtt_users:
            extra["username"] = mqtt_users[i]
            _write_private(vdir / "mqtt.password", mqtt[mqtt_users[i]])
            extra["password_file"] = "mqtt.password"  # noqa: S105 - a file name
        if mqtt_ca is not None:
            (vdir / "mqtt-ca.crt").write_bytes(mqtt[""])
            extra["ca"] = "mqtt-ca.crt"
        write_config(
            cfg,
            mqtt_url=mqtt_url,
            mqtt=extra,
            api_port=api_port_base + i,
            peers=[u for j, u in enumerate(urls) if j != i],
        )
        configs.append(cfg)
    return LocalNetwork(directory, genesis, tuple(keys), tuple(configs), tuple(urls))


def _mqtt_files(
    url: str, validators: int, ca: Path | None, users: Sequence[str], password_dir: Path | None
) -> dict[str, bytes]:
    """Read the CA (key "") and each user's password (key NAME) before writing anything.

    Raises:
        ConfigError: naming the option that is inconsistent or the file that is unreadable.
    """
    out: dict[str, bytes] = {}
    if ca is not None:
        if not url.startswith("mqtts://"):
            raise ConfigError("--mqtt-ca", f"needs an mqtts:// --mqtt URL, got {url!r}")
        try:
            out[""] = ca.read_bytes()
        except OSError as exc:
            raise ConfigError("--mqtt-ca", f"cannot read {ca}: {exc.strerror}") from exc
    if bool(users) != (password_dir is not None):
        raise ConfigError("--mqtt-user", "give --mqtt-user and --mqtt-password-dir together")
    if users and len(users) != validators:
        raise ConfigError(
            "--mqtt-user", f"give one per validator ({validators}), in order; got {len(users)}"
        )
    if len(set(users)) != len(users):
        raise ConfigError("--mqtt-user", "each validator needs its own account")
    for name in users:
        path = (password_dir or Path()) / name
        try:
            out[name] = path.read_bytes().strip() + b"\n"
        except OSError as exc:
            raise ConfigError(
                "--mqtt-password-dir", f"cannot read {path} (password of {name}): {exc.strerror}"
            ) from exc
    return out


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only (0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
