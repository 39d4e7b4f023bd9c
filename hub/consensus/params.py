"""Consensus timing: round timeouts that grow per failed round up to a cap, heartbeat, limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hub.errors import ConfigError

__all__ = ["Params", "Step"]

Step = Literal["propose", "prevote", "precommit"]


@dataclass(frozen=True, slots=True)
class Params:
    """Timing and size limits of the consensus core (all durations in ms)."""

    propose_ms: int = 1_000
    """Wait for the round's proposal before prevoting nil (round 0)."""
    prevote_ms: int = 500
    """Wait after 2f+1 prevotes of any kind before precommitting nil (round 0)."""
    precommit_ms: int = 500
    """Wait after 2f+1 precommits of any kind before moving to the next round (round 0)."""
    delta_ms: int = 500
    """Added to every timeout per failed round."""
    cap_ms: int = 3_000
    """No timeout grows beyond this, so a chain that lost quorum for minutes resumes in seconds."""
    heartbeat_ms: int = 10_000
    """An idle chain proposes an empty block this long after the last block."""
    rebroadcast_ms: int = 1_000
    """A replica that made no progress for this long re-sends its messages of the round."""
    sync_retry_ms: int = 1_000
    """Least time between two requests to fetch blocks from peers."""
    max_block_txs: int = 2_000
    """Most transactions one block carries."""
    max_future_ms: int = 10_000
    """How far past a checker's clock a block's time may lie."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"consensus.{name}", f"must be a positive integer, got {value!r}")
        if self.max_block_txs > 10_000:
            raise ConfigError("consensus.max_block_txs", "must be at most 10000")

    def timeout(self, step: Step, round_: int) -> int:
        """Timeout in ms for `step` in round `round_`: base + delta * round, at most `cap_ms`."""
        base = {"propose": self.propose_ms, "prevote": self.prevote_ms}.get(step, self.precommit_ms)
        return min(base + self.delta_ms * round_, self.cap_ms)
