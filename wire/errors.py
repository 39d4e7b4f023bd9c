"""Errors of the wire contract.

Decoding untrusted bytes raises only `InvalidMessage` (or a subclass); any other exception
escaping `wire.envelope.parse` is a bug.
"""

from __future__ import annotations


class WireError(Exception):
    """Root of every error raised by the wire package."""


class InvalidMessage(WireError):
    """A message (or a value meant to become one) breaks the contract; the text says how."""


class NotCanonical(InvalidMessage):
    """Bytes or values that canonical JSON cannot carry: bad UTF-8, floats, duplicate keys."""


class UnknownKind(InvalidMessage):
    """The `kind` is not one of the kinds this implementation knows."""


class WrongChain(InvalidMessage):
    """The message is bound to another chain than the one the receiver serves."""


class InvalidField(InvalidMessage):
    """A field is missing, of the wrong type, or out of range.

    Attributes:
        field: dotted path of the field, e.g. `body.devices[1].capacity_w`.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field}: {problem}")
        self.field = field
        self.problem = problem


class BadSignature(InvalidMessage):
    """The signature does not verify for the stated `from` key."""


class Replayed(InvalidMessage):
    """The `seq` is not above the last one accepted from this sender on this stream."""

    def __init__(self, sender: str, stream: str, seq: int, last: int) -> None:
        super().__init__(
            f"replayed or out of order: seq {seq} on stream {stream} from {sender[:16]}… "
            f"is not above the last accepted seq {last}"
        )
        self.sender = sender
        self.stream = stream
        self.seq = seq
        self.last = last


class KeyFileError(WireError):
    """A key file is missing, unreadable, malformed or readable by others."""
