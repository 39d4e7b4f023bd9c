"""`Follower`: a non-voting node that only verifies and applies finalized blocks.

Grid operators run one to serve the API from a chain they checked themselves: every block
must carry a certificate of 2f+1 validators and execute to the state hash in its header.
Same interface as `Replica`, so one shell drives either.
"""

from __future__ import annotations

from hub.consensus.action import Action, Committed, SetTimer, Sync, Timeout
from hub.consensus.chain import Chain
from hub.consensus.params import Params
from hub.consensus.replica import TxSource
from wire.consensus import BftBlock, Block, Commit
from wire.envelope import Envelope

__all__ = ["Follower"]


class Follower:
    """Applies blocks with valid certificates, in order; asks for sync when behind or idle."""

    def __init__(self, chain: Chain, txs: TxSource, params: Params) -> None:
        """Follow on top of the committed `chain`; `txs` is told what blocks included."""
        self.chain = chain
        self.txs = txs
        self.params = params
        self.round = 0
        self.step = "follow"

    @property
    def height(self) -> int:
        """The height being waited for."""
        return self.chain.height + 1

    def start(self, now_ms: int) -> list[Action]:
        """Start polling peers."""
        return [Sync(self.height), self._timer(now_ms)]

    def _timer(self, now_ms: int) -> SetTimer:
        return SetTimer(Timeout("rebroadcast", 0, 0), now_ms + self.params.sync_retry_ms)

    def on_txs(self, now_ms: int) -> list[Action]:
        """Followers do not propose."""
        return []

    def on_timeout(self, timeout: Timeout, now_ms: int) -> list[Action]:
        """Poll peers for blocks every `sync_retry_ms`."""
        return [Sync(self.height), self._timer(now_ms)]

    def on_message(self, env: Envelope, now_ms: int) -> list[Action]:
        """Blocks from the blocks topic; votes and proposals are not a follower's business."""
        if isinstance(env.body, BftBlock):
            return self.on_block(env.body.block, env.body.commit, now_ms)
        return []

    def on_block(self, block: Block, commit: Commit, now_ms: int) -> list[Action]:
        """Apply `block` if it is the next one and its certificate holds.

        Raises:
            InvalidBlock: a certified block does not execute to its header here.
        """
        if block.header.height > self.height:
            return [Sync(self.height)]
        if block.header.height < self.height:
            return []
        execution = self.chain.check_certified(block, commit)
        if execution is None:
            return []
        self.chain.apply(block, commit, execution)
        self.txs.on_commit(block, execution)
        changes = self.chain.app.state_changes(execution)
        return [Committed(block, commit, execution, self.chain.head, changes)]
