"""Canonical JSON: round trip, key order, float refusal, strict decoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire import canonical
from wire.errors import NotCanonical

ints = st.integers(min_value=canonical.INT_MIN, max_value=canonical.INT_MAX)
keys = st.text(alphabet=st.characters(max_codepoint=127), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_round_trip(value: object) -> None:
    data = canonical.encode(value)
    assert canonical.decode(data) == value
    assert canonical.encode(canonical.decode(data)) == data


@given(st.dictionaries(keys, ints, max_size=8))
def test_keys_sorted_and_no_whitespace(obj: dict[str, int]) -> None:
    data = canonical.encode(obj)
    assert (
        data == json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    # The same object built in any insertion order encodes identically.
    assert canonical.encode(dict(reversed(list(obj.items())))) == data


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_float_refused_on_encode(x: float) -> None:
    with pytest.raises(NotCanonical):
        canonical.encode({"power_w": x})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1.0}',
        b'{"a":1e3}',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b"[0.5]",
        b'{"a":1,"a":2}',
        b"\xff\xfe",
        b'{"a":"\xed\xa0\x80"}',
        b"{",
        b"",
        b'{"a":99999999999999999999}',
        b"[" * 100 + b"]" * 100,
    ],
)
def test_decode_refuses(raw: bytes) -> None:
    with pytest.raises(NotCanonical):
        canonical.decode(raw)


def test_decode_error_names_the_float() -> None:
    with pytest.raises(NotCanonical, match=r"floats are not allowed \(2\.5\)"):
        canonical.decode(b'{"x":2.5}')


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {"é": 1}, {"a": 2**63}, {"a": object()}, {"a": "\ud800"}, b"bytes"],
)
def test_encode_refuses(value: object) -> None:
    with pytest.raises(NotCanonical):
        canonical.encode(value)


def test_utf8_not_escaped() -> None:
    assert canonical.encode({"n": "ไฟฟ้า"}) == '{"n":"ไฟฟ้า"}'.encode()


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_fail_cleanly(raw: bytes) -> None:
    try:
        canonical.decode(raw)
    except NotCanonical:
        pass
