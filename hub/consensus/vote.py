"""`VoteBook`: the prevotes and precommits received at one height, tallied per round.

Each validator counts once towards the total of a (type, round). Towards a particular block
hash, every distinct signed vote counts: an equivocating validator that signed votes for two
hashes counts for both. That keeps safety (two quorums of 2f+1 intersect in f+1 validators,
so with at most f faulty no two hashes both reach 2f+1) and restores liveness when honest
replicas saw different halves of an equivocation (as Tendermint's `peerMaj23` does). The
second, conflicting vote is also handed back to the caller as evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hub.consensus.block import quorum, weak_quorum
from wire.consensus import BftPrecommit, BftPrevote
from wire.envelope import Envelope

__all__ = ["PRECOMMIT", "PREVOTE", "Added", "VoteBook"]

PREVOTE = "bft_prevote"
PRECOMMIT = "bft_precommit"
MAX_VERSIONS = 8
"""Most distinct hashes one validator's votes are kept for in one (type, round)."""


@dataclass(frozen=True, slots=True)
class Added:
    """What adding a vote did."""

    new: bool
    """True when the vote changed a tally (not a duplicate)."""
    conflict: Envelope | None = None
    """An earlier vote of the same validator, type and round for another hash."""


class _Tally:
    """Votes of one type in one round."""

    __slots__ = ("by_block", "first")

    def __init__(self) -> None:
        self.by_block: dict[str, dict[str, Envelope]] = {}
        self.first: dict[str, Envelope] = {}


class VoteBook:
    """Votes of one height from the validator set `validators`."""

    def __init__(self, height: int, validators: Sequence[str]) -> None:
        """Start an empty book for `height`."""
        self.height = height
        self.members = frozenset(validators)
        self.n = len(self.members)
        self.quorum = quorum(self.n)
        self.weak = weak_quorum(self.n)
        self._tallies: dict[tuple[str, int], _Tally] = {}
        self._senders: dict[int, set[str]] = {}

    def note(self, round_: int, sender: str) -> None:
        """Record that `sender` sent some message (vote or proposal) in `round_`."""
        if sender in self.members:
            self._senders.setdefault(round_, set()).add(sender)

    def senders(self, round_: int) -> int:
        """How many distinct validators sent a message in `round_`."""
        return len(self._senders.get(round_, ()))

    def rounds(self) -> Iterable[int]:
        """Rounds from which any message was seen."""
        return self._senders.keys()

    def add(self, env: Envelope) -> Added:
        """Count a verified prevote or precommit of this height from a member."""
        body = env.body
        if not isinstance(body, BftPrevote | BftPrecommit) or env.sender not in self.members:
            return Added(new=False)
        tally = self._tallies.setdefault((env.kind, body.round), _Tally())
        first = tally.first.setdefault(env.sender, env)
        conflict = first if getattr(first.body, "block", None) != body.block else None
        voters = tally.by_block.setdefault(body.block, {})
        if env.sender in voters:
            return Added(new=False)
        versions = sum(1 for v in tally.by_block.values() if env.sender in v)
        if versions >= MAX_VERSIONS:
            return Added(new=False, conflict=conflict)
        voters[env.sender] = env
        self.note(body.round, env.sender)
        return Added(new=True, conflict=conflict)

    def count(self, kind: str, round_: int, block: str) -> int:
        """Validators whose `kind` votes in `round_` include `block` ("" for nil)."""
        tally = self._tallies.get((kind, round_))
        return len(tally.by_block.get(block, ())) if tally is not None else 0

    def total(self, kind: str, round_: int) -> int:
        """Validators that sent a `kind` vote in `round_`, for anything."""
        tally = self._tallies.get((kind, round_))
        return len(tally.first) if tally is not None else 0

    def decided(self, kind: str, round_: int) -> str | None:
        """The hash (or "" for nil) that has a quorum of `kind` votes in `round_`, if any."""
        tally = self._tallies.get((kind, round_))
        if tally is None:
            return None
        for block, voters in tally.by_block.items():
            if len(voters) >= self.quorum:
                return block
        return None

    def votes_for(self, kind: str, round_: int, block: str) -> list[Envelope]:
        """The envelopes of `kind` votes in `round_` for `block`."""
        tally = self._tallies.get((kind, round_))
        return list(tally.by_block.get(block, {}).values()) if tally is not None else []

    def prevote_rounds(self) -> list[int]:
        """Rounds with any prevote, ascending."""
        return sorted(r for (kind, r) in self._tallies if kind == PREVOTE)

    def precommit_rounds(self) -> list[int]:
        """Rounds with any precommit, ascending."""
        return sorted(r for (kind, r) in self._tallies if kind == PRECOMMIT)
