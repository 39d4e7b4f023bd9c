"""`EnergyApp`: the hub's deterministic state machine behind the consensus `Application`.

A block runs in three steps on an `Overlay` of the committed store:

1. begin: count consensus equivocation evidence, close votes and execute due proposals,
   close the books whose gate closure passed, settle intervals whose grace period ended;
2. the transactions, in block order: the sender's seq must be above its last committed
   one (a transaction that gets that far consumes its seq, whatever its outcome), then the
   kind's handler runs (`TxRejected` -> the transaction failed with that reason);
3. end: share the fee pool among the block's validator set, apply validator changes that
   are due, record height and time.

`commit` applies the overlay; nothing is copied wholesale. `check_tx` runs the same handler
on a throwaway overlay against the committed state at the last block time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from hub.application import BlockContext, Execution, TxResult
from hub.errors import HubError, TxRejected
from hub.genesis import Genesis
from hub.state import accounts
from hub.state.accounts import AUTHORITY, INSTALLER, account, bump_seq, distribute_fees
from hub.state.book import Book, Order
from hub.state.certificates import claim_certificate, transfer_certificate
from hub.state.governance import apply_validator_changes, govern, propose, vote
from hub.state.market import cancel, close_gates, interval_info, place_order
from hub.state.meters import apply_meter_read
from hub.state.params import params_from_genesis
from hub.state.record import from_json, to_json
from hub.state.registry import gateway, register
from hub.state.settlement import Statement, energy_summary, settle_due
from hub.state.state import INDEXES, SCHEMA, Meta, State
from hub.state.store import Overlay, Store
from wire import canonical
from wire.envelope import Envelope
from wire.errors import NotCanonical
from wire.kinds import (
    Bid,
    Cancel,
    CertTransfer,
    Claim,
    MeterRead,
    Offer,
    Register,
    Transfer,
    Vote,
)
from wire.kinds import Proposal as ProposalBody

__all__ = ["EnergyApp", "apply_tx"]


def _transfer(st: State, tx: Envelope, body: Transfer) -> None:
    fee = st.params.tx_fee
    accounts.require_funds(st, tx.sender, body.amount + fee, f"a transfer of {body.amount} satang")
    accounts.charge_fee(st, tx.sender)
    accounts.move(st, tx.sender, body.to, body.amount)


def _dispatch(st: State, tx: Envelope) -> str | None:
    """Run the handler of `tx`'s kind; a returned reason means failed-with-effects."""
    body: Any = tx.body
    if isinstance(body, MeterRead):
        return apply_meter_read(st, tx, body)
    if isinstance(body, Offer | Bid):
        place_order(st, tx, body)
    elif isinstance(body, Cancel):
        cancel(st, tx, body)
    elif isinstance(body, Transfer):
        _transfer(st, tx, body)
    elif isinstance(body, Register):
        register(st, tx, body)
    elif isinstance(body, ProposalBody):
        propose(st, tx, body)
    elif isinstance(body, Vote):
        vote(st, tx, body)
    elif isinstance(body, CertTransfer):
        transfer_certificate(st, tx.sender, body.cert, body.to, body.energy_wh, tx.message_id())
    elif isinstance(body, Claim):
        claim_certificate(
            st, tx.sender, body.cert, body.energy_wh, tx.message_id(), body.beneficiary
        )
    else:
        raise TxRejected(f"{tx.kind} is not a transaction the state machine executes")
    return None


def _admit(st: State, tx: Envelope) -> None:
    """Checks that decide whether `tx` may consume a seq at all."""
    meta = st.meta()
    if tx.chain != meta.chain:
        raise TxRejected(f"transaction is for chain {tx.chain!r}, this chain is {meta.chain!r}")
    if tx.stream != "tx":
        raise TxRejected(f"{tx.kind} is not a transaction (stream {tx.stream})")
    last = account(st, tx.sender).seq
    if tx.seq <= last:
        raise TxRejected(
            f"replayed or out of order: seq {tx.seq} is not above the last committed seq "
            f"{last} of {tx.sender[:16]}…"
        )


def apply_tx(st: State, tx: Envelope) -> TxResult:
    """Execute one transaction on `st` and say how it went."""
    tid = tx.message_id()
    try:
        _admit(st, tx)
    except TxRejected as exc:
        return TxResult(tid, ok=False, reason=exc.reason)
    try:
        reason = _dispatch(st, tx)
    except TxRejected as exc:
        reason = exc.reason
    bump_seq(st, tx.sender, tx.seq)
    return TxResult(tid, ok=reason is None, reason=reason or "")


def _begin(st: State, ctx: BlockContext) -> None:
    if ctx.evidence:
        meta = st.meta()
        counts = dict(meta.equivocations)
        for ev in ctx.evidence:
            first = canonical.decode(ev.first.encode("utf-8"))
            sender = first.get("from") if isinstance(first, dict) else None
            if isinstance(sender, str):
                counts[sender] = counts.get(sender, 0) + 1
        st.set_meta(dataclasses.replace(meta, equivocations=tuple(sorted(counts.items()))))
    govern(st)
    close_gates(st)
    settle_due(st)


def _end(st: State, ctx: BlockContext) -> None:
    distribute_fees(st, tuple(ctx.validators))
    apply_validator_changes(st)
    meta = st.meta()
    st.set_meta(dataclasses.replace(meta, height=ctx.height, time_ms=ctx.time_ms))


class EnergyApp:
    """The GridTokenX state machine; implements `hub.application.Application`.

    Accounts, registry, meters, market, settlement, certificates and governance.
    """

    def __init__(self, genesis: Genesis) -> None:
        """The state at genesis.

        Raises:
            ConfigError: a genesis parameter is out of range.
        """
        self.genesis = genesis
        self._store = self._genesis_store(genesis)

    @staticmethod
    def _genesis_store(genesis: Genesis) -> Store:
        params, feeders = params_from_genesis(genesis.params)
        store = Store(SCHEMA, INDEXES)
        store.load(
            "meta",
            "chain",
            Meta(
                chain=genesis.chain,
                time_ms=genesis.time_ms,
                validators=tuple(sorted(genesis.validators)),
            ),
        )
        store.load("params", "current", params)
        for zone, cap in sorted(feeders.items()):
            store.load("feeders", zone, cap)
        for key, amount in sorted(genesis.balances.items()):
            if amount:
                store.load("accounts", key, accounts.Account(balance=amount))
        for key in sorted(genesis.authorities):
            store.load("roles", key, accounts.Roles((AUTHORITY, INSTALLER)))
        return store

    # -- Application ---------------------------------------------------------------------

    def state_hash(self) -> str:
        """Hash of the committed state, 64 hex."""
        return self._store.state_hash()

    def validators(self) -> tuple[str, ...]:
        """Validator set for the next block."""
        return self.view().meta().validators

    def view(self) -> State:
        """A read-only view of the committed state (for queries; never write to it)."""
        meta = self._store.tables["meta"]["chain"]
        return State(Overlay(self._store), meta.height, meta.time_ms)

    def check_tx(self, tx: Envelope, *, queued: bool = False) -> None:
        """Mempool admission: would `tx` take effect on the committed state now?

        Failed-with-effects outcomes (meter-read evidence, a read whose values are refused
        but whose chain position is right) are admitted: they must reach the chain.
        A `queued` transaction (the sender's lower seqs are pending) is checked only for
        chain, stream and replay: its predecessors decide the rest (a gateway draining a
        backlog sends each device's reads back to back, each `prev` the read before).

        Raises:
            TxRejected: with the reason the sender can act on.
        """
        st = self.view()
        if queued:
            _admit(st, tx)
            return
        # The next block's time is unknown: orders are judged at the last block time + 1 ms;
        # a meter read may be up to one interval ahead (gateways send it right after the
        # boundary, maybe before a block has passed it). The block re-checks everything.
        st.time_ms += st.params.interval_ms if isinstance(tx.body, MeterRead) else 1
        _admit(st, tx)
        _dispatch(st, tx)

    def gapless_next(self, sender: str) -> int | None:
        """Committed seq + 1 for a registered gateway (0 before its first), else None.

        A gateway allocates seqs one by one (edge/outbox.py), so a gap in its seqs is a
        message lost between broker and validators. Its first transaction on chain may have
        any seq (its outbox started at its creation time in unix ms).
        """
        st = self.view()
        if gateway(st, sender) is None:
            return None
        seq = account(st, sender).seq
        return seq + 1 if seq else 0

    def execute(self, ctx: BlockContext, txs: Sequence[Envelope]) -> Execution:
        """Execute a block on an overlay of the committed state; never changes it."""
        st = State(Overlay(self._store), ctx.height, ctx.time_ms)
        _begin(st, ctx)
        results = tuple(apply_tx(st, tx) for tx in txs)
        _end(st, ctx)
        energy = energy_summary(st)
        validators = st.meta().validators
        state_hash = st.ov.finish()
        return Execution(
            state_hash=state_hash,
            results=results,
            energy=energy,
            validators=validators,
            post_state=st.ov,
        )

    def commit(self, execution: Execution) -> None:
        """Adopt the post-state of an `Execution` this app's `execute` returned.

        Raises:
            HubError: the execution is from another app or built on an older state.
        """
        ov = execution.post_state
        if not isinstance(ov, Overlay):
            raise HubError("execution was not produced by an EnergyApp")  # a bug
        self._store.apply(ov)

    def snapshot(self) -> bytes:
        """The committed state as canonical JSON: `{"tables": {name: {key: value}}}`."""
        tables = {
            name: {key: to_json(value) for key, value in rows.items()}
            for name, rows in self._store.tables.items()
        }
        return canonical.encode({"v": 1, "tables": tables})

    def state_changes(self, execution: Execution) -> dict[str, bytes | None]:
        """Rows the committed `execution` changed: `"table/key"` -> canonical JSON or None.

        Genesis rows are never stored: `restore_rows` starts from the genesis state.

        Only what the block's journal touched is encoded, so persisting a block costs in
        proportion to the block, not to the state.
        """
        ov = execution.post_state
        if not isinstance(ov, Overlay):
            raise HubError("execution was not produced by an EnergyApp")  # a bug
        out: dict[str, bytes | None] = {}
        for table, changes in ov.changes.items():
            for key, value in changes.items():
                out[f"{table}/{key}"] = None if value is None else canonical.encode(to_json(value))
        return out

    @staticmethod
    def settled_statements(execution: Execution) -> list[Statement]:
        """The interval statements a block wrote (settled), oldest interval first."""
        ov = execution.post_state
        if not isinstance(ov, Overlay):
            return []
        found = [v for v in ov.changes["statements"].values() if isinstance(v, Statement)]
        return sorted(found, key=lambda s: s.interval)

    def restore_rows(self, rows: Iterable[tuple[str, bytes | None]]) -> None:
        """Replace the committed state by genesis plus stored rows (`state_changes`).

        Rows are applied on top of the genesis state in any order (one row per key): bytes
        replace an entry, None removes it.

        Raises:
            HubError: a row names an unknown table or does not decode.
        """
        store = self._genesis_store(self.genesis)
        for row_key, data in rows:
            table, sep, key = row_key.partition("/")
            if not sep or table not in SCHEMA:
                raise HubError(f"stored state row {row_key[:60]!r} names no EnergyApp table")
            if data is None:
                store.unload(table, key)
                continue
            try:
                value = from_json(SCHEMA[table], canonical.decode(data))
            except (NotCanonical, KeyError, TypeError, ValueError) as exc:
                raise HubError(f"stored state row {row_key[:60]!r} is unreadable: {exc}") from exc
            store.load(table, key, value)
        self._adopt(store)

    def _adopt(self, store: Store) -> None:
        _rebuild_books(store)
        store.version = self._store.version + 1
        self._store = store

    def restore(self, snapshot: bytes) -> None:
        """Replace the committed state by one `snapshot()` returned.

        Raises:
            HubError: the snapshot is unreadable or not from this state machine.
        """
        try:
            obj = canonical.decode(snapshot)
        except NotCanonical as exc:
            raise HubError(f"state snapshot is not canonical JSON: {exc}") from exc
        if (
            not isinstance(obj, dict)
            or obj.get("v") != 1
            or not isinstance(obj.get("tables"), dict)
        ):
            raise HubError("state snapshot is not an EnergyApp snapshot (v 1)")
        store = Store(SCHEMA, INDEXES)
        tables: Any = obj["tables"]
        if set(tables) != set(SCHEMA):
            raise HubError(f"state snapshot tables {sorted(tables)} != {sorted(SCHEMA)}")
        for name, rows in tables.items():
            if not isinstance(rows, dict):
                raise HubError(f"state snapshot table {name} is not an object")
            for key, value in rows.items():
                store.load(name, key, from_json(SCHEMA[name], value))
        self._adopt(store)


def _rebuild_books(store: Store) -> None:
    """Rebuild the derived order-book indexes from the open orders."""
    st = State(Overlay(store), 0, 0)
    for interval in st.meta().open_intervals:
        info = interval_info(st, interval)
        if info.closed:
            continue
        book = Book()
        for n in range(info.orders):
            order: Order = store.tables["orders"][store.tables["iorders"][f"{interval}:{n:08d}"]]
            if order.status == "open":
                book.add(order)
        store.books[interval] = book
