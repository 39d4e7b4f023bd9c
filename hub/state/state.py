"""`State`: the typed view a transaction handler works on, and the table schema.

Everything that affects the state hash lives in the tables listed in `SCHEMA` (h11's rule:
the whole state machine in one place). A `State` wraps one `Overlay` together with the
block being executed (height, time) and the current parameters. Handlers follow one
discipline: validate everything first (raising `TxRejected`), then write; a rejected
transaction therefore leaves no trace but its consumed seq.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.state.accounts import Account, Roles
from hub.state.book import Book, Order
from hub.state.certificates import Certificate, Claim
from hub.state.governance import Proposal, ValidatorChange, VoteRecord
from hub.state.market import IntervalInfo, Trade
from hub.state.meters import MeterEvidence, MeterState
from hub.state.params import Params
from hub.state.record import Record
from hub.state.registry import Gateway, Owned
from hub.state.settlement import Settlement, Statement
from hub.state.store import IndexBy, Overlay

__all__ = ["INDEXES", "SCHEMA", "Meta", "State"]


@dataclass(frozen=True, slots=True)
class Meta(Record):
    """Chain-wide counters and lists (table `meta`, key `chain`)."""

    chain: str
    """Chain id."""
    height: int = 0
    """Height of the last executed block."""
    time_ms: int = 0
    """Time of the last executed block, unix ms."""
    validators: tuple[str, ...] = ()
    """Validator set for the next block, sorted."""
    pending: tuple[ValidatorChange, ...] = ()
    """Approved validator changes waiting for their height."""
    order_seq: int = 0
    """Orders accepted so far (time priority of the next order)."""
    open_intervals: tuple[int, ...] = ()
    """Delivery intervals with orders or trades, not yet settled (sorted)."""
    proposals: tuple[str, ...] = ()
    """Proposals still open or waiting for execution, in submission order."""
    equivocations: tuple[tuple[str, int], ...] = ()
    """(validator key, pieces of consensus equivocation evidence committed), sorted."""
    stake_weight: int = 0
    """The stakeholders' voting weight: the sum over accounts of `traded_wh` //
    `gov_stake_wh_per_vote` (0 while that is 0), kept as trades settle, so a vote does not
    scan every account."""


SCHEMA: dict[str, Any] = {
    "meta": Meta,
    "params": Params,
    "feeders": int,
    "accounts": Account,
    "roles": Roles,
    "gateways": Gateway,
    "owners": Owned,
    "meters": MeterState,
    "evidence": MeterEvidence,
    "orders": Order,
    "iorders": str,
    "offered": int,
    "flows": int,
    "intervals": IntervalInfo,
    "trades": Trade,
    "settlements": Settlement,
    "statements": Statement,
    "certs": Certificate,
    "claims": Claim,
    "proposals": Proposal,
    "votes": VoteRecord,
}
"""Table name -> the type of its values."""

INDEXES: dict[str, IndexBy] = {
    "certs": lambda _key, cert: cert.owner,  # an owner's certificates
    "votes": lambda key, _vote: key.partition("/")[0],  # a proposal's votes (proposal/voter)
}
"""Secondary indexes of the state (derived, not hashed): `Overlay.lookup`."""


class State:
    """One block's (or one check's) working view of the state."""

    def __init__(self, overlay: Overlay, height: int, time_ms: int) -> None:
        """View `overlay` as the state while executing the block at `height`, `time_ms`."""
        self.ov = overlay
        self.height = height
        self.time_ms = time_ms
        params = overlay.get("params", "current")
        self.params: Params = params if params is not None else Params()

    def get(self, table: str, key: str) -> Any:
        """An entry, or None."""
        return self.ov.get(table, key)

    def put(self, table: str, key: str, value: Any) -> None:
        """Write an entry (None deletes)."""
        self.ov.put(table, key, value)

    def meta(self) -> Meta:
        """Chain-wide counters."""
        meta = self.ov.get("meta", "chain")
        if meta is None:  # pragma: no cover - genesis always writes it
            raise KeyError("meta")
        return meta  # type: ignore[no-any-return]

    def set_meta(self, meta: Meta) -> None:
        """Replace the chain-wide counters."""
        self.ov.put("meta", "chain", meta)

    def set_params(self, params: Params) -> None:
        """Replace the parameters (governance)."""
        self.params = params
        self.ov.put("params", "current", params)

    def book(self, interval: int) -> Book:
        """The order book of `interval`, for matching (copied into this overlay)."""
        book = self.ov.book(interval, Book)
        return book  # type: ignore[no-any-return]
