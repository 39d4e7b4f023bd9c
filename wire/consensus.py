"""Consensus message kinds exchanged by hub validators (stream `consensus`).

Tendermint-style BFT: a proposer signs a `bft_proposal` carrying a whole block; validators
sign `bft_prevote` and `bft_precommit` votes for a block hash (or `""` for nil). What a vote
signature covers is the whole envelope: chain, kind (the vote type), sender, and the body's
height, round and block hash, so two signed votes of one validator with the same height,
round and type but different hashes prove equivocation on their own (`bft_evidence`).

A block's transactions are the exact canonical JSON texts of their signed envelopes: the
transaction id is the SHA-256 of the UTF-8 of that text, the same as `Envelope.message_id()`.
A commit certificate keeps only what it takes to rebuild and verify each precommit envelope.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from wire.kinds import HEX64, HEX64_HINT
from wire.struct import Body, Struct, integer, items, message_kind, required, text

HASH_OR_NIL = r"([0-9a-f]{64})?"
HASH_OR_NIL_HINT = "a block hash (64 lowercase hex) or the empty string for nil"
HEX128 = r"[0-9a-f]{128}"
MAX_HEIGHT = 2**53
MAX_ROUND = 2**31
MAX_TS = 2**53
MAX_BLOCK_TXS = 10_000
MAX_VALIDATORS = 256
MAX_EVIDENCE = 64
MAX_TX_TEXT = r"[\s\S]{2,65536}"
MAX_ENERGY = 2**53


def _count(hi: int) -> Any:
    """An integer field in 0..hi that defaults to 0 (an empty summary is all zeros)."""
    return dataclasses.field(default=0, metadata={"lo": 0, "hi": hi})


@dataclass(frozen=True, slots=True)
class EnergySummary(Struct):
    """Interval totals of a block: what the delivery intervals it settled add up to.

    Filled by the state machine (`EnergyApp`), checked by every validator like the state
    hash. All zeros and `statement` empty when the block settled no interval (and for
    applications without a market). A light client can follow energy totals from headers
    alone and fetch the statement whose hash a header carries.
    """

    settled: int = _count(MAX_HEIGHT)
    """Delivery intervals settled by this block (usually 0 or 1)."""
    interval: int = _count(MAX_TS)
    """Start of the latest interval settled, unix ms (0 when none)."""
    trades: int = _count(MAX_ENERGY)
    """Trades settled."""
    traded_wh: int = _count(MAX_ENERGY)
    """Energy traded in the settled intervals, Wh."""
    delivered_wh: int = _count(MAX_ENERGY)
    """Of it delivered (metered), Wh."""
    shortfall_wh: int = _count(MAX_ENERGY)
    """Of it not delivered, Wh (traded = delivered + shortfall)."""
    statement: str = dataclasses.field(
        default="",
        metadata={
            "re": re.compile(HASH_OR_NIL),
            "hint": "a statement hash (64 lowercase hex) or the empty string",
        },
    )
    """Hash of the settled interval's statement (`GET /v1/statements/{interval}`); with
    several intervals, SHA-256 over their hashes in interval order; "" when none."""


@dataclass(frozen=True, slots=True)
class CommitSig(Struct):
    """One validator's precommit inside a commit certificate."""

    validator: str = text(HEX64, HEX64_HINT)
    """Public key of the validator that signed the precommit."""
    seq: int = integer(0, 2**53)
    """`seq` of the precommit envelope."""
    ts: int = integer(0, MAX_TS)
    """`ts` (unix ms) of the precommit envelope."""
    sig: str = text(HEX128, "128 lowercase hex characters")
    """Ed25519 signature of the precommit envelope."""

    def key(self) -> str:
        """One signature per validator."""
        return self.validator


@dataclass(frozen=True, slots=True)
class Commit(Struct):
    """Commit certificate: 2f+1 precommits for one block at one height and round.

    The certificate of height 0 (before the first block) has no signatures and an empty hash.
    """

    height: int = integer(0, MAX_HEIGHT)
    """Height of the committed block."""
    round: int = integer(0, MAX_ROUND)
    """Round in which the block was committed."""
    block: str = text(HASH_OR_NIL, HASH_OR_NIL_HINT)
    """Hash of the committed block."""
    sigs: tuple[CommitSig, ...] = items(0, MAX_VALIDATORS)
    """The precommits, sorted by validator key."""


@dataclass(frozen=True, slots=True)
class Header(Struct):
    """Block header; its canonical JSON's SHA-256 is the block hash."""

    chain: str = text(r"[a-z0-9][a-z0-9._-]{0,63}", "a chain id")
    """Chain id."""
    height: int = integer(1, MAX_HEIGHT)
    """Height, 1 for the first block after genesis."""
    prev: str = text(HEX64, HEX64_HINT)
    """Hash of the previous block (the genesis hash for height 1)."""
    time_ms: int = integer(0, MAX_TS)
    """Proposer's time, unix ms; strictly above the previous block's."""
    proposer: str = text(HEX64, HEX64_HINT)
    """Public key of the proposer."""
    tx_root: str = text(HEX64, HEX64_HINT)
    """Merkle root (SHA-256) of the transaction ids, in block order."""
    state_hash: str = text(HEX64, HEX64_HINT)
    """Application state hash after executing this block."""
    validators_hash: str = text(HEX64, HEX64_HINT)
    """Hash of the validator set that signs this block."""
    next_validators_hash: str = text(HEX64, HEX64_HINT)
    """Hash of the validator set for the next height (after this block's governance)."""
    last_commit_hash: str = text(HEX64, HEX64_HINT)
    """SHA-256 of the canonical JSON of the previous block's commit certificate."""
    evidence_hash: str = text(HEX64, HEX64_HINT)
    """Merkle root of the evidence ids carried in this block."""
    energy: EnergySummary = required()
    """Interval totals (state machine issue)."""


@dataclass(frozen=True, slots=True)
class Evidence(Struct):
    """Two conflicting votes of one validator: same height, round and type, different hash."""

    first: str = text(MAX_TX_TEXT, "the canonical JSON of a signed vote")
    """One vote envelope, canonical JSON text."""
    second: str = text(MAX_TX_TEXT, "the canonical JSON of a signed vote")
    """The other vote envelope, canonical JSON text."""


@dataclass(frozen=True, slots=True)
class Block(Struct):
    """A block: header, transactions, evidence, and the previous block's commit certificate."""

    header: Header = required()
    """The header."""
    txs: tuple[str, ...] = items(0, MAX_BLOCK_TXS)
    """Transactions: canonical JSON text of each signed envelope."""
    evidence: tuple[Evidence, ...] = items(0, MAX_EVIDENCE)
    """Equivocation evidence committed in this block."""
    last_commit: Commit = required()
    """Commit certificate of the block at height - 1."""


@message_kind("bft_proposal", stream="consensus")
@dataclass(frozen=True, slots=True)
class BftProposal(Body):
    """The proposer's block for one height and round."""

    height: int = integer(1, MAX_HEIGHT)
    """Height proposed for."""
    round: int = integer(0, MAX_ROUND)
    """Round proposed in."""
    pol_round: int = integer(-1, MAX_ROUND)
    """Round in which the proposer saw 2f+1 prevotes for this block, or -1."""
    block: Block = required()
    """The proposed block."""


@message_kind("bft_prevote", stream="consensus")
@dataclass(frozen=True, slots=True)
class BftPrevote(Body):
    """First-phase vote for a block hash (or nil) at one height and round."""

    height: int = integer(1, MAX_HEIGHT)
    """Height voted at."""
    round: int = integer(0, MAX_ROUND)
    """Round voted in."""
    block: str = text(HASH_OR_NIL, HASH_OR_NIL_HINT)
    """Hash of the block, or "" for nil."""


@message_kind("bft_precommit", stream="consensus")
@dataclass(frozen=True, slots=True)
class BftPrecommit(Body):
    """Second-phase vote for a block hash (or nil) at one height and round."""

    height: int = integer(1, MAX_HEIGHT)
    """Height voted at."""
    round: int = integer(0, MAX_ROUND)
    """Round voted in."""
    block: str = text(HASH_OR_NIL, HASH_OR_NIL_HINT)
    """Hash of the block, or "" for nil."""


@message_kind("bft_evidence", stream="consensus")
@dataclass(frozen=True, slots=True)
class BftEvidence(Body):
    """Gossip of equivocation evidence seen by the sender."""

    evidence: Evidence = required()
    """The two conflicting votes."""


@message_kind("bft_block", stream="consensus")
@dataclass(frozen=True, slots=True)
class BftBlock(Body):
    """A finalized block with its commit certificate (topic `gtx/v1/{chain}/blocks`)."""

    block: Block = required()
    """The committed block."""
    commit: Commit = required()
    """Its commit certificate (2f+1 precommits for its hash)."""


@message_kind("bft_statement_sig", stream="consensus")
@dataclass(frozen=True, slots=True)
class BftStatementSig(Body):
    """A validator vouches for the statement of a settled delivery interval.

    Sent on the sender's consensus topic once the block that settled the interval is
    committed. `sig` is a signature with its own domain tag over (chain, interval, statement
    hash) (`hub.state.settlement.statement_signing_bytes`), so billing systems can check it
    against the validator set without the envelope, and it never verifies as a message.
    """

    interval: int = integer(0, MAX_TS)
    """Start of the settled interval, unix ms."""
    height: int = integer(1, MAX_HEIGHT)
    """Height of the block that settled it."""
    statement: str = text(HEX64, "a statement hash (64 lowercase hex)")
    """The statement's hash (`GET /v1/statements/{interval}` `hash`)."""
    sig: str = text(HEX128, "128 lowercase hex characters")
    """Ed25519 signature of the statement hash by the envelope's sender."""


__all__ = [
    "BftBlock",
    "BftEvidence",
    "BftPrecommit",
    "BftPrevote",
    "BftProposal",
    "BftStatementSig",
    "Block",
    "Commit",
    "CommitSig",
    "EnergySummary",
    "Evidence",
    "Header",
]
