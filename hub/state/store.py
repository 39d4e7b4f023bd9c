"""`Store` (the committed tables) and `Overlay` (a block's journal over them).

The state is a set of named tables, each a map from a string key to a record (or an int).
A block executes on an `Overlay`: reads fall through to the committed `Store`, writes stay
in the overlay, and `Store.apply` adopts them as a unit (execution-specs' begin/commit). So
executing a proposal that never commits costs only what it touched, never a deep copy.

The state hash is incremental: each table keeps the sum, modulo 2**256, of the SHA-256 of
its entries (`entry_digest`, an additive multiset hash), and the state hash is the SHA-256
of the table names with their sums. Changing one entry costs one digest, not a rehash of
everything; two stores with the same entries have the same hash whatever the write order.

Order-book indexes are derived data (rebuilt from the orders on restore): the overlay copies
an interval's book on first touch and `apply` swaps the copies in.

Secondary indexes are derived data too, kept by the store as entries come and go (never
hashed): a table may name a function of (key, entry) to index by, and `Overlay.lookup`
answers "the keys whose entry indexes to X" without scanning the table (certificates by
owner, votes by proposal: the API serves them from the validator's event loop).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hub.errors import HubError
from hub.state.record import entry_digest

__all__ = ["IndexBy", "Overlay", "Store"]

MOD = 2**256

IndexBy = Callable[[str, Any], str]
"""What an entry (key, value) of a table is found by in its secondary index."""


class Store:
    """The committed tables, their digests, and derived book indexes."""

    def __init__(
        self, schema: Mapping[str, Any], indexes: Mapping[str, IndexBy] | None = None
    ) -> None:
        """Empty tables named by `schema` (table name -> record type or `int`).

        `indexes` names, per table, what its entries are looked up by (`Overlay.lookup`).
        """
        self.schema = dict(schema)
        self.indexes = dict(indexes or {})
        self.index: dict[str, dict[str, set[str]]] = {name: {} for name in self.indexes}
        self.tables: dict[str, dict[str, Any]] = {name: {} for name in schema}
        self.digests: dict[str, dict[str, int]] = {name: {} for name in schema}
        self.sums: dict[str, int] = dict.fromkeys(schema, 0)
        self.books: dict[int, Any] = {}
        self.version = 0

    def state_hash(self) -> str:
        """Hash of the committed state, 64 hex."""
        return combine(self.sums)

    def _reindex(self, table: str, key: str, old: Any, new: Any) -> None:
        by = self.indexes.get(table)
        if by is None:
            return
        index = self.index[table]
        if old is not None:
            keys = index.get(by(key, old))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[by(key, old)]
        if new is not None:
            index.setdefault(by(key, new), set()).add(key)

    def load(self, table: str, key: str, value: Any) -> None:
        """Put an entry directly (restore and genesis only: no journal)."""
        digest = entry_digest(table, key, value)
        old = self.digests[table].get(key, 0)
        self._reindex(table, key, self.tables[table].get(key), value)
        self.tables[table][key] = value
        self.digests[table][key] = digest
        self.sums[table] = (self.sums[table] - old + digest) % MOD

    def unload(self, table: str, key: str) -> None:
        """Remove an entry directly (restore only: no journal); absent keys are ignored."""
        if key in self.tables[table]:
            self._reindex(table, key, self.tables[table][key], None)
            del self.tables[table][key]
            old = self.digests[table].pop(key)
            self.sums[table] = (self.sums[table] - old) % MOD

    def apply(self, overlay: Overlay) -> None:
        """Adopt an overlay's writes (it must have been built on this very version).

        Raises:
            HubError: the overlay is stale (built on an older committed state) or unfinished.
        """
        if overlay.base_version != self.version or overlay.store is not self:
            raise HubError("execution is stale: it was built on another committed state")
        if overlay.sealed is None:
            raise HubError("overlay must be finished before it is applied")
        for table, changes in overlay.changes.items():
            rows, digests = self.tables[table], self.digests[table]
            for key, value in changes.items():
                self._reindex(table, key, rows.get(key), value)
                if value is None:
                    rows.pop(key, None)
                    digests.pop(key, None)
                else:
                    rows[key] = value
                    digests[key] = overlay.new_digests[table][key]
        self.sums = dict(overlay.sealed)
        for interval, book in overlay.books.items():
            if book is None:
                self.books.pop(interval, None)
            else:
                self.books[interval] = book
        self.version += 1


def combine(sums: Mapping[str, int]) -> str:
    """State hash from per-table digest sums."""
    h = hashlib.sha256(b"gridtokenx/state/v1\n")
    for name in sorted(sums):
        h.update(name.encode("utf-8") + b"\x00" + sums[name].to_bytes(32, "big"))
    return h.hexdigest()


class Overlay:
    """A journal of writes over a `Store`; reads see the journal first."""

    def __init__(self, store: Store) -> None:
        """Start an empty journal on the committed `store`."""
        self.store = store
        self.base_version = store.version
        self.changes: dict[str, dict[str, Any]] = {name: {} for name in store.schema}
        self.books: dict[int, Any] = {}
        self.new_digests: dict[str, dict[str, int]] = {}
        self.sealed: dict[str, int] | None = None

    def get(self, table: str, key: str) -> Any:
        """The entry `key` of `table`, or None."""
        changes = self.changes[table]
        if key in changes:
            return changes[key]
        return self.store.tables[table].get(key)

    def put(self, table: str, key: str, value: Any) -> None:
        """Write an entry (None deletes)."""
        if self.sealed is not None:
            raise HubError("overlay is finished; it takes no more writes")  # a bug
        self.changes[table][key] = value

    def keys(self, table: str) -> list[str]:
        """All live keys of `table`, sorted (so iteration is deterministic)."""
        changes = self.changes[table]
        keys = set(self.store.tables[table])
        for key, value in changes.items():
            if value is None:
                keys.discard(key)
            else:
                keys.add(key)
        return sorted(keys)

    def first_keys(self, table: str, after: str, limit: int) -> list[str]:
        """Up to `limit` live keys of `table` above `after`, sorted (no sort of the table)."""
        changes = self.changes[table]
        live = itertools.chain(
            (k for k in self.store.tables[table] if k not in changes),
            (k for k, v in changes.items() if v is not None),
        )
        return heapq.nsmallest(limit, (k for k in live if k > after))

    def items(self, table: str) -> Iterator[tuple[str, Any]]:
        """All live entries of `table`, in key order."""
        for key in self.keys(table):
            yield key, self.get(table, key)

    def lookup(self, table: str, value: str) -> list[str]:
        """Keys of `table`'s live entries that its index maps to `value`, sorted.

        Costs the size of the answer plus this journal's changes to `table`, not the table.
        """
        by = self.store.indexes[table]
        keys = set(self.store.index[table].get(value, ()))
        for key, entry in self.changes[table].items():
            if entry is not None and by(key, entry) == value:
                keys.add(key)
            else:
                keys.discard(key)
        return sorted(keys)

    def book(self, interval: int, new: Callable[[], Any]) -> Any:
        """The book of `interval` for writing: the journal's copy, made on first use."""
        if interval in self.books:
            book = self.books[interval]
            if book is not None:
                return book
        base = self.store.books.get(interval)
        book = base.copy() if base is not None else new()
        self.books[interval] = book
        return book

    def drop_book(self, interval: int) -> None:
        """Forget the book of `interval` (gate closed)."""
        self.books[interval] = None

    def finish(self) -> str:
        """Seal the journal and return the state hash it leads to."""
        if self.sealed is not None:
            return combine(self.sealed)
        sums = dict(self.store.sums)
        for table, changes in self.changes.items():
            if not changes:
                continue
            old_digests = self.store.digests[table]
            new = self.new_digests.setdefault(table, {})
            total = sums[table]
            for key, value in changes.items():
                total -= old_digests.get(key, 0)
                if value is not None:
                    digest = entry_digest(table, key, value)
                    new[key] = digest
                    total += digest
            sums[table] = total % MOD
        self.sealed = sums
        return combine(sums)
