"""Replay protection: `seq` strictly increases per sender and per stream."""

from __future__ import annotations

from wire.envelope import Envelope
from wire.errors import Replayed


class SeqGuard:
    """Remembers the last accepted seq of each (sender, stream) and refuses anything not above it.

    Pure and in memory; a shell persists `snapshot()` where it must survive restarts.
    """

    def __init__(self, last: dict[tuple[str, str], int] | None = None) -> None:
        self._last: dict[tuple[str, str], int] = dict(last or {})

    def check(self, env: Envelope) -> None:
        """Raise `Replayed` if `env.seq` is not above the last accepted seq of its stream."""
        last = self._last.get((env.sender, env.stream))
        if last is not None and env.seq <= last:
            raise Replayed(env.sender, env.stream, env.seq, last)

    def accept(self, env: Envelope) -> None:
        """Check `env` and record its seq as the last accepted one.

        Raises:
            Replayed: the seq is not above the last accepted one.
        """
        self.check(env)
        self._last[(env.sender, env.stream)] = env.seq

    def last(self, sender: str, stream: str) -> int | None:
        """The last accepted seq, or None if nothing was accepted yet."""
        return self._last.get((sender, stream))

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy of the state, for persistence."""
        return dict(self._last)
