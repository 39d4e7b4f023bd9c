"""`TransferLedger`: the starter `Application` — balances moved by `transfer`, every tx recorded.

It is the stand-in until the full state machine (accounts, registry, market, settlement)
replaces it through the same `Application` interface. State: balances in satang, the last
committed `seq` of each sender on the `tx` stream (replay protection across blocks), the
number of transactions recorded, and the keys of validators caught equivocating.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hub.application import BlockContext, Execution, TxResult
from hub.consensus.block import sha256_hex
from hub.errors import HubError, TxRejected
from hub.genesis import Genesis
from wire import canonical
from wire.consensus import EnergySummary
from wire.envelope import Envelope
from wire.errors import NotCanonical
from wire.kinds import Transfer

__all__ = ["LedgerState", "TransferLedger"]


@dataclass(frozen=True, slots=True)
class LedgerState:
    """An immutable ledger state (dicts are never mutated after construction)."""

    balances: dict[str, int]
    """Satang by account key; accounts with zero are dropped."""
    nonces: dict[str, int]
    """Last committed `tx`-stream seq by sender."""
    tx_count: int
    """Transactions recorded so far (failed ones included)."""
    equivocators: dict[str, int]
    """Validator key -> pieces of equivocation evidence committed against it."""

    def to_json(self) -> dict[str, object]:
        """The state as a JSON object (sorted by canonical encoding)."""
        return {
            "balances": self.balances,
            "nonces": self.nonces,
            "tx_count": self.tx_count,
            "equivocators": self.equivocators,
        }

    def hash(self) -> str:
        """SHA-256 of the state's canonical JSON."""
        return sha256_hex(canonical.encode(self.to_json()))


class TransferLedger:
    """Applies `transfer` transactions to balances; records every other tx kind as is."""

    def __init__(self, genesis: Genesis) -> None:
        self._validators = tuple(genesis.validators)
        self._state = LedgerState(
            balances={k: v for k, v in genesis.balances.items() if v},
            nonces={},
            tx_count=0,
            equivocators={},
        )
        self._hash = self._state.hash()

    def state_hash(self) -> str:
        """Hash of the committed state."""
        return self._hash

    def validators(self) -> tuple[str, ...]:
        """The validator set (fixed at genesis in this ledger)."""
        return self._validators

    def balance(self, account: str) -> int:
        """Committed balance of `account` in satang."""
        return self._state.balances.get(account, 0)

    def nonce(self, sender: str) -> int:
        """Last committed `tx`-stream seq of `sender` (0 when none)."""
        return self._state.nonces.get(sender, 0)

    def check_tx(self, tx: Envelope, *, queued: bool = False) -> None:
        """Refuse non-transactions and replays of committed seqs (`queued` changes nothing).

        Raises:
            TxRejected: not on the `tx` stream, or seq not above the committed one.
        """
        if tx.stream != "tx":
            raise TxRejected(f"{tx.kind} is not a transaction (stream {tx.stream})")
        last = self._state.nonces.get(tx.sender, 0)
        if tx.seq <= last:
            raise TxRejected(
                f"replayed: seq {tx.seq} is not above the committed seq {last} of this sender"
            )

    def gapless_next(self, sender: str) -> int | None:
        """None: transfers have no contiguous senders."""
        return None

    def execute(self, ctx: BlockContext, txs: Sequence[Envelope]) -> Execution:
        """Execute a block on a copy of the committed state."""
        balances = dict(self._state.balances)
        nonces = dict(self._state.nonces)
        equivocators = dict(self._state.equivocators)
        results: list[TxResult] = []
        for tx in txs:
            tid = tx.message_id()
            last = nonces.get(tx.sender, 0)
            if tx.stream != "tx":
                results.append(TxResult(tid, ok=False, reason=f"{tx.kind} is not a transaction"))
                continue
            if tx.seq <= last:
                results.append(TxResult(tid, ok=False, reason=f"replayed: seq {tx.seq} <= {last}"))
                continue
            nonces[tx.sender] = tx.seq
            if isinstance(tx.body, Transfer):
                have = balances.get(tx.sender, 0)
                if have < tx.body.amount:
                    reason = f"insufficient balance: has {have} satang, sends {tx.body.amount}"
                    results.append(TxResult(tid, ok=False, reason=reason))
                    continue
                balances[tx.sender] = have - tx.body.amount
                if not balances[tx.sender]:
                    del balances[tx.sender]
                balances[tx.body.to] = balances.get(tx.body.to, 0) + tx.body.amount
            results.append(TxResult(tid, ok=True))
        for ev in ctx.evidence:
            first = canonical.decode(ev.first.encode("utf-8"))
            sender = first["from"] if isinstance(first, dict) else None
            if isinstance(sender, str):
                equivocators[sender] = equivocators.get(sender, 0) + 1
        post = LedgerState(balances, nonces, self._state.tx_count + len(txs), equivocators)
        return Execution(
            state_hash=post.hash(),
            results=tuple(results),
            energy=EnergySummary(),
            validators=self._validators,
            post_state=post,
        )

    def commit(self, execution: Execution) -> None:
        """Adopt the post-state of `execution`."""
        if not isinstance(execution.post_state, LedgerState):
            raise HubError("execution was not produced by a TransferLedger")  # a bug
        self._state = execution.post_state
        self._hash = execution.state_hash

    def snapshot(self) -> bytes:
        """Committed state as canonical JSON."""
        return canonical.encode(self._state.to_json())

    def state_changes(self, execution: Execution) -> dict[str, bytes | None]:
        """The starter ledger is small: one row, the whole state."""
        del execution
        return {"ledger": self.snapshot()}

    def restore_rows(self, rows: Iterable[tuple[str, bytes | None]]) -> None:
        """Load the state from the stored rows (the one `ledger` row).

        Raises:
            HubError: there is no `ledger` row, or it is unreadable.
        """
        found = dict(rows).get("ledger")
        if found is None:
            raise HubError("stored application rows hold no `ledger` row")
        self.restore(found)

    def restore(self, snapshot: bytes) -> None:
        """Load a state written by `snapshot`.

        Raises:
            HubError: the snapshot is not a ledger state.
        """
        try:
            obj = canonical.decode(snapshot)
            if not isinstance(obj, dict):
                raise HubError("ledger snapshot is not a JSON object")
            state = LedgerState(
                balances=dict(obj["balances"]),  # type: ignore[arg-type]
                nonces=dict(obj["nonces"]),  # type: ignore[arg-type]
                tx_count=int(obj["tx_count"]),  # type: ignore[arg-type]
                equivocators=dict(obj["equivocators"]),  # type: ignore[arg-type]
            )
        except (NotCanonical, KeyError, TypeError, ValueError) as exc:
            raise HubError(f"ledger snapshot is unreadable: {exc}") from exc
        self._state = state
        self._hash = state.hash()
