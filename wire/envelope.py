"""The signed envelope every MQTT message travels in: build, sign, serialise, parse, verify.

```
{"v":1,"chain":"<chain id>","kind":"<kind>","from":"<64 hex>","seq":<int>,"ts":<unix ms>,
 "body":{...},"sig":"<128 hex>"}
```
The signature covers `DOMAIN + canonical(envelope without "sig")`. The message id is the
SHA-256 (hex) of the canonical bytes of the whole envelope, signature included.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from wire import canonical, consensus, kinds
from wire.errors import InvalidField, InvalidMessage, UnknownKind, WrongChain
from wire.keys import public_hex, verify
from wire.struct import KINDS, Body

__all__ = ["DOMAIN", "Envelope", "consensus", "from_obj", "kinds", "parse", "sign"]

DOMAIN = b"gridtokenx/v1\n"
"""Prefix of every signed byte string: a GridTokenX signature means nothing elsewhere."""
VERSION = 1
MAX_MESSAGE_BYTES = 65_536
CHAIN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_FIELDS = ("body", "chain", "from", "kind", "seq", "sig", "ts", "v")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed message. Build with `sign`, receive with `parse`; never trust one built raw."""

    chain: str
    """Chain id the message is bound to."""
    sender: str
    """Public key (64 hex) of the signer: the `from` field."""
    seq: int
    """Per-sender, per-stream sequence number; strictly increasing."""
    ts_ms: int
    """Creation time, unix ms: the `ts` field."""
    body: Body
    """The typed body; its class gives `kind` and `stream`."""
    sig: str
    """Ed25519 signature, 128 hex."""

    @property
    def kind(self) -> str:
        """The message kind, e.g. `telemetry`."""
        return self.body.KIND

    @property
    def stream(self) -> str:
        """The stream its `seq` counts on: `telemetry`, `tx`, `command` or `consensus`."""
        return self.body.STREAM

    def unsigned_obj(self) -> dict[str, Any]:
        """The envelope as a JSON object without `sig`: what the signature covers."""
        return _unsigned(self.chain, self.kind, self.sender, self.seq, self.ts_ms, self.body)

    def to_obj(self) -> dict[str, Any]:
        """The whole envelope as a JSON object."""
        obj = self.unsigned_obj()
        obj["sig"] = self.sig
        return obj

    def to_bytes(self) -> bytes:
        """Canonical UTF-8 JSON of the whole envelope: what goes on the wire."""
        return canonical.encode(self.to_obj())

    def message_id(self) -> str:
        """SHA-256 hex of `to_bytes()`: the id of a transaction or order."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def _unsigned(
    chain: str, kind: str, sender: str, seq: int, ts_ms: int, body: Body
) -> dict[str, Any]:
    return {
        "v": VERSION,
        "chain": chain,
        "kind": kind,
        "from": sender,
        "seq": seq,
        "ts": ts_ms,
        "body": body.to_json(),
    }


def signing_bytes(unsigned: dict[str, Any]) -> bytes:
    """The exact bytes an Ed25519 signature covers."""
    return DOMAIN + canonical.encode(unsigned)


def sign(key: SigningKey, chain: str, body: Body, seq: int, ts_ms: int) -> Envelope:
    """Sign `body` as the next message of `key` on `chain`.

    Raises:
        InvalidField: chain, seq or ts out of range.
    """
    _check_header(chain, seq, ts_ms)
    sender = public_hex(key)
    unsigned = _unsigned(chain, body.KIND, sender, seq, ts_ms, body)
    sig = key.sign(signing_bytes(unsigned)).signature.hex()
    return Envelope(chain=chain, sender=sender, seq=seq, ts_ms=ts_ms, body=body, sig=sig)


def _check_header(chain: Any, seq: Any, ts_ms: Any) -> None:
    if not isinstance(chain, str) or not CHAIN.fullmatch(chain):
        raise InvalidField("chain", f"must be a chain id like 'gtx-local', got {chain!r}")
    for name, value in (("seq", seq), ("ts", ts_ms)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**53:
            raise InvalidField(name, f"must be an integer in 0..2^53, got {value!r}")


def from_obj(obj: Any, chain: str | None = None) -> Envelope:
    """Validate and verify an envelope already decoded from JSON.

    Args:
        obj: the decoded JSON object.
        chain: the chain the receiver serves; a message for another chain is refused.

    Raises:
        InvalidMessage: (or a subclass) saying what is wrong. Nothing else escapes.
    """
    if not isinstance(obj, dict):
        raise InvalidMessage(f"message must be a JSON object, got {type(obj).__name__}")
    for name in _FIELDS:
        if name not in obj:
            raise InvalidField(name, "missing")
    for name in obj:
        if name not in _FIELDS:
            raise InvalidField(name, "unknown field")
    if obj["v"] != VERSION or isinstance(obj["v"], bool):
        raise InvalidField("v", f"unsupported version {obj['v']!r}; this node speaks {VERSION}")
    _check_header(obj["chain"], obj["seq"], obj["ts"])
    if chain is not None and obj["chain"] != chain:
        raise WrongChain(f"message is for chain {obj['chain']!r}, this node serves {chain!r}")
    kind = obj["kind"]
    body_type = KINDS.get(kind) if isinstance(kind, str) else None
    if body_type is None:
        raise UnknownKind(f"unknown kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    sender, sig = obj["from"], obj["sig"]
    if not isinstance(sender, str) or not _HEX64.fullmatch(sender):
        raise InvalidField("from", "must be a public key of 64 lowercase hex characters")
    if not isinstance(sig, str) or not _HEX128.fullmatch(sig):
        raise InvalidField("sig", "must be 128 lowercase hex characters")
    body = body_type.from_json(obj["body"])
    env = Envelope(
        chain=obj["chain"], sender=sender, seq=obj["seq"], ts_ms=obj["ts"], body=body, sig=sig
    )
    verify(sender, signing_bytes(env.unsigned_obj()), bytes.fromhex(sig))
    return env


def parse(data: bytes | str, chain: str | None = None) -> Envelope:
    """Decode and verify an envelope from untrusted bytes.

    Raises:
        InvalidMessage: (or a subclass: NotCanonical, WrongChain, UnknownKind, InvalidField,
            BadSignature) with a text that says what is wrong. Nothing else escapes.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    return from_obj(canonical.decode(raw), chain)
