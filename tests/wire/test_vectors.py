"""Golden vectors: our encoder and signer reproduce tests/vectors/messages.json byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from wire import envelope

DOC = json.loads((Path(__file__).parents[1] / "vectors" / "messages.json").read_text("utf-8"))
KEY = SigningKey(bytes.fromhex(DOC["seed_hex"]))


def test_public_key_matches_seed() -> None:
    assert KEY.verify_key.encode().hex() == DOC["public_key"]


@pytest.mark.parametrize("vector", DOC["vectors"], ids=lambda v: v["kind"])
def test_vector(vector: dict[str, str]) -> None:
    raw = vector["message"].encode("utf-8")
    env = envelope.parse(raw, DOC["chain"])
    assert env.kind == vector["kind"]
    # Re-encoding and re-signing reproduce the vector exactly.
    assert env.to_bytes() == raw
    assert envelope.signing_bytes(env.unsigned_obj()).hex() == vector["signing_bytes_hex"]
    again = envelope.sign(KEY, DOC["chain"], env.body, env.seq, env.ts_ms)
    assert again.sig == env.sig
    assert env.message_id() == vector["id"] == hashlib.sha256(raw).hexdigest()


def test_every_kind_has_a_vector() -> None:
    from wire.struct import KINDS

    tx_kinds = {k for k, cls in KINDS.items() if cls.STREAM != "consensus"}
    assert tx_kinds <= {v["kind"] for v in DOC["vectors"]}
