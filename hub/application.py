"""The deterministic application interface consensus drives, and the types it exchanges.

Consensus orders blocks; the application gives them meaning. The contract:

* `execute(ctx, txs)` is a pure function of the committed state, the block context and the
  transactions: same inputs, same `Execution` (state hash, per-transaction results) on every
  validator. It must not change the committed state: a proposed block may never commit.
* `commit(execution)` adopts the post-state of an `Execution` this application returned for
  the block just finalized (execution-specs' begin/commit: execute on a snapshot, then
  commit or drop it as a unit).
* `check_tx` decides mempool admission against the committed state; it raises `TxRejected`.
* `state_changes(execution)` names the rows of the committed state a just-committed block
  changed (row key -> new bytes, None when deleted); the chain store writes them in the same
  SQLite transaction as the block, and `restore_rows` rebuilds the state from the genesis
  state and the stored rows, so a restarted validator resumes with the exact state hash
  without replaying anything, and a block costs disk in proportion to what it changed, not
  to the size of the state.
* `snapshot()`/`restore()` round-trip the whole committed state as bytes (tests, tools,
  and chain stores written before row persistence).

The state machine issue plugs in by implementing `Application` and passing a factory
(`Callable[[Genesis], Application]`) to the node (`hub.node.Node(app_factory=...)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from wire.consensus import EnergySummary, Evidence
from wire.envelope import Envelope

__all__ = ["Application", "BlockContext", "Execution", "TxResult"]


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a block tells the application besides its transactions."""

    chain: str
    """Chain id."""
    height: int
    """Height of the block being executed."""
    time_ms: int
    """Block time (proposer's clock, strictly increasing), unix ms."""
    proposer: str
    """Public key of the validator that built the block."""
    validators: tuple[str, ...]
    """Validator set signing this block, sorted."""
    evidence: tuple[Evidence, ...]
    """Equivocation evidence committed by this block (verified by consensus)."""


@dataclass(frozen=True, slots=True)
class TxResult:
    """Outcome of one transaction in a block."""

    tx_id: str
    """Transaction id (SHA-256 hex of its envelope)."""
    ok: bool
    """True when it took effect."""
    reason: str = ""
    """Why it failed (empty when `ok`)."""


@dataclass(frozen=True, slots=True)
class Execution:
    """The result of executing a block on the committed state, not yet committed."""

    state_hash: str
    """State hash after the block, 64 hex; goes in the block header."""
    results: tuple[TxResult, ...]
    """One result per transaction, in block order."""
    energy: EnergySummary
    """Interval totals for the header."""
    validators: tuple[str, ...]
    """Sorted validator set for the next height (governance may change it)."""
    post_state: object
    """Opaque post-state for `Application.commit`; consensus never looks inside."""


class Application(Protocol):
    """A deterministic state machine driven by consensus. Every method is pure of I/O."""

    def state_hash(self) -> str:
        """Hash of the committed state, 64 hex."""
        ...

    def validators(self) -> tuple[str, ...]:
        """Sorted validator set for the next block."""
        ...

    def check_tx(self, tx: Envelope, *, queued: bool = False) -> None:
        """Admission check against the committed state (signature already verified).

        Args:
            tx: the transaction.
            queued: the sender has pending transactions with a lower seq, which may change
                what `tx` finds (a meter read's `prev` is the read before it); check only
                what they cannot change. The block re-checks everything.

        Raises:
            TxRejected: with a reason the sender can act on.
        """
        ...

    def gapless_next(self, sender: str) -> int | None:
        """The seq `sender`'s next transaction must have to go without a wait, or None.

        A sender whose seqs are contiguous by construction (a registered gateway, which
        allocates them one by one) gets its committed seq + 1, or 0 before its first
        commit (any first seq, contiguous after it): a later seq means one was lost on the
        way, and the mempool holds it a while for the re-send. None means any higher seq
        may go at once (clients that sign with clock-based seqs).
        """
        ...

    def execute(self, ctx: BlockContext, txs: Sequence[Envelope]) -> Execution:
        """Execute a block on a copy of the committed state; never changes it."""
        ...

    def commit(self, execution: Execution) -> None:
        """Adopt the post-state of an `Execution` returned by this application's `execute`."""
        ...

    def snapshot(self) -> bytes:
        """The committed state as bytes (canonical JSON is a good choice)."""
        ...

    def state_changes(self, execution: Execution) -> Mapping[str, bytes | None]:
        """Rows of the committed state changed by `execution` (already committed).

        Returns:
            Row key -> the row's new bytes, or None when the row was deleted. Applying
            these to the rows stored after the previous block gives the rows after this one.
        """
        ...

    def restore_rows(self, rows: Iterable[tuple[str, bytes | None]]) -> None:
        """Replace the committed state by the genesis state with the stored rows applied.

        Every row `state_changes` ever returned, the latest per key (None: deleted), in any
        order.
        """
        ...

    def restore(self, snapshot: bytes) -> None:
        """Replace the committed state by one `snapshot()` returned."""
        ...
