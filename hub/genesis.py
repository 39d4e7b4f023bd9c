"""The genesis document: chain id, start time, validators, authorities, balances, parameters.

Stored as canonical JSON (`genesis.json`, identical on every node); its SHA-256 is the
`prev` hash of block 1, so nodes with different genesis files never agree on a block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.consensus.block import sha256_hex
from hub.errors import ConfigError
from wire import canonical
from wire.envelope import CHAIN
from wire.errors import NotCanonical
from wire.keys import HEX64

__all__ = ["Genesis"]

MAX_SUPPLY = 2**62


@dataclass(frozen=True, slots=True)
class Genesis:
    """The shared start of a chain."""

    chain: str
    """Chain id, e.g. `gtx-local`."""
    time_ms: int
    """Genesis time, unix ms; block 1 must be later."""
    validators: tuple[str, ...]
    """Sorted validator public keys."""
    authorities: tuple[str, ...] = ()
    """Accounts holding the installer and authority roles (sorted)."""
    balances: Mapping[str, int] = field(default_factory=dict)
    """Initial balances in satang by account key."""
    params: Mapping[str, int] = field(default_factory=dict)
    """Chain parameters (integers; consensus timing and market parameters)."""

    def __post_init__(self) -> None:
        if not CHAIN.fullmatch(self.chain):
            raise ConfigError("chain", f"must be a chain id like 'gtx-local', got {self.chain!r}")
        if not self.validators:
            raise ConfigError("validators", "at least one validator is needed")
        for key in (*self.validators, *self.authorities, *self.balances):
            if not HEX64.fullmatch(key):
                raise ConfigError("validators", f"{key!r} is not a 64-hex public key")
        if list(self.validators) != sorted(set(self.validators)):
            raise ConfigError("validators", "must be sorted and unique")
        total = 0
        for key, amount in self.balances.items():
            if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
                raise ConfigError(f"balances.{key[:12]}", "must be a non-negative integer")
            total += amount
        if total > MAX_SUPPLY:
            raise ConfigError("balances", f"total {total} exceeds {MAX_SUPPLY} satang")
        for name, value in self.params.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"params.{name}", f"must be an integer, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        """The genesis document as a JSON object."""
        return {
            "chain": self.chain,
            "time_ms": self.time_ms,
            "validators": list(self.validators),
            "authorities": list(self.authorities),
            "balances": dict(sorted(self.balances.items())),
            "params": dict(sorted(self.params.items())),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON of the genesis document."""
        return canonical.encode(self.to_json())

    def hash(self) -> str:
        """Genesis hash: the `prev` of block 1."""
        return sha256_hex(self.to_bytes())

    @classmethod
    def from_json(cls, obj: Any) -> Genesis:
        """Build from a decoded JSON object.

        Raises:
            ConfigError: a key is missing or has the wrong type.
        """
        if not isinstance(obj, dict):
            raise ConfigError("", "genesis must be a JSON object")
        try:
            return cls(
                chain=str(obj["chain"]),
                time_ms=int(obj["time_ms"]),
                validators=tuple(obj["validators"]),
                authorities=tuple(obj.get("authorities", ())),
                balances=dict(obj.get("balances", {})),
                params=dict(obj.get("params", {})),
            )
        except KeyError as exc:
            raise ConfigError(str(exc.args[0]), "missing from genesis") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError("", f"genesis is malformed: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> Genesis:
        """Parse a genesis file's bytes.

        Raises:
            ConfigError: not canonical JSON or not a valid genesis.
        """
        try:
            obj = canonical.decode(data)
        except NotCanonical as exc:
            raise ConfigError("", f"genesis is not valid JSON: {exc}") from exc
        return cls.from_json(obj)
