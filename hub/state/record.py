"""State records: frozen dataclasses that round-trip through JSON and hash canonically.

Every value the state machine keeps is a `Record` (or a plain int): a frozen, slotted
dataclass whose fields are `int`, `str`, `bool`, `tuple[...]` of those or of records, or a
nested record. `to_json` turns one into plain JSON (tuples become lists), `from_json` builds
it back from its type hints, and `entry_digest` hashes one table entry for the state hash.
Records are trusted internal data, so decoding checks shapes, not business rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Any, TypeVar

from hub.errors import HubError
from wire.struct import type_hints

__all__ = ["Record", "entry_digest", "from_json", "to_json"]

_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
_FIELDS: dict[type, tuple[str, ...]] = {}

R = TypeVar("R", bound="Record")


class Record:
    """Base of state records; subclasses are `@dataclass(frozen=True, slots=True)`."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object."""
        return {name: to_json(getattr(self, name)) for name in _field_names(type(self))}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _FIELDS[cls] = names
    return names


def to_json(value: Any) -> Any:
    """Plain JSON for an int, str, bool, tuple or record (recursively)."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


def from_json(tp: Any, data: Any) -> Any:
    """Decode `data` as type `tp` (a record class, int, str, bool or tuple of those).

    Raises:
        HubError: the data does not fit the type.
    """
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(data, list):
            raise HubError(f"expected a list for {tp}, got {type(data).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], v) for v in data)
        if len(args) != len(data):
            raise HubError(f"expected {len(args)} items for {tp}, got {len(data)}")
        return tuple(from_json(a, v) for a, v in zip(args, data, strict=True))
    if origin is typing.Literal:
        if data not in typing.get_args(tp):
            raise HubError(f"{data!r} is not one of {typing.get_args(tp)}")
        return data
    if isinstance(tp, type) and issubclass(tp, Record):
        if not isinstance(data, dict):
            raise HubError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
        hints = type_hints(tp)
        names = _field_names(tp)
        if set(data) != set(names):
            raise HubError(f"{tp.__name__} fields {sorted(data)} != {sorted(names)}")
        return tp(**{name: from_json(hints[name], data[name]) for name in names})
    if tp is bool:
        if not isinstance(data, bool):
            raise HubError(f"expected true/false, got {data!r}")
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise HubError(f"expected an integer, got {data!r}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise HubError(f"expected a string, got {data!r}")
        return data
    raise HubError(f"unsupported record field type {tp!r}")  # a bug in a record definition


def encode(value: Any) -> bytes:
    """Canonical JSON bytes of an int/str/bool/tuple/record value."""
    return _ENCODER.encode(to_json(value)).encode("utf-8")


def entry_digest(table: str, key: str, value: Any) -> int:
    """SHA-256 of one table entry, as an integer (summed into the table's accumulator)."""
    h = hashlib.sha256(table.encode("utf-8") + b"\x00" + key.encode("utf-8") + b"\x00")
    h.update(encode(value))
    return int.from_bytes(h.digest(), "big")
