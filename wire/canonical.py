"""Canonical JSON: the one encoding of every signed message.

Rules (docs/protocol.md, "Canonical JSON"): UTF-8, object keys ASCII and sorted, separators
`,` and `:`, no whitespace, no floats, no NaN/Infinity, integers within signed 64 bits, no
duplicate keys. `encode` refuses values that break them; `decode` refuses bytes that do.
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

from wire.errors import NotCanonical

JSON: TypeAlias = bool | int | str | list["JSON"] | dict[str, "JSON"] | None

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
MAX_DEPTH = 32
_INT_DIGITS = len(str(INT_MAX))

_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise NotCanonical(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise NotCanonical(f"{path}: integer {value} outside signed 64-bit range")
        return
    if isinstance(value, float):
        raise NotCanonical(f"{path}: floats are not allowed ({value!r}); use integer units")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotCanonical(f"{path}: string is not valid Unicode ({exc.reason})") from exc
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{path}: object key {key!r} is not a string")
            if not key.isascii():
                raise NotCanonical(f"{path}: object key {key!r} is not ASCII")
            _check(item, f"{path}.{key}", depth + 1)
        return
    raise NotCanonical(f"{path}: {type(value).__name__} cannot be encoded as JSON")


def encode(value: Any) -> bytes:
    """Encode a JSON value canonically.

    Args:
        value: None, bool, int, str, list/tuple or dict with str keys, nested.

    Returns:
        The canonical UTF-8 bytes.

    Raises:
        NotCanonical: a float, NaN, non-string key, out-of-range integer or other type.
    """
    _check(value, "$", 0)
    return _ENCODER.encode(value).encode("utf-8")


def _refuse_float(text: str) -> Any:
    raise NotCanonical(f"floats are not allowed ({text}); use integer units")


def _parse_int(text: str) -> int:
    # Checked on the literal, before conversion: a 5,000-digit number would otherwise meet
    # Python's int-conversion limit and its advice about sys.set_int_max_str_digits.
    digits = len(text) - text.startswith("-")
    if digits > _INT_DIGITS:
        raise NotCanonical(f"an integer of {digits} digits is outside signed 64 bits")
    return int(text)


def _refuse_constant(text: str) -> Any:
    raise NotCanonical(f"{text} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise NotCanonical(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def decode(data: bytes) -> JSON:
    """Decode untrusted bytes, refusing anything canonical JSON cannot carry.

    Raises:
        NotCanonical: invalid UTF-8, invalid JSON, floats, NaN, duplicate keys, deep
            nesting or integers outside signed 64 bits. Nothing else escapes.
    """
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise NotCanonical(f"not UTF-8 at byte {exc.start}") from exc
    try:
        value = json.loads(
            text,
            parse_float=_refuse_float,
            parse_int=_parse_int,
            parse_constant=_refuse_constant,
            object_pairs_hook=_no_duplicates,
        )
    except NotCanonical:
        raise
    except RecursionError as exc:
        raise NotCanonical("nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and int digit limits
        raise NotCanonical(f"bad JSON: {exc}") from exc
    _check(value, "$", 0)
    result: JSON = value
    return result
