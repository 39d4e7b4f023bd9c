"""`Replica`: one validator's Tendermint state machine (arXiv:1807.04938, Algorithm 1).

Fed verified messages, timer events, finalized blocks and "transactions arrived", it returns
`Action`s. The upon-rules of the paper map to `_rules` (numbers are the paper's lines):

* 22 / 28  proposal in step propose -> prevote the block if valid and not locked on another
  (or locked no later than its proof-of-lock round), else nil;
* 34       2f+1 prevotes of any kind -> prevote timeout;
* 36       proposal + 2f+1 prevotes for it -> lock (if in prevote), precommit it, valid value;
* 44       2f+1 nil prevotes -> precommit nil;
* 47       2f+1 precommits of any kind -> precommit timeout;
* 49       proposal + 2f+1 precommits for it in any round -> commit;
* 55       f+1 messages from a later round -> jump to that round.

Beyond the paper: an idle chain waits at round 0 of a height until transactions, evidence,
a peer's message or the heartbeat give it work; a replica that made no progress for
`rebroadcast_ms` re-sends what it signed in the round (the gossip the paper assumes); and one
that sees a validator at a later height asks its shell to sync blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nacl.signing import SigningKey

from hub.application import Execution
from hub.consensus.action import (
    Action,
    Broadcast,
    Committed,
    Persist,
    SetTimer,
    Sync,
    Timeout,
)
from hub.consensus.block import block_hash, commit_signatures
from hub.consensus.chain import Chain
from hub.consensus.evidence import InvalidEvidence, Offence, check_evidence, make_evidence
from hub.consensus.params import Params, Step
from hub.consensus.vote import PRECOMMIT, PREVOTE, VoteBook
from hub.consensus.wal import WalRecord
from hub.errors import InvalidBlock
from wire.consensus import (
    BftBlock,
    BftEvidence,
    BftPrecommit,
    BftPrevote,
    BftProposal,
    Block,
    Commit,
    Evidence,
)
from wire.envelope import Envelope, sign
from wire.keys import public_hex
from wire.struct import Body

__all__ = ["Replica", "TxSource"]

FUTURE_HEIGHTS = 2
"""Messages up to this many heights ahead are kept for when this replica gets there."""
FUTURE_LIMIT = 2_000
"""Most messages kept per future height."""
EXTRA_BLOCKS = 2
"""Other blocks kept per round from a proposer that signed more than one."""
REBROADCAST_ROUNDS = 3
"""A stuck replica re-sends its votes of this many most recent rounds."""
GUARD_ROUNDS = 3
"""A replica that starts without a write-ahead record on a chain past genesis signs
nothing at its first height below this round (see `Replica.start`)."""


class TxSource(Protocol):
    """Where a proposer takes transactions from (the mempool)."""

    def has_txs(self) -> bool:
        """True when transactions wait to be proposed."""
        ...

    def reap(self, max_txs: int) -> Sequence[Envelope]:
        """Up to `max_txs` verified transactions, in proposal order (per sender by seq)."""
        ...

    def on_commit(self, block: Block, execution: Execution) -> None:
        """Forget transactions the finalized block included."""
        ...


class Replica:
    """The consensus state machine of one validator. Not thread-safe; one shell drives it."""

    def __init__(
        self,
        key: SigningKey,
        chain: Chain,
        txs: TxSource,
        params: Params,
        *,
        wal: WalRecord | None = None,
        seq: int = 0,
    ) -> None:
        """Create a replica on top of the committed `chain`.

        Args:
            key: this validator's signing key.
            chain: committed head and application.
            txs: the mempool.
            params: timing and limits.
            wal: the last write-ahead record, when restarting.
            seq: lowest consensus-stream seq to continue above (e.g. unix ms * 1000).
        """
        self.key = key
        self.me = public_hex(key)
        self.chain = chain
        self.txs = txs
        self.params = params
        self.seq = max(seq, wal.seq if wal is not None else 0)
        self._wal = wal
        self._out: list[Action] = []
        self.pending_evidence: dict[Offence, Evidence] = {}
        self._future: dict[int, list[Envelope]] = {}
        self._ahead: dict[str, int] = {}
        self._last_sync_ms = -(10**18)
        self._marker: tuple[int, int, str] = (-1, -1, "")
        self._behind: set[str] = set()
        self._active = False
        self._last: BftBlock | None = None
        self.guard_height: int | None = None
        """The height this replica does not sign at below `GUARD_ROUNDS` (None: none)."""
        self._reset_height()

    # ------------------------------------------------------------------ state

    def _reset_height(self) -> None:
        head = self.chain.head
        self.height = head.height + 1
        self.validators = head.validators
        self.round = 0
        self.step: Step = "propose"
        self.locked_round, self.locked_hash = -1, ""
        self.valid_round, self.valid_hash = -1, ""
        self.votes = VoteBook(self.height, self.validators)
        self.proposals: dict[int, BftProposal] = {}
        self._proposal_envs: dict[int, Envelope] = {}
        self._proposal_hash: dict[int, str] = {}
        self._block_envs: dict[str, Envelope] = {}
        self._extra_blocks: dict[int, int] = {}
        self.blocks: dict[str, Block] = {}
        self._invalid: set[str] = set()
        self._signed: dict[tuple[str, int], Envelope] = {}
        self._prevote_timer: set[int] = set()
        self._precommit_timer: set[int] = set()
        self._locked_in: set[int] = set()
        self._going = False
        self._ahead = {k: v for k, v in self._ahead.items() if v > self.height}

    def proposer(self, height: int, round_: int) -> str:
        """The proposer of `round_` at `height`: validators in key order, rotating."""
        return self.validators[(height + round_) % len(self.validators)]

    def _record(self) -> WalRecord:
        return WalRecord(
            height=self.height,
            round=self.round,
            locked_round=self.locked_round,
            locked_hash=self.locked_hash,
            valid_round=self.valid_round,
            valid_hash=self.valid_hash,
            seq=self.seq,
            signed=tuple(self._signed.values()),
        )

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ inputs

    def start(self, now_ms: int) -> list[Action]:
        """Begin (or resume after a restart) at the height above the committed head.

        Before `start`, a replica only applies finalized blocks (`on_block`), signing nothing:
        a node that was behind catches up first, so it never votes at a height it has
        already voted at in a life it does not remember.
        """
        self._active = True
        self._out.append(
            SetTimer(Timeout("rebroadcast", 0, 0), now_ms + self.params.rebroadcast_ms)
        )
        wal, self._wal = self._wal, None
        if wal is None and self.chain.head.height > 0:
            # No record of what this key signed, on a chain that is running: its data may
            # have been wiped while it was voting at this very height. It sits out the
            # first rounds here (never two votes in one round); the others, or a later
            # round, carry on. A new network starts at genesis with no records: no guard.
            self.guard_height = self.height
        if wal is not None and wal.height == self.height:
            self._restore(wal, now_ms)
        else:
            self._start_round(0, now_ms)
        self._rules(now_ms)
        return self._take()

    def _restore(self, wal: WalRecord, now_ms: int) -> None:
        self.locked_round, self.locked_hash = wal.locked_round, wal.locked_hash
        self.valid_round, self.valid_hash = wal.valid_round, wal.valid_hash
        for env in wal.signed:
            body = env.body
            if isinstance(body, BftProposal | BftPrevote | BftPrecommit):
                self._signed[(env.kind, body.round)] = env
                self._accept(env, now_ms, rules=False)
                self._out.append(Broadcast(env))
        self._start_round(wal.round, now_ms)

    def on_txs(self, now_ms: int) -> list[Action]:
        """Transactions arrived in an empty mempool: an idle round 0 gets going."""
        self._go(now_ms)
        self._rules(now_ms)
        return self._take()

    def on_message(self, env: Envelope, now_ms: int) -> list[Action]:
        """Handle a verified consensus envelope from the network (own echoes are harmless)."""
        self._accept(env, now_ms, rules=True)
        return self._take()

    def on_block(self, block: Block, commit: Commit, now_ms: int) -> list[Action]:
        """Apply a finalized block fetched from a peer or the blocks topic, if it is next.

        Raises:
            InvalidBlock: the block carries a valid certificate but does not execute to its
                header here: this node's state has diverged and it must stop.
        """
        self._on_block(block, commit, now_ms)
        return self._take()

    def _on_block(self, block: Block, commit: Commit, now_ms: int) -> None:
        if block.header.height > self.height:
            self._ahead[block.header.proposer] = block.header.height
            return
        if block.header.height < self.height:
            return
        execution = self.chain.check_certified(block, commit)
        if execution is None:
            return
        self._commit(block, commit, execution, announce=False, now_ms=now_ms)
        self._rules(now_ms)

    def on_timeout(self, timeout: Timeout, now_ms: int) -> list[Action]:
        """Handle a timer set by a `SetTimer` action."""
        kind, current = timeout.kind, (timeout.height, timeout.round) == (self.height, self.round)
        if kind == "rebroadcast":
            self._tick(now_ms)
        elif kind == "heartbeat":
            if timeout.height == self.height:
                self._go(now_ms)
        elif kind == "propose" and current and self.step == "propose":
            self._vote(PREVOTE, "", now_ms)
            self.step = "prevote"
        elif kind == "prevote" and current and self.step == "prevote":
            self._vote(PRECOMMIT, "", now_ms)
            self.step = "precommit"
        elif kind == "precommit" and current:
            self._start_round(self.round + 1, now_ms)
        self._rules(now_ms)
        return self._take()

    # ------------------------------------------------------------------ messages

    def _accept(self, env: Envelope, now_ms: int, *, rules: bool) -> None:
        body = env.body
        if isinstance(body, BftBlock):
            self._on_block(body.block, body.commit, now_ms)
            return
        if isinstance(body, BftEvidence):
            self._add_evidence(body.evidence, now_ms)
            return
        if not isinstance(body, BftProposal | BftPrevote | BftPrecommit):
            return
        if env.sender not in self.validators or env.chain != self.chain.chain_id:
            return
        if body.height > self.height:
            self._ahead[env.sender] = max(self._ahead.get(env.sender, 0), body.height)
            if body.height <= self.height + FUTURE_HEIGHTS:
                queue = self._future.setdefault(body.height, [])
                if len(queue) < FUTURE_LIMIT:
                    queue.append(env)
            return
        if body.height < self.height:
            if body.height == self.height - 1 and env.sender != self.me:
                self._behind.add(env.sender)
            return
        if isinstance(body, BftProposal):
            self._on_proposal(env, body)
        else:
            added = self.votes.add(env)
            if added.conflict is not None:
                self._add_evidence(make_evidence(added.conflict, env), now_ms, gossip=True)
        if env.sender != self.me:
            self._go(now_ms)
        if rules:
            self._rules(now_ms)

    def _on_proposal(self, env: Envelope, body: BftProposal) -> None:
        if env.sender != self.proposer(body.height, body.round) or body.pol_round >= body.round:
            return
        bhash = block_hash(body.block)
        first = body.round not in self.proposals
        if not first and (
            bhash in self._block_envs or self._extra_blocks.get(body.round, 0) >= EXTRA_BLOCKS
        ):
            return
        if first:
            # The first proposal of a round is the one the rules act on.
            self.votes.note(body.round, env.sender)
            self.proposals[body.round] = body
            self._proposal_envs[body.round] = env
            self._proposal_hash[body.round] = bhash
        else:
            # An equivocating proposer's other block: keep it, since honest validators may
            # lock on it and only a replica holding it can re-propose it.
            self._extra_blocks[body.round] = self._extra_blocks.get(body.round, 0) + 1
        self._block_envs.setdefault(bhash, env)
        stored = self.blocks.setdefault(bhash, body.block)
        if stored != body.block and bhash in self._invalid:
            # Same header, other body: the stored one was a forgery; try this one.
            self.blocks[bhash] = body.block
            self._invalid.discard(bhash)

    def _add_evidence(self, evidence: Evidence, now_ms: int, *, gossip: bool = False) -> None:
        try:
            offence = check_evidence(self.chain.chain_id, evidence, self.validators)
        except InvalidEvidence:
            return
        if offence in self.pending_evidence:
            return
        self.pending_evidence[offence] = evidence
        if gossip:
            self._broadcast(BftEvidence(evidence=evidence), now_ms)

    # ------------------------------------------------------------------ signing

    def _sign(self, body: Body, now_ms: int) -> Envelope:
        self.seq += 1
        return sign(self.key, self.chain.chain_id, body, self.seq, max(now_ms, 0))

    def _broadcast(self, body: Body, now_ms: int) -> None:
        self._out.append(Broadcast(self._sign(body, now_ms)))

    def _signed_once(self, kind: str, body: Body, now_ms: int) -> None:
        """Broadcast a proposal or vote, signing it unless one was signed for this round.

        Never two in one round; nothing at a guarded height's first rounds.
        """
        round_ = getattr(body, "round", 0)
        existing = self._signed.get((kind, round_))
        if existing is not None:
            self._out.append(Broadcast(existing))
            return
        if self.height == self.guard_height and round_ < GUARD_ROUNDS:
            return
        env = self._sign(body, now_ms)
        self._signed[(kind, round_)] = env
        self._out.append(Persist(self._record()))
        self._out.append(Broadcast(env))
        self._accept(env, now_ms, rules=False)

    def _vote(self, kind: str, block: str, now_ms: int) -> None:
        cls = BftPrevote if kind == PREVOTE else BftPrecommit
        self._signed_once(kind, cls(height=self.height, round=self.round, block=block), now_ms)

    # ------------------------------------------------------------------ rounds

    def _work(self, now_ms: int) -> bool:
        return (
            self.round > 0
            or self.txs.has_txs()
            or bool(self.pending_evidence)
            or now_ms >= self.chain.head.time_ms + self.params.heartbeat_ms
        )

    def _start_round(self, round_: int, now_ms: int) -> None:
        self.round = round_
        self.step = "propose"
        self._going = False
        if not self._active:
            return  # catching up before `start`: apply blocks, sign nothing
        if self._work(now_ms):
            self._go(now_ms)
        else:
            at = self.chain.head.time_ms + self.params.heartbeat_ms
            self._out.append(SetTimer(Timeout("heartbeat", self.height, round_), at))

    def _go(self, now_ms: int) -> None:
        """Leave the idle wait of a round: propose, or start waiting for the proposal."""
        if self._going or self.step != "propose" or not self._active:
            return
        self._going = True
        if self.proposer(self.height, self.round) == self.me:
            self._propose(now_ms)
        else:
            at = now_ms + self.params.timeout("propose", self.round)
            self._out.append(SetTimer(Timeout("propose", self.height, self.round), at))

    def _propose(self, now_ms: int) -> None:
        if ("bft_proposal", self.round) in self._signed:
            self._out.append(Broadcast(self._signed[("bft_proposal", self.round)]))
            return
        block = self.blocks.get(self.valid_hash) if self.valid_round >= 0 else None
        pol = self.valid_round if block is not None else -1
        if block is None:
            evidence = list(self.pending_evidence.values())[:16]
            txs = self.txs.reap(self.params.max_block_txs)
            block, _ = self.chain.build(now_ms, self.me, txs, evidence)
        body = BftProposal(height=self.height, round=self.round, pol_round=pol, block=block)
        self._signed_once("bft_proposal", body, now_ms)
        self._relay_pol()

    def _relay_pol(self, *, with_block: bool = False) -> None:
        """Relay the 2f+1 prevotes behind our valid value: peers that missed them can unlock."""
        if self.valid_round >= 0:
            carrier = self._block_envs.get(self.valid_hash) if with_block else None
            if carrier is not None and carrier is not self._proposal_envs.get(self.round):
                self._out.append(Broadcast(carrier))  # the block itself, as it was proposed
            for env in self.votes.votes_for(PREVOTE, self.valid_round, self.valid_hash):
                self._out.append(Broadcast(env))

    def _valid(self, block: Block, bhash: str, now_ms: int) -> bool:
        if bhash in self._invalid:
            return False
        try:
            self.chain.check(block, now_ms)
        except InvalidBlock:
            self._invalid.add(bhash)
            return False
        return True

    def _rules(self, now_ms: int) -> None:
        for _ in range(256):  # each pass moves state forward; a bound guards against bugs
            if not self._pass(now_ms):
                return

    def _pass(self, now_ms: int) -> bool:
        """One evaluation of every upon-rule; True when something changed."""
        votes, r = self.votes, self.round
        # 49: decide on 2f+1 precommits for a block we hold, in any round.
        for pr in votes.precommit_rounds():
            decided = votes.decided(PRECOMMIT, pr)
            if not decided or decided not in self.blocks:
                continue
            try:
                execution = self.chain.check(self.blocks[decided], None)
            except InvalidBlock:
                continue  # 2f+1 precommitted an invalid block: more than f are faulty
            else:
                sigs = commit_signatures(votes.votes_for(PRECOMMIT, pr, decided))
                commit = Commit(height=self.height, round=pr, block=decided, sigs=sigs)
                announce = self.proposer(self.height, pr) == self.me
                self._commit(self.blocks[decided], commit, execution, announce, now_ms)
                return True
        if not self._active:
            return False  # catching up: commit certified blocks, sign nothing
        # Valid value from a proof-of-lock seen late (Tendermint only looks at the current
        # round): a proposer that holds 2f+1 prevotes for a block re-proposes it, which is
        # what unlocks a cluster where one replica locked and the others missed the POL.
        for pr in votes.prevote_rounds():
            if self.valid_round < pr < r:
                pol = votes.decided(PREVOTE, pr)
                if pol and pol in self.blocks and self._valid(self.blocks[pol], pol, now_ms):
                    self.valid_round, self.valid_hash = pr, pol
        # 55: f+1 validators are in a later round.
        later = [x for x in votes.rounds() if x > r and votes.senders(x) >= votes.weak]
        if later:
            self._start_round(max(later), now_ms)
            return True
        proposal = self.proposals.get(r)
        phash = self._proposal_hash.get(r, "")
        if proposal is not None and self.step == "propose":
            vr = proposal.pol_round
            if vr == -1:
                ok = self._valid(proposal.block, phash, now_ms) and (
                    self.locked_round == -1 or self.locked_hash == phash
                )
                self._vote(PREVOTE, phash if ok else "", now_ms)
                self.step = "prevote"
                return True
            if votes.count(PREVOTE, vr, phash) >= votes.quorum:
                ok = self._valid(proposal.block, phash, now_ms) and (
                    self.locked_round <= vr or self.locked_hash == phash
                )
                self._vote(PREVOTE, phash if ok else "", now_ms)
                self.step = "prevote"
                return True
        if self.step == "prevote" and r not in self._prevote_timer:
            if votes.total(PREVOTE, r) >= votes.quorum:
                self._prevote_timer.add(r)
                at = now_ms + self.params.timeout("prevote", r)
                self._out.append(SetTimer(Timeout("prevote", self.height, r), at))
        if (
            proposal is not None
            and self.step != "propose"
            and r not in self._locked_in
            and votes.count(PREVOTE, r, phash) >= votes.quorum
            and self._valid(proposal.block, phash, now_ms)
        ):
            self._locked_in.add(r)
            if self.step == "prevote":
                self.locked_round, self.locked_hash = r, phash
                self.valid_round, self.valid_hash = r, phash
                self._vote(PRECOMMIT, phash, now_ms)
                self.step = "precommit"
            else:
                self.valid_round, self.valid_hash = r, phash
                self._out.append(Persist(self._record()))
            return True
        if self.step == "prevote" and votes.count(PREVOTE, r, "") >= votes.quorum:
            self._vote(PRECOMMIT, "", now_ms)
            self.step = "precommit"
            return True
        if r not in self._precommit_timer and votes.total(PRECOMMIT, r) >= votes.quorum:
            self._precommit_timer.add(r)
            at = now_ms + self.params.timeout("precommit", r)
            self._out.append(SetTimer(Timeout("precommit", self.height, r), at))
        return False

    def _commit(
        self, block: Block, commit: Commit, execution: Execution, announce: bool, now_ms: int
    ) -> None:
        self.chain.apply(block, commit, execution)
        self.txs.on_commit(block, execution)
        committed = set(block.evidence)
        self.pending_evidence = {
            k: v for k, v in self.pending_evidence.items() if v not in committed
        }
        changes = self.chain.app.state_changes(execution)
        self._out.append(Committed(block, commit, execution, self.chain.head, changes))
        self._last = BftBlock(block=block, commit=commit)
        if announce:
            self._out.append(Broadcast(self._sign(self._last, now_ms), channel="blocks"))
        self._behind.clear()
        self._reset_height()
        self._start_round(0, now_ms)
        for env in self._future.pop(self.height, []):
            self._accept(env, now_ms, rules=False)
        self._future = {h: q for h, q in self._future.items() if h > self.height}

    def _tick(self, now_ms: int) -> None:
        self._out.append(
            SetTimer(Timeout("rebroadcast", 0, 0), now_ms + self.params.rebroadcast_ms)
        )
        if self._behind and self._last is not None:
            # A peer still votes at our previous height: hand it the block that ended it.
            self._out.append(Broadcast(self._sign(self._last, now_ms), channel="blocks"))
            self._behind.clear()
        marker = (self.height, self.round, self.step)
        stuck = marker == self._marker
        self._marker = marker
        if not stuck:
            return
        proposal = self._proposal_envs.get(self.round)
        if proposal is not None:
            self._out.append(Broadcast(proposal))
        # Own votes of the last few rounds: a peer stuck in an earlier round needs them to
        # reach the 2f+1 that starts its timeouts (Tendermint's gossip sends peers the votes
        # of the round they are in; we do not know it, so we send the recent ones).
        for (kind, round_), env in self._signed.items():
            if self.round - REBROADCAST_ROUNDS < round_ <= self.round and kind != "bft_proposal":
                self._out.append(Broadcast(env))
        self._relay_pol(with_block=True)
        for evidence in self.pending_evidence.values():
            self._broadcast(BftEvidence(evidence=evidence), now_ms)
        ahead = sum(1 for h in self._ahead.values() if h > self.height)
        missing = any(
            (d := self.votes.decided(PRECOMMIT, pr)) and d not in self.blocks
            for pr in self.votes.precommit_rounds()
        )
        if (ahead or missing) and (now_ms - self._last_sync_ms >= self.params.sync_retry_ms):
            self._last_sync_ms = now_ms
            self._out.append(Sync(self.height))
