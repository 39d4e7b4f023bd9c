"""The write-ahead record: what a validator must remember across a crash to stay honest.

It holds the height and round reached, the lock and valid value (Tendermint's
`lockedRound/lockedValue`, `validRound/validValue`, as hashes) and every message the validator
signed at this height. A restarted replica re-sends those messages and refuses to sign
anything that conflicts with them, so a crash can never make it equivocate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.errors import StoreError
from wire import canonical
from wire.envelope import Envelope, from_obj
from wire.errors import InvalidMessage

__all__ = ["WalRecord"]


@dataclass(frozen=True, slots=True)
class WalRecord:
    """Consensus state of one validator that must survive a restart."""

    height: int
    """Height being decided."""
    round: int
    """Round reached."""
    locked_round: int
    """Round of the lock, -1 when unlocked."""
    locked_hash: str
    """Hash of the locked block, "" when unlocked."""
    valid_round: int
    """Round of the valid value, -1 when none."""
    valid_hash: str
    """Hash of the valid value, "" when none."""
    seq: int
    """Last consensus-stream seq used."""
    signed: tuple[Envelope, ...]
    """Every consensus message this validator signed at `height`."""

    def to_bytes(self) -> bytes:
        """Canonical JSON of the record."""
        return canonical.encode(
            {
                "height": self.height,
                "round": self.round,
                "locked_round": self.locked_round,
                "locked_hash": self.locked_hash,
                "valid_round": self.valid_round,
                "valid_hash": self.valid_hash,
                "seq": self.seq,
                "signed": [env.to_obj() for env in self.signed],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, chain: str) -> WalRecord:
        """Read a record written by `to_bytes`, verifying the signed messages.

        Raises:
            StoreError: the record is corrupt; move the database aside only if you are sure
                this validator signed nothing at that height.
        """
        try:
            obj: Any = canonical.decode(data)
            return cls(
                height=int(obj["height"]),
                round=int(obj["round"]),
                locked_round=int(obj["locked_round"]),
                locked_hash=str(obj["locked_hash"]),
                valid_round=int(obj["valid_round"]),
                valid_hash=str(obj["valid_hash"]),
                seq=int(obj["seq"]),
                signed=tuple(from_obj(o, chain) for o in obj["signed"]),
            )
        except (InvalidMessage, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"consensus write-ahead record is corrupt: {exc}") from exc
