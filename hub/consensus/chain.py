"""`Chain`: the committed head plus the application, and the rules a block must obey.

Pure and in memory. It builds blocks (proposer), checks them (every validator, before it
prevotes: structure, certificate of the previous block, transactions, evidence, and the state
hash after executing them), and applies a finalized block. Persisting is the shell's job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hub.application import Application, BlockContext, Execution
from hub.consensus.block import (
    EMPTY_COMMIT,
    block_hash,
    commit_hash,
    evidence_id,
    merkle_root,
    tx_id,
    validators_hash,
    verify_commit,
)
from hub.consensus.evidence import InvalidEvidence, Offence, check_evidence
from hub.errors import InvalidBlock, InvalidCommit
from wire.consensus import Block, Commit, EnergySummary, Evidence, Header
from wire.envelope import Envelope, parse
from wire.errors import InvalidMessage

__all__ = ["Chain", "Head"]

TxLookup = Callable[[str], Envelope | None]


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed block, as much as consensus needs of it."""

    height: int
    """Height of the last committed block (0 at genesis)."""
    hash: str
    """Its hash (the genesis hash at height 0)."""
    time_ms: int
    """Its time (genesis time at height 0), unix ms."""
    state_hash: str
    """Application state hash after it."""
    commit: Commit
    """Its commit certificate (`EMPTY_COMMIT` at height 0)."""
    validators: tuple[str, ...]
    """Validator set for the next height (sorted)."""
    signers: tuple[str, ...]
    """Validator set that signed this block's certificate (sorted)."""


class Chain:
    """Committed head and application of one node; checks, builds and applies blocks."""

    def __init__(
        self,
        chain_id: str,
        app: Application,
        head: Head,
        *,
        max_future_ms: int = 10_000,
        tx_lookup: TxLookup | None = None,
    ) -> None:
        """Wrap the committed `head` and the `app` whose committed state matches it.

        Args:
            chain_id: the chain id every block and message must carry.
            app: the application, at the state after `head`.
            head: the last committed block.
            max_future_ms: how far past the checker's clock a block time may lie.
            tx_lookup: finds an already verified envelope by transaction id (the mempool),
                so block checks need not verify signatures twice.
        """
        self.chain_id = chain_id
        self.app = app
        self._head = head
        self.max_future_ms = max_future_ms
        self._lookup = tx_lookup
        self._checked: dict[str, tuple[Block, Execution]] = {}

    @property
    def head(self) -> Head:
        """The last committed block."""
        return self._head

    @property
    def height(self) -> int:
        """Height of the last committed block."""
        return self._head.height

    def _parse_txs(self, block: Block) -> list[Envelope]:
        envs: list[Envelope] = []
        seen: set[str] = set()
        for i, text in enumerate(block.txs):
            tid = tx_id(text)
            if tid in seen:
                raise InvalidBlock(block.header.height, f"tx {i} ({tid[:12]}…) appears twice")
            seen.add(tid)
            env = self._lookup(tid) if self._lookup is not None else None
            if env is None:
                try:
                    env = parse(text.encode("utf-8"), self.chain_id)
                except InvalidMessage as exc:
                    raise InvalidBlock(block.header.height, f"tx {i}: {exc}") from exc
                if env.to_bytes() != text.encode("utf-8"):
                    raise InvalidBlock(block.header.height, f"tx {i} is not canonical JSON")
            envs.append(env)
        return envs

    def _check_evidence(self, block: Block) -> list[Offence]:
        offences: list[Offence] = []
        for ev in block.evidence:
            try:
                offence = check_evidence(self.chain_id, ev, self._head.validators)
            except InvalidEvidence as exc:
                raise InvalidBlock(block.header.height, f"evidence: {exc}") from exc
            if offence in offences:
                raise InvalidBlock(block.header.height, "the same offence appears twice")
            offences.append(offence)
        return offences

    def _context(self, header: Header, evidence: tuple[Evidence, ...]) -> BlockContext:
        return BlockContext(
            chain=self.chain_id,
            height=header.height,
            time_ms=header.time_ms,
            proposer=header.proposer,
            validators=self._head.validators,
            evidence=evidence,
        )

    def build(
        self,
        time_ms: int,
        proposer: str,
        txs: Sequence[Envelope],
        evidence: Sequence[Evidence] = (),
    ) -> tuple[Block, Execution]:
        """Build and execute the next block.

        Args:
            time_ms: proposer's clock; raised to the previous block time + 1 if not above it.
            proposer: the proposer's key.
            txs: verified transactions, in order.
            evidence: verified evidence to commit.

        Returns:
            The block and its execution (already cached for `check`).
        """
        head = self._head
        height = head.height + 1
        time_ms = max(time_ms, head.time_ms + 1)
        ev = tuple(sorted(evidence, key=evidence_id))
        placeholder = Header(
            chain=self.chain_id,
            height=height,
            prev=head.hash,
            time_ms=time_ms,
            proposer=proposer,
            tx_root=merkle_root([env.message_id() for env in txs]),
            state_hash=head.state_hash,
            validators_hash=validators_hash(head.validators),
            next_validators_hash=validators_hash(head.validators),
            last_commit_hash=commit_hash(head.commit),
            evidence_hash=merkle_root([evidence_id(e) for e in ev]),
            energy=EnergySummary(),
        )
        execution = self.app.execute(self._context(placeholder, ev), txs)
        header = Header(
            chain=placeholder.chain,
            height=height,
            prev=placeholder.prev,
            time_ms=time_ms,
            proposer=proposer,
            tx_root=placeholder.tx_root,
            state_hash=execution.state_hash,
            validators_hash=placeholder.validators_hash,
            next_validators_hash=validators_hash(execution.validators),
            last_commit_hash=placeholder.last_commit_hash,
            evidence_hash=placeholder.evidence_hash,
            energy=execution.energy,
        )
        block = Block(
            header=header,
            txs=tuple(env.to_bytes().decode("utf-8") for env in txs),
            evidence=ev,
            last_commit=head.commit,
        )
        self._checked[block_hash(block)] = (block, execution)
        return block, execution

    def check(self, block: Block, now_ms: int | None = None) -> Execution:
        """Check `block` as the next block and execute it (without committing).

        Args:
            block: the candidate.
            now_ms: the checker's clock; a block time further than `max_future_ms` ahead is
                refused. None skips that check (blocks already finalized by a certificate).

        Raises:
            InvalidBlock: saying which rule the block breaks.
        """
        bhash = block_hash(block)
        cached = self._checked.get(bhash)
        if cached is not None and cached[0] == block:  # same header, and the same body too
            return cached[1]
        head, h = self._head, block.header
        height = head.height + 1

        def bad(reason: str) -> InvalidBlock:
            return InvalidBlock(h.height, reason)

        if h.chain != self.chain_id:
            raise bad(f"chain {h.chain!r} is not {self.chain_id!r}")
        if h.height != height:
            raise bad(f"expected height {height}")
        if h.prev != head.hash:
            raise bad(f"prev {h.prev[:12]}… is not the head {head.hash[:12]}…")
        if h.time_ms <= head.time_ms:
            raise bad(f"time {h.time_ms} is not after the previous block's {head.time_ms}")
        if now_ms is not None and h.time_ms > now_ms + self.max_future_ms:
            raise bad(f"time {h.time_ms} is more than {self.max_future_ms} ms in the future")
        if h.proposer not in head.validators:
            raise bad(f"proposer {h.proposer[:12]}… is not a validator")
        if h.validators_hash != validators_hash(head.validators):
            raise bad("validators_hash does not match the validator set")
        if h.last_commit_hash != commit_hash(block.last_commit):
            raise bad("last_commit_hash does not match the certificate carried")
        if head.height == 0:
            if block.last_commit != EMPTY_COMMIT:
                raise bad("block 1 must carry the empty certificate")
        else:
            verify_commit(self.chain_id, block.last_commit, head.height, head.hash, head.signers)
        txs = self._parse_txs(block)
        if h.tx_root != merkle_root([tx_id(t) for t in block.txs]):
            raise bad("tx_root does not match the transactions")
        self._check_evidence(block)
        if h.evidence_hash != merkle_root([evidence_id(e) for e in block.evidence]):
            raise bad("evidence_hash does not match the evidence")
        execution = self.app.execute(self._context(h, block.evidence), txs)
        if execution.state_hash != h.state_hash:
            raise bad(f"state_hash {h.state_hash[:12]}… != {execution.state_hash[:12]}… executed")
        if h.next_validators_hash != validators_hash(execution.validators):
            raise bad("next_validators_hash does not match the executed validator set")
        if h.energy != execution.energy:
            raise bad("energy summary does not match the executed one")
        self._checked[bhash] = (block, execution)
        return execution

    def check_certified(self, block: Block, commit: Commit) -> Execution | None:
        """Execute a finalized `block` (from a peer or the blocks topic) as the next one.

        Returns:
            Its execution, or None when `commit` is no certificate of it by 2f+1 of the
            current validators (the caller ignores such a block).

        Raises:
            InvalidBlock: certified, but it does not execute to its header here: this node's
                state has diverged and it must stop.
        """
        try:
            verify_commit(
                self.chain_id, commit, self.height + 1, block_hash(block), self._head.validators
            )
        except InvalidCommit:
            return None
        return self.check(block, None)

    def apply(self, block: Block, commit: Commit, execution: Execution) -> None:
        """Commit a finalized block whose `execution` came from `check` or `build`."""
        self.app.commit(execution)
        self._head = Head(
            height=block.header.height,
            hash=block_hash(block),
            time_ms=block.header.time_ms,
            state_hash=execution.state_hash,
            commit=commit,
            validators=execution.validators,
            signers=self._head.validators,
        )
        self._checked.clear()
