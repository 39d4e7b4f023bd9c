"""Typed, immutable JSON objects with validation: the machinery behind every message body.

A body is a `@dataclass(frozen=True, slots=True)` subclass of `Struct`. Its annotations say
the JSON type (`int`, `str`, `bool`, `Literal[...]`, `tuple[T, ...]`, a nested `Struct`), and
its `field(metadata=...)` the range: `integer(lo, hi)`, `text(pattern)`, `items(lo, hi)`.
The same checks run when a body is built in Python and when it is decoded from JSON, so an
invalid body can neither be received nor sent.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, ClassVar, Literal, Self

from wire.canonical import INT_MAX, INT_MIN, JSON
from wire.errors import InvalidField

_HINTS: dict[type, dict[str, Any]] = {}


def required() -> Any:
    """A required field whose annotation alone says what it takes (`bool`, `Literal`)."""
    return dataclasses.field()


def integer(lo: int = 0, hi: int = INT_MAX) -> Any:
    """A required integer field within [lo, hi]."""
    return dataclasses.field(metadata={"lo": lo, "hi": hi})


def text(pattern: str, hint: str) -> Any:
    """A required string field that must fully match `pattern`; `hint` says what is expected."""
    return dataclasses.field(metadata={"re": re.compile(pattern), "hint": hint})


def items(lo: int = 0, hi: int = 64, *, unique: bool = True, **inner: Any) -> Any:
    """A required list field with `lo`..`hi` items; `inner` constrains each item like above."""
    meta: dict[str, Any] = {"min_items": lo, "max_items": hi, "unique": unique}
    if "pattern" in inner:
        meta["re"] = re.compile(inner["pattern"])
        meta["hint"] = inner.get("hint", inner["pattern"])
    return dataclasses.field(metadata=meta)


def type_hints(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints(cls)`, resolved once per class (it is slow)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    if isinstance(tp, type) and issubclass(tp, Struct):
        return "an object"
    return {int: "an integer", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, meta: typing.Mapping[str, Any], path: str) -> Any:
    """Check `value` against type `tp` and constraints `meta`; return it as the Python type."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp) or isinstance(value, bool):
            raise InvalidField(path, f"must be {_type_name(tp)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InvalidField(path, f"must be a list, got {type(value).__name__}")
        lo, hi = meta.get("min_items", 0), meta.get("max_items", 64)
        if not lo <= len(value) <= hi:
            raise InvalidField(path, f"must have {lo} to {hi} items, got {len(value)}")
        (item_tp, _) = typing.get_args(tp)
        out = tuple(_coerce(v, item_tp, meta, f"{path}[{i}]") for i, v in enumerate(value))
        if meta.get("unique", True):
            keys = [v.key() if isinstance(v, Struct) else v for v in out]
            if len(set(keys)) != len(keys):
                raise InvalidField(path, "items must be unique")
        return out
    if isinstance(tp, type) and issubclass(tp, Struct):
        if isinstance(value, tp):
            return value
        return tp.from_json(value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise InvalidField(path, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidField(path, f"must be an integer, got {value!r}")
        lo, hi = meta.get("lo", INT_MIN), meta.get("hi", INT_MAX)
        if not lo <= value <= hi:
            raise InvalidField(path, f"must be in {lo}..{hi}, got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise InvalidField(path, f"must be a string, got {type(value).__name__}")
        pattern = meta.get("re")
        if pattern is not None and not pattern.fullmatch(value):
            raise InvalidField(path, f"must be {meta['hint']}, got {value[:80]!r}")
        return value
    raise TypeError(f"unsupported field type {tp!r} at {path}")  # a bug in a body definition


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Turn JSON shapes into those a body is built from: lists to tuples, objects to structs.

    Nothing else is checked here: `__post_init__` checks types and ranges.
    """
    if typing.get_origin(tp) is tuple and isinstance(value, list):
        (item_tp, _) = typing.get_args(tp)
        return tuple(_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, Struct) and not isinstance(value, tp):
        return tp.from_json(value, path)
    return value


def _to_json(value: Any) -> JSON:
    if isinstance(value, Struct):
        return value.to_json()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    result: JSON = value
    return result


class Struct:
    """Base of typed message bodies; subclasses are frozen, slotted dataclasses."""

    __slots__ = ()

    def __post_init__(self) -> None:
        hints = type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _coerce(getattr(self, f.name), hints[f.name], f.metadata, f.name)
        self.check()

    def check(self) -> None:
        """Cross-field rules; override and raise `InvalidField`."""

    def key(self) -> Any:
        """What makes two items of a list of these the same (for uniqueness checks)."""
        return self

    @classmethod
    def from_json(cls, data: Any, path: str = "body") -> Self:
        """Build from a decoded JSON object, naming the offending field on any error.

        Raises:
            InvalidField: a field is missing, unknown, of the wrong type or out of range.
        """
        if not isinstance(data, dict):
            raise InvalidField(path, f"must be an object, got {type(data).__name__}")
        hints = type_hints(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        names = {f.name for f in fields}
        for key in data:
            if key not in names:
                raise InvalidField(f"{path}.{key}", "unknown field")
        kwargs: dict[str, Any] = {}
        for f in fields:
            if f.name not in data:
                raise InvalidField(f"{path}.{f.name}", "missing")
            kwargs[f.name] = _convert(data[f.name], hints[f.name], f"{path}.{f.name}")
        # Types and ranges are checked once, by __post_init__; its errors name the field
        # relative to this object, so they get this object's path in front.
        try:
            return cls(**kwargs)
        except InvalidField as exc:
            raise InvalidField(f"{path}.{exc.field}", exc.problem) from None

    def to_json(self) -> dict[str, JSON]:
        """The body as a JSON object (dict with tuples turned into lists)."""
        return {
            f.name: _to_json(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }


class Body(Struct):
    """A message body: a `Struct` with a kind and the stream its seq counts on."""

    __slots__ = ()
    KIND: ClassVar[str]
    STREAM: ClassVar[str]


KINDS: dict[str, type[Body]] = {}
STREAMS = ("telemetry", "tx", "command", "consensus", "grid")


def message_kind(kind: str, stream: str) -> typing.Callable[[type[Body]], type[Body]]:
    """Class decorator registering a body type under `kind` on `stream`."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")

    def register(cls: type[Body]) -> type[Body]:
        if kind in KINDS:
            raise ValueError(f"kind {kind!r} registered twice")
        cls.KIND = kind
        cls.STREAM = stream
        KINDS[kind] = cls
        return cls

    return register


__all__ = ["KINDS", "Body", "Struct", "integer", "items", "message_kind", "required", "text"]
