"""`Mempool`: verified transactions waiting for a block. Pure and in memory.

Admission: the caller has verified the envelope (signature, chain); the mempool refuses
duplicates, non-transactions and what the application's `check_tx` refuses, and holds at most
`max_txs`. A transaction behind a pending one of the same sender (lower seq) is checked as
`queued`: only for what its predecessors cannot change, since they may be what makes it
valid (a device's next meter read chains to the pending one); the block re-checks it.

Proposal order: senders round-robin in order of their oldest pending transaction, each
sender's transactions by `seq`, so one busy gateway cannot starve the others and a
sender's transactions never overtake each other. After a block commits, included
transactions leave and the remaining ones of the same senders are re-checked.

Gaps: a gateway numbers its transactions one by one, so when its next pending seq is not
the one after its committed seq (`Application.gapless_next`), one was lost between broker
and validators. Committing the later one would make the lost one a replay for good (and a
device's later reads would no longer chain), so the later ones wait, up to `gap_hold_ms`
from their arrival, for the gateway to re-send the tail (`republish_s` on the gateway,
300 s by default, below the 600 s default hold). Waiting transactions are not proposed
and do not count in `has_txs`; when the hold runs out they go as they are. A missing seq
that this pool saw and refused (say, a read of a device not registered) is no loss: what
follows it goes at once, so one misconfigured device does not delay its gateway's others.

Except a seq refused because its sender was not registered yet: a gateway installed before
its `register` commits keeps re-sending its refused transactions, and a re-send can
straddle the registration, its first seq reaching this pool just before the `register`
block commits and the next just after. Were the next to start the gateway's chain, the
first would be a replay for good. So once the sender is registered, such a seq is a gap
like a lost one: what follows waits for the re-send, and the gateway's chain starts there.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

from hub.application import Application, Execution
from hub.errors import MempoolFull, TxRejected, Unregistered
from wire.consensus import Block
from wire.envelope import Envelope

__all__ = ["Mempool"]

REJECTED_MEMORY = 10_000
"""How many recent rejections `rejected()` remembers."""
RECHECK_ALL = 2_000
"""Up to this many pending transactions, all are re-checked after each block (a block may
carry a sender's transaction this pool never saw); above it, only the block's senders'."""
GAP_HOLD_MS = 600_000
"""Default longest wait of a gateway's transaction behind a missing seq."""
MAX_REFUSED_RUN = 64
"""Longest run of refused seqs a later transaction goes past without a wait."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Mempool:
    """Pending transactions of one validator."""

    def __init__(
        self,
        app: Application,
        max_txs: int = 50_000,
        gap_hold_ms: int = GAP_HOLD_MS,
        clock: Callable[[], int] = _wall_ms,
    ) -> None:
        """Start empty; `app` decides admission; `clock` (ms) times the gap holds."""
        self.app = app
        self.max_txs = max_txs
        self.gap_hold_ms = gap_hold_ms
        self.clock = clock
        self._arrived: dict[str, int] = {}
        self._refused_seqs: OrderedDict[tuple[str, int], None] = OrderedDict()
        # Refused only because the sender was not registered yet: kept apart, so a flood
        # of new keys cannot push other gateways' refusals out of memory.
        self._unregistered_seqs: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._by_id: dict[str, Envelope] = {}
        self._by_sender: dict[str, dict[int, str]] = {}
        self._order: OrderedDict[str, None] = OrderedDict()
        self._rejected: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_id)

    def has_txs(self) -> bool:
        """True when a transaction is ready to be proposed (not held behind a gap)."""
        if not self._by_id:
            return False
        now = self.clock()
        return any(next(self._ready(sender, now), None) for sender in self._order)

    def held(self) -> int:
        """How many pending transactions wait behind a missing seq of their sender."""
        now = self.clock()
        return sum(len(self._by_sender[s]) - len(list(self._ready(s, now))) for s in self._order)

    def get(self, tx_id: str) -> Envelope | None:
        """A pending transaction by id (also the chain's verified-tx lookup)."""
        return self._by_id.get(tx_id)

    def rejected(self, tx_id: str) -> str | None:
        """Why a recent transaction was refused or dropped, if it was."""
        return self._rejected.get(tx_id)

    def _reject(self, tx_id: str, reason: str) -> None:
        self._rejected[tx_id] = reason
        self._rejected.move_to_end(tx_id)
        while len(self._rejected) > REJECTED_MEMORY:
            self._rejected.popitem(last=False)

    def add(self, env: Envelope, tx_id: str | None = None) -> bool:
        """Admit a verified envelope.

        Returns:
            False if it was already pending, True if admitted.

        Raises:
            TxRejected: not a transaction, refused by the application, or the sender already
                has another pending transaction with this seq.
            MempoolFull: the pool holds `max_txs`.
        """
        tid = tx_id or env.message_id()
        if tid in self._by_id:
            return False
        try:
            self.app.check_tx(env, queued=self._queued(env))
        except TxRejected as exc:
            self._reject(tid, exc.reason)
            self._refused_seq(env, isinstance(exc, Unregistered))
            raise
        seqs = self._by_sender.get(env.sender, {})
        if env.seq in seqs:
            reason = f"seq {env.seq} of this sender is already pending in {seqs[env.seq][:16]}…"
            self._reject(tid, reason)
            raise TxRejected(reason)
        if len(self._by_id) >= self.max_txs:
            raise MempoolFull(f"mempool is full ({self.max_txs} transactions); retry later")
        self._by_id[tid] = env
        self._arrived[tid] = self.clock()
        self._by_sender.setdefault(env.sender, {})[env.seq] = tid
        if env.sender not in self._order:
            self._order[env.sender] = None
        self._rejected.pop(tid, None)
        return True

    def _queued(self, env: Envelope) -> bool:
        """Whether a pending transaction of the same sender comes before `env`."""
        return any(seq < env.seq for seq in self._by_sender.get(env.sender, ()))

    def _refused_seq(self, env: Envelope, unregistered: bool = False) -> None:
        key = (env.sender, env.seq)
        into, other = self._refused_seqs, self._unregistered_seqs
        if unregistered:
            into, other = other, into
        other.pop(key, None)
        into[key] = None
        into.move_to_end(key)
        while len(into) > REJECTED_MEMORY:
            into.popitem(last=False)

    def _start(self, sender: str, first: int) -> int:
        """Where a registered gateway's chain starts when nothing of it committed yet.

        At `first`, its lowest pending seq, unless this pool refused a lower seq of it
        (within `MAX_REFUSED_RUN`) only because it was not registered then: that one comes
        back with the gateway's re-send, and starts the chain.
        """
        earlier = [
            s
            for s in range(max(first - MAX_REFUSED_RUN, 0), first)
            if (sender, s) in self._unregistered_seqs
        ]
        return min(earlier, default=first)

    def _lost(self, sender: str, expected: int, seq: int) -> bool:
        """Whether one of seqs `expected`..`seq - 1` of `sender` was lost on the way.

        A seq this pool saw and refused is no loss: it will not come back valid. Unless it
        was refused because the sender was not registered then (the caller asks only about
        registered gateways): that one comes back valid with the gateway's re-send.
        """
        if seq - expected > MAX_REFUSED_RUN:
            return True
        return any((sender, s) not in self._refused_seqs for s in range(expected, seq))

    def _ready(self, sender: str, now_ms: int) -> Iterator[Envelope]:
        """`sender`'s pending transactions that may be proposed now, in seq order."""
        seqs = self._by_sender[sender]
        expected = self.app.gapless_next(sender)
        for seq in sorted(seqs):
            tid = seqs[seq]
            if expected == 0:  # a gateway's first transaction on chain may have any seq
                expected = self._start(sender, seq)
            if expected is not None and seq != expected and self._lost(sender, expected, seq):
                if now_ms - self._arrived[tid] < self.gap_hold_ms:
                    return  # wait for the missing seq; the rest of this sender waits too
            yield self._by_id[tid]
            expected = seq + 1 if expected is not None else None

    def reap(self, max_txs: int) -> Sequence[Envelope]:
        """Up to `max_txs` ready transactions in proposal order."""
        now = self.clock()
        queues = [list(self._ready(s, now)) for s in self._order]
        out: list[Envelope] = []
        depth = 0
        while len(out) < max_txs:
            layer = [q[depth] for q in queues if depth < len(q)]
            if not layer:
                break
            out.extend(layer[: max_txs - len(out)])
            depth += 1
        return out

    def _remove(self, tx_id: str) -> None:
        env = self._by_id.pop(tx_id, None)
        self._arrived.pop(tx_id, None)
        if env is None:
            return
        seqs = self._by_sender.get(env.sender)
        if seqs is not None:
            seqs.pop(env.seq, None)
            if not seqs:
                del self._by_sender[env.sender]
                self._order.pop(env.sender, None)

    def on_commit(self, block: Block, execution: Execution) -> None:
        """Drop what the block included; re-check the rest of its senders' transactions."""
        senders: set[str] = set()
        for result in execution.results:
            env = self._by_id.get(result.tx_id)
            if env is not None:
                senders.add(env.sender)
            self._remove(result.tx_id)
        if len(self._by_id) <= RECHECK_ALL:
            senders = set(self._by_sender)
        for sender in senders:
            seqs = self._by_sender.get(sender, {})
            kept = False  # a lower seq of this sender stays pending: the rest are queued
            for seq in sorted(seqs):
                tid = seqs[seq]
                env = self._by_id[tid]
                try:
                    self.app.check_tx(env, queued=kept)
                except TxRejected as exc:
                    self._remove(tid)
                    self._reject(tid, exc.reason)
                    self._refused_seq(env, isinstance(exc, Unregistered))
                    continue
                kept = True
