"""Block hashing, Merkle roots, validator-set arithmetic and commit certificates.

All hashes are SHA-256 as lowercase hex. The block hash is the hash of the canonical JSON of
its header; everything else a block carries (transactions, evidence, the previous commit)
is bound into the header by a root or hash, so the header hash commits to the whole block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from hub.errors import InvalidCommit
from wire import canonical
from wire.consensus import BftPrecommit, Block, Commit, CommitSig, Evidence, Header
from wire.envelope import Envelope, signing_bytes
from wire.errors import BadSignature
from wire.keys import verify

__all__ = [
    "EMPTY_COMMIT",
    "block_hash",
    "commit_hash",
    "commit_signatures",
    "evidence_id",
    "header_hash",
    "max_faulty",
    "merkle_root",
    "precommit_envelope",
    "quorum",
    "sha256_hex",
    "tx_id",
    "validators_hash",
    "verify_commit",
    "weak_quorum",
]

EMPTY_COMMIT = Commit(height=0, round=0, block="", sigs=())
"""The certificate carried by block 1: there is no block 0 to certify."""


def sha256_hex(data: bytes) -> str:
    """SHA-256 of `data` as 64 lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def tx_id(tx_text: str) -> str:
    """Id of a transaction given as the canonical JSON text of its envelope."""
    return sha256_hex(tx_text.encode("utf-8"))


def merkle_root(leaves_hex: Sequence[str]) -> str:
    """Merkle root of 32-byte leaves (hex), RFC 6962 style (domain-separated leaves/nodes).

    The root of no leaves is SHA-256 of the empty string. An odd node is promoted unchanged,
    so no two different leaf lists share a root.
    """
    if not leaves_hex:
        return sha256_hex(b"")
    level = [hashlib.sha256(b"\x00" + bytes.fromhex(leaf)).digest() for leaf in leaves_hex]
    while len(level) > 1:
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def header_hash(header: Header) -> str:
    """The block hash: SHA-256 of the header's canonical JSON."""
    return sha256_hex(canonical.encode(header.to_json()))


def block_hash(block: Block) -> str:
    """Hash of a block (its header's hash)."""
    return header_hash(block.header)


def commit_hash(commit: Commit) -> str:
    """SHA-256 of a commit certificate's canonical JSON (bound into the next header)."""
    return sha256_hex(canonical.encode(commit.to_json()))


def evidence_id(evidence: Evidence) -> str:
    """SHA-256 of the canonical JSON of one piece of evidence."""
    return sha256_hex(canonical.encode(evidence.to_json()))


def validators_hash(validators: Iterable[str]) -> str:
    """Hash of a validator set: SHA-256 of the canonical JSON list of sorted keys."""
    return sha256_hex(canonical.encode(sorted(validators)))


def max_faulty(n: int) -> int:
    """f: the most faulty validators a set of `n` tolerates (n >= 3f+1)."""
    return (n - 1) // 3


def quorum(n: int) -> int:
    """Votes needed to decide among `n` validators: more than two thirds (2f+1 for n=3f+1)."""
    return 2 * n // 3 + 1


def weak_quorum(n: int) -> int:
    """Votes that must include at least one honest validator: f+1."""
    return n - quorum(n) + 1


def precommit_envelope(chain: str, height: int, sig: CommitSig, commit: Commit) -> Envelope:
    """Rebuild the precommit envelope one certificate signature stands for."""
    body = BftPrecommit(height=height, round=commit.round, block=commit.block)
    return Envelope(
        chain=chain, sender=sig.validator, seq=sig.seq, ts_ms=sig.ts, body=body, sig=sig.sig
    )


def commit_signatures(precommits: Iterable[Envelope]) -> tuple[CommitSig, ...]:
    """Certificate signatures from verified precommit envelopes, sorted by validator."""
    sigs = {
        env.sender: CommitSig(validator=env.sender, seq=env.seq, ts=env.ts_ms, sig=env.sig)
        for env in precommits
    }
    return tuple(sigs[key] for key in sorted(sigs))


def verify_commit(
    chain: str, commit: Commit, height: int, block: str, validators: Sequence[str]
) -> None:
    """Check that `commit` proves 2f+1 of `validators` precommitted `block` at `height`.

    Raises:
        InvalidCommit: wrong height or hash, unknown or repeated signers, too few
            signatures, or a signature that does not verify.
    """
    if commit.height != height:
        raise InvalidCommit(height, f"certificate is for height {commit.height}")
    if commit.block != block:
        raise InvalidCommit(height, f"certificate is for block {commit.block[:12]}…")
    members = set(validators)
    seen: set[str] = set()
    for sig in commit.sigs:
        if sig.validator not in members:
            raise InvalidCommit(height, f"signer {sig.validator[:12]}… is not a validator")
        if sig.validator in seen:
            raise InvalidCommit(height, f"signer {sig.validator[:12]}… appears twice")
        seen.add(sig.validator)
        env = precommit_envelope(chain, height, sig, commit)
        try:
            verify(sig.validator, signing_bytes(env.unsigned_obj()), bytes.fromhex(sig.sig))
        except BadSignature as exc:
            raise InvalidCommit(
                height, f"precommit of {sig.validator[:12]}… does not verify"
            ) from exc
    need = quorum(len(members))
    if len(seen) < need:
        raise InvalidCommit(height, f"{len(seen)} precommits, {need} of {len(members)} needed")
