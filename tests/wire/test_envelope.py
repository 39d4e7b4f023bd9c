"""Signed envelopes: every kind round-trips, tampering fails, errors name what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from tests.wire.strategies import bodies
from wire import envelope, kinds
from wire.errors import (
    BadSignature,
    InvalidField,
    InvalidMessage,
    NotCanonical,
    Replayed,
    UnknownKind,
    WrongChain,
)
from wire.replay import SeqGuard
from wire.struct import Body

KEY = SigningKey(bytes(range(32)))
CHAIN = "gtx-test"


def signed(body: Body, seq: int = 1, ts: int = 1_700_000_000_000) -> envelope.Envelope:
    return envelope.sign(KEY, CHAIN, body, seq, ts)


TELEMETRY = kinds.Telemetry(
    device="meter1",
    power_w=-1234,
    voltage_dv=2301,
    frequency_mhz=50_012,
    import_wh=1_000_000,
    export_wh=250_000,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(bodies, st.integers(0, 2**53), st.integers(0, 2**53))
def test_every_kind_round_trips(body: Body, seq: int, ts: int) -> None:
    env = signed(body, seq, ts)
    data = env.to_bytes()
    back = envelope.parse(data, CHAIN)
    assert back == env
    assert back.to_bytes() == data
    assert back.message_id() == env.message_id()
    assert type(back.body).from_json(json.loads(json.dumps(body.to_json()))) == body


@settings(max_examples=300)
@given(st.data())
def test_tampering_any_byte_fails(data: st.DataObject) -> None:
    raw = bytearray(signed(TELEMETRY).to_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
    raw[pos] = new
    with pytest.raises(InvalidMessage):
        envelope.parse(bytes(raw), CHAIN)


def test_signature_from_other_key_fails() -> None:
    other = envelope.sign(SigningKey(bytes(32)), CHAIN, TELEMETRY, 1, 1)
    obj = signed(TELEMETRY, 1, 1).to_obj()
    obj["sig"] = other.sig
    with pytest.raises(BadSignature):
        envelope.from_obj(obj, CHAIN)


def test_signature_is_bound_to_kind() -> None:
    # Same field values under another kind must not verify: the kind is signed.
    vote = signed(kinds.Vote(proposal="ab" * 32, yes=True)).to_obj()
    vote["kind"] = "cancel"
    vote["body"] = {"order": "ab" * 32}
    with pytest.raises(BadSignature):
        envelope.from_obj(vote, CHAIN)


def test_signed_bytes_carry_domain_tag() -> None:
    env = signed(TELEMETRY)
    msg = envelope.signing_bytes(env.unsigned_obj())
    assert msg.startswith(b"gridtokenx/v1\n")
    KEY.verify_key.verify(msg, bytes.fromhex(env.sig))


def mutate(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = obj
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value", "error", "text"),
    [
        ("chain", "gtx-other", WrongChain, "for chain 'gtx-other'"),
        ("kind", "mint_money", UnknownKind, "unknown kind 'mint_money'"),
        ("v", 2, InvalidField, "unsupported version"),
        ("seq", -1, InvalidField, "field seq"),
        ("seq", True, InvalidField, "field seq"),
        ("ts", "now", InvalidField, "field ts"),
        ("from", "ABC", InvalidField, "field from"),
        ("sig", "00", InvalidField, "field sig"),
        ("body.voltage_dv", 20_000, InvalidField, "body.voltage_dv: must be in 0..10000"),
        ("body.power_w", "12", InvalidField, "body.power_w: must be an integer"),
        ("body.import_wh", KeyError, InvalidField, "body.import_wh: missing"),
        ("body.extra", 1, InvalidField, "body.extra: unknown field"),
        ("body.device", "", InvalidField, "body.device: must be a device name"),
        ("extra", 1, InvalidField, "field extra: unknown field"),
        ("body", [], InvalidField, "body: must be an object"),
    ],
)
def test_errors_name_the_problem(path: str, value: Any, error: type[Exception], text: str) -> None:
    obj = mutate(signed(TELEMETRY).to_obj(), path, value)
    with pytest.raises(error, match=text.replace(".", r"\.").replace("(", r"\(")):
        envelope.from_obj(obj, CHAIN)


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b"[]", b'"x"', b"{}", b'{"v":1.0}', b"\x00" * 10, b"x" * 70_000],
)
def test_garbage_raises_invalid_message_only(raw: bytes) -> None:
    with pytest.raises(InvalidMessage):
        envelope.parse(raw, CHAIN)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def _mutated(obj: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """`obj` with one field dropped, or set to any JSON value (a wrong type, a list ...)."""
    key = data.draw(st.sampled_from(sorted(obj)))
    if data.draw(st.booleans()):
        del obj[key]
    else:
        obj[key] = data.draw(JSON_VALUES)
    return obj


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_invalid_message(raw: bytes) -> None:
    try:
        envelope.parse(raw, CHAIN)
    except InvalidMessage:
        pass


@given(bodies, st.data())
def test_a_valid_message_with_one_field_changed_parses_or_invalid_message(
    body: Body, data: st.DataObject
) -> None:
    """Random bytes are almost never a JSON object; these are, one field from valid."""
    obj = json.loads(signed(body).to_bytes())
    _mutated(obj["body"] if data.draw(st.booleans()) else obj, data)
    raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    try:
        envelope.parse(raw, CHAIN)
    except InvalidMessage:
        pass


@given(bodies, st.data())
def test_a_body_with_one_field_changed_validates_or_invalid_field(
    body: Body, data: st.DataObject
) -> None:
    changed = _mutated(dict(body.to_json()), data)
    try:
        envelope.KINDS[body.KIND].from_json(changed)
    except InvalidField:
        pass


@given(st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=5), max_size=6))
def test_any_body_object_validates_or_invalid_field(body: dict[str, Any]) -> None:
    for kind in ("telemetry", "bid", "register", "command", "proposal"):
        try:
            envelope.KINDS[kind].from_json(body)
        except InvalidField:
            pass


def test_float_in_message_refused() -> None:
    raw = signed(TELEMETRY).to_bytes().replace(b'"power_w":-1234', b'"power_w":-1234.0')
    with pytest.raises(NotCanonical, match="floats are not allowed"):
        envelope.parse(raw, CHAIN)


@pytest.mark.parametrize(
    ("build", "text"),
    [
        (
            lambda: kinds.Command(
                scope="zone", target="pea/x", action="curtail_pct", value=101, valid_until=1
            ),
            "curtail_pct must be 0..100",
        ),
        (
            lambda: kinds.Command(
                scope="zone", target="pea/x", action="release", value=5, valid_until=1
            ),
            "must be 0 for release",
        ),
        (
            lambda: kinds.Bid(
                interval=0, energy_wh=1, price=1, sources=("solar", "solar"), zone="a", expires=1
            ),
            "items must be unique",
        ),
        (
            lambda: kinds.Bid(interval=0, energy_wh=1, price=1, sources=(), zone="a", expires=1),
            "must have 1 to 8 items",
        ),
        (
            lambda: kinds.Offer(
                interval=0, energy_wh=0, price=1, source="solar", zone="a", expires=1
            ),
            "energy_wh: must be in 1",
        ),
        (
            lambda: kinds.Proposal(
                action="validator_add", target="not-a-key", value=0, roles=(), note=""
            ),
            "must be an account key",
        ),
        (
            lambda: kinds.Register(gateway="a" * 64, owner="b" * 64, zone="Bad Zone", devices=()),
            "zone: must be a zone path",
        ),
    ],
)
def test_invalid_bodies_cannot_be_built(build: Any, text: str) -> None:
    with pytest.raises(InvalidField, match=text):
        build()


def test_seq_guard_refuses_replay_per_stream() -> None:
    guard = SeqGuard()
    guard.accept(signed(TELEMETRY, seq=5))
    with pytest.raises(Replayed, match="not above the last accepted seq 5"):
        guard.accept(signed(TELEMETRY, seq=5))
    with pytest.raises(Replayed):
        guard.accept(signed(TELEMETRY, seq=4))
    # The tx stream counts separately.
    guard.accept(signed(kinds.Cancel(order="00" * 32), seq=1))
    guard.accept(signed(TELEMETRY, seq=6))
    assert guard.last(KEY.verify_key.encode().hex(), "telemetry") == 6
