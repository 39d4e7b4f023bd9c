"""What the consensus core asks its shell to do, and the timer events it is fed back.

The shell performs a batch of actions in order: a `Persist` always precedes the `Broadcast`
of a message it covers, so a crash between the two can at worst lose a message, never sign
a conflicting one after restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from hub.application import Execution
from hub.consensus.chain import Head
from hub.consensus.wal import WalRecord
from wire.consensus import Block, Commit
from wire.envelope import Envelope

__all__ = ["Action", "Broadcast", "Committed", "Persist", "SetTimer", "Sync", "Timeout"]

TimeoutKind = Literal["propose", "prevote", "precommit", "heartbeat", "rebroadcast"]


@dataclass(frozen=True, slots=True)
class Timeout:
    """A timer event, fed back through `Replica.on_timeout` when it fires."""

    kind: TimeoutKind
    """Which timer."""
    height: int
    """Height it was set at."""
    round: int
    """Round it was set in."""


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send a signed consensus message to every validator (and followers, for blocks)."""

    message: Envelope
    """The signed envelope (possibly another validator's, relayed)."""
    channel: Literal["consensus", "blocks"] = "consensus"
    """`consensus`: gtx/v1/{chain}/consensus/{me}; `blocks`: gtx/v1/{chain}/blocks."""


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call `on_timeout(timeout)` at `at_ms` (unix ms)."""

    timeout: Timeout
    """The event to feed back."""
    at_ms: int
    """When, unix ms."""


@dataclass(frozen=True, slots=True)
class Persist:
    """Write the write-ahead record durably before performing the actions after it."""

    record: WalRecord
    """The record to write (replaces the previous one)."""


@dataclass(frozen=True, slots=True)
class Committed:
    """A block is final: store it with its certificate and the application's new state."""

    block: Block
    """The finalized block."""
    commit: Commit
    """Its commit certificate."""
    execution: Execution
    """Its execution (state hash, per-transaction results), already applied in memory."""
    head: Head
    """The new committed head."""
    changes: Mapping[str, bytes | None]
    """Rows of the application state this block changed (`Application.state_changes`)."""


@dataclass(frozen=True, slots=True)
class Sync:
    """Peers are ahead: fetch finalized blocks above our head and feed them to `on_block`."""

    height: int
    """The first height we miss."""


Action = Broadcast | SetTimer | Persist | Committed | Sync
