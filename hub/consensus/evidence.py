"""Equivocation evidence: two signed votes of one validator that cannot both be honest.

Two `bft_prevote` (or two `bft_precommit`) envelopes from the same sender for the same chain,
height and round with different block hashes. Every field that matters is inside the signed
bytes, so anyone can check the evidence with nothing but the two envelopes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from hub.errors import HubError
from wire.consensus import BftPrecommit, BftPrevote, Evidence
from wire.envelope import Envelope, parse
from wire.errors import InvalidMessage

__all__ = ["InvalidEvidence", "Offence", "check_evidence", "make_evidence"]


class InvalidEvidence(HubError):
    """Evidence that does not prove equivocation; the text says why."""


@dataclass(frozen=True, slots=True, order=True)
class Offence:
    """What a piece of evidence proves: who signed twice, where, and which vote type."""

    sender: str
    """The equivocating validator's key."""
    height: int
    """Height of the two votes."""
    round: int
    """Round of the two votes."""
    kind: str
    """`bft_prevote` or `bft_precommit`."""


def make_evidence(a: Envelope, b: Envelope) -> Evidence:
    """Evidence from two verified conflicting votes, in a canonical order (smaller text first)."""
    texts = sorted((a.to_bytes().decode("utf-8"), b.to_bytes().decode("utf-8")))
    return Evidence(first=texts[0], second=texts[1])


def _vote(text: str, chain: str) -> Envelope:
    try:
        env = parse(text.encode("utf-8"), chain)
    except InvalidMessage as exc:
        raise InvalidEvidence(f"vote does not verify: {exc}") from exc
    if not isinstance(env.body, BftPrevote | BftPrecommit):
        raise InvalidEvidence(f"{env.kind} is not a vote")
    if env.to_bytes().decode("utf-8") != text:
        raise InvalidEvidence("vote text is not canonical JSON")
    return env


def check_evidence(chain: str, evidence: Evidence, validators: Collection[str]) -> Offence:
    """Verify evidence and say what it proves.

    Raises:
        InvalidEvidence: a vote does not verify, the votes do not conflict, they are not in
            canonical order, or the signer is not a validator.
    """
    if evidence.first >= evidence.second:
        raise InvalidEvidence("votes must be distinct and in ascending text order")
    a, b = _vote(evidence.first, chain), _vote(evidence.second, chain)
    if not isinstance(a.body, BftPrevote | BftPrecommit) or not isinstance(
        b.body, BftPrevote | BftPrecommit
    ):
        raise InvalidEvidence("not votes")  # unreachable after _vote; keeps mypy precise
    if a.sender != b.sender:
        raise InvalidEvidence("votes are from different validators")
    if a.kind != b.kind or a.body.height != b.body.height or a.body.round != b.body.round:
        raise InvalidEvidence("votes are for different heights, rounds or types")
    if a.body.block == b.body.block:
        raise InvalidEvidence("votes are for the same block: no conflict")
    if a.sender not in validators:
        raise InvalidEvidence(f"{a.sender[:12]}… is not a validator")
    return Offence(a.sender, a.body.height, a.body.round, a.kind)
