"""Errors of the hub validator.

`HubError` is the root; each family says what went wrong and, where an operator can act, how
to fix it.
"""

from __future__ import annotations


class HubError(Exception):
    """Root of every error raised by the hub package."""


class InvalidBlock(HubError):
    """A block (or its commit certificate) breaks a consensus or application rule.

    Attributes:
        height: height of the offending block.
        reason: what is wrong, e.g. `state_hash 3f… != 9a… after execution`.
    """

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"block {height} is invalid: {reason}")
        self.height = height
        self.reason = reason


class InvalidCommit(InvalidBlock):
    """A commit certificate does not prove 2f+1 precommits for the block."""


class TxRejected(HubError):
    """A transaction cannot enter the mempool or failed in execution.

    Attributes:
        reason: why, in words a sender can act on.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unregistered(TxRejected):
    """The sender is not registered (yet).

    The transaction may be valid once a `register` commits: a mempool remembers its seq,
    so the sender's later ones wait for it to come again (hub/mempool.py).
    """


class MempoolFull(TxRejected):
    """The mempool holds its maximum; the sender should retry later."""


class ConfigError(HubError):
    """`hub.toml` or the genesis file is missing, malformed, or inconsistent.

    Attributes:
        key: the offending key (dotted), or "" for the whole file.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


class StoreError(HubError):
    """The chain store on disk is unusable (corrupt, from another chain, or locked)."""


class SyncError(HubError):
    """Blocks could not be fetched from any peer; the text names the peers tried."""
