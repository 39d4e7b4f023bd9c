"""`ChainStore`: one validator's SQLite database (WAL journal, synchronous FULL).

Tables:

* `blocks`  — height, hash, time, proposer, the whole block and its commit certificate;
* `txs`     — every transaction of every block, by id, with an index by sender: height,
  position, kind, seq, outcome (ok / reason) and the envelope text;
* `app_state` — the application rows changed since genesis (row key -> bytes, NULL when
  deleted); each block writes only the rows it changed (`Application.state_changes`), so a
  block costs disk in proportion to what it did, not to the size of the state; at start
  the application rebuilds genesis and applies them (`Application.restore_rows`);
* `statement_sigs` — validators' signatures over interval statement hashes (verified before
  they are stored), served with `GET /v1/statements/{interval}`;
* `meta`    — the committed head, the consensus write-ahead record, and the genesis hash
  the database belongs to. A store written by an older version (a whole application
  snapshot under `app`, headers without energy totals) is refused at open: move chain.db
  aside and the node syncs the chain again from its peers. So is a chain written under
  another state format (`STATE_FORMAT`, in `meta` as `format`): its state hashes were
  computed from other rows, so it cannot be replayed by this version at all.

A block, its transactions, the new head and the changed application rows are written in
one SQLite transaction, so a crash leaves either the old or the new state, never a mix.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.application import Execution
from hub.consensus.block import EMPTY_COMMIT, block_hash, tx_id
from hub.consensus.chain import Head
from hub.consensus.wal import WalRecord
from hub.errors import StoreError
from hub.genesis import Genesis
from wire import canonical
from wire.consensus import Block, Commit
from wire.errors import InvalidMessage

__all__ = ["STATE_FORMAT", "ChainStore", "StoredTx"]

STATE_FORMAT = 2
"""How the application state is laid out, hence hashed. 2: the chain meta carries the
governance stake total. A store of another format is refused at open."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    time_ms INTEGER NOT NULL,
    proposer TEXT NOT NULL,
    n_txs INTEGER NOT NULL,
    block BLOB NOT NULL,
    commit_cert BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txs (
    id TEXT PRIMARY KEY,
    height INTEGER NOT NULL,
    position INTEGER NOT NULL,
    sender TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ok INTEGER NOT NULL,
    reason TEXT NOT NULL,
    envelope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS txs_by_sender ON txs (sender, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS statement_sigs (
    interval INTEGER NOT NULL,
    validator TEXT NOT NULL,
    statement TEXT NOT NULL,
    height INTEGER NOT NULL,
    sig TEXT NOT NULL,
    PRIMARY KEY (interval, validator, statement)
);
CREATE TABLE IF NOT EXISTS app_state (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class StoredTx:
    """A committed transaction as stored."""

    id: str
    """Transaction id."""
    height: int
    """Block height."""
    position: int
    """Index in the block."""
    sender: str
    """Signer."""
    seq: int
    """Its seq."""
    kind: str
    """Its kind."""
    ok: bool
    """Whether it took effect."""
    reason: str
    """Why not, when it did not."""
    envelope: str
    """The envelope's canonical JSON."""


def _stored(row: tuple[Any, ...]) -> StoredTx:
    tid, height, position, sender, seq, kind, ok, reason, envelope = row
    return StoredTx(tid, height, position, sender, seq, kind, bool(ok), reason, envelope)


def _head_json(head: Head) -> bytes:
    return canonical.encode(
        {
            "height": head.height,
            "hash": head.hash,
            "time_ms": head.time_ms,
            "state_hash": head.state_hash,
            "commit": head.commit.to_json(),
            "validators": list(head.validators),
            "signers": list(head.signers),
        }
    )


def _head_from(data: bytes) -> Head:
    obj: Any = canonical.decode(data)
    return Head(
        height=obj["height"],
        hash=obj["hash"],
        time_ms=obj["time_ms"],
        state_hash=obj["state_hash"],
        commit=Commit.from_json(obj["commit"], "commit"),
        validators=tuple(obj["validators"]),
        signers=tuple(obj["signers"]),
    )


class ChainStore:
    """The SQLite store of one node. Not shared between processes."""

    def __init__(self, path: Path, genesis: Genesis) -> None:
        """Open (creating if needed) the store at `path` for `genesis`.

        Raises:
            StoreError: the file is not a chain store, is locked, or belongs to another chain.
        """
        self.path = path
        self.genesis = genesis
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open chain store {path}: {exc}") from exc
        try:
            self._check_belongs(genesis)
        except StoreError:
            self._db.close()
            raise

    def _check_belongs(self, genesis: Genesis) -> None:
        """Refuse a store of another chain, an older layout or another state format."""
        path = self.path
        mine = self._meta("genesis")
        if mine is None:
            self._put_meta("genesis", genesis.hash().encode())
        elif mine.decode() != genesis.hash():
            raise StoreError(
                f"{path} belongs to another chain (genesis {mine.decode()[:12]}…, this config's "
                f"is {genesis.hash()[:12]}…); point data_dir elsewhere or move the file aside"
            )
        if self._meta("app") is not None:
            raise StoreError(
                f"{path} was written by an older GridTokenX (whole-state snapshots, no energy "
                "totals in headers); move it aside and restart: the node syncs from its peers"
            )
        written = self._meta("format")
        if written is None and self._meta("head") is None:  # a new store
            self._put_meta("format", str(STATE_FORMAT).encode())
        elif written != str(STATE_FORMAT).encode():
            raise StoreError(
                f"{path} holds a chain of state format {(written or b'1').decode(errors='replace')}"
                f"; this GridTokenX computes state hashes with format {STATE_FORMAT} (the "
                "governance stake total is part of the state since format 2), so it cannot "
                "carry the chain on: create a new network (gtx hub init) or run the version "
                "that wrote it"
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _put_meta(self, key: str, value: bytes) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # ------------------------------------------------------------------ head and app

    def head(self, genesis_state_hash: str) -> Head:
        """The committed head (the genesis head when nothing is committed)."""
        data = self._meta("head")
        if data is None:
            g = self.genesis
            return Head(0, g.hash(), g.time_ms, genesis_state_hash, EMPTY_COMMIT, g.validators, ())
        try:
            return _head_from(data)
        except (InvalidMessage, KeyError, TypeError) as exc:
            raise StoreError(f"{self.path}: stored head is corrupt: {exc}") from exc

    def app_rows(self) -> list[tuple[str, bytes | None]]:
        """Application rows changed since genesis, in key order (None: deleted since)."""
        rows = self._db.execute("SELECT key, value FROM app_state ORDER BY key")
        return [(str(k), None if v is None else bytes(v)) for k, v in rows]

    def wal(self) -> WalRecord | None:
        """The last consensus write-ahead record, if any."""
        data = self._meta("wal")
        return None if data is None else WalRecord.from_bytes(data, self.genesis.chain)

    def save_wal(self, record: WalRecord) -> None:
        """Write the write-ahead record durably (before the message it covers is sent)."""
        self._put_meta("wal", record.to_bytes())

    def commit_block(
        self,
        block: Block,
        commit: Commit,
        execution: Execution,
        head: Head,
        changes: Mapping[str, bytes | None],
    ) -> None:
        """Store a finalized block, its transactions' outcomes, the new head and app rows.

        Args:
            block: the finalized block.
            commit: its commit certificate.
            execution: its execution (per-transaction outcomes).
            head: the new head.
            changes: application rows the block changed (None: deleted).

        Raises:
            StoreError: the write failed; the node must stop (its memory is ahead of disk).
        """
        h = block.header
        results = {r.tx_id: r for r in execution.results}
        rows = []
        for position, text in enumerate(block.txs):
            obj: Any = canonical.decode(text.encode("utf-8"))
            tid = tx_id(text)
            result = results.get(tid)
            rows.append(
                (
                    tid,
                    h.height,
                    position,
                    obj["from"],
                    obj["seq"],
                    obj["kind"],
                    int(result.ok) if result else 0,
                    result.reason if result else "no result",
                    text,
                )
            )
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    h.height,
                    block_hash(block),
                    h.time_ms,
                    h.proposer,
                    len(block.txs),
                    canonical.encode(block.to_json()),
                    canonical.encode(commit.to_json()),
                ),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO txs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
            self._put_meta("head", _head_json(head))
            self._db.executemany(
                "INSERT INTO app_state (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                sorted(changes.items()),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise StoreError(f"cannot store block {h.height}: {exc}") from exc

    def save_statement_sig(
        self, interval: int, validator: str, statement: str, height: int, sig: str
    ) -> bool:
        """Keep a verified statement signature; False when it was already stored.

        Raises:
            StoreError: the write failed.
        """
        try:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO statement_sigs VALUES (?, ?, ?, ?, ?)",
                (interval, validator, statement, height, sig),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store a statement signature: {exc}") from exc
        return cur.rowcount > 0

    def statement_sigs(self, interval: int) -> list[tuple[str, str, int, str]]:
        """(validator, statement hash, height, sig) of every signature kept for `interval`."""
        rows = self._db.execute(
            "SELECT validator, statement, height, sig FROM statement_sigs WHERE interval = ? "
            "ORDER BY validator, statement",
            (interval,),
        )
        return [(str(v), str(s), int(h), str(g)) for v, s, h, g in rows]

    def statement_sig_count(self) -> int:
        """How many statement signatures are kept (to bound what strangers can add)."""
        row = self._db.execute("SELECT COUNT(*) FROM statement_sigs").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ queries

    def block(self, height: int) -> tuple[Block, Commit, str] | None:
        """Block, certificate and hash at `height`, or None."""
        row = self._db.execute(
            "SELECT block, commit_cert, hash FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        if row is None:
            return None
        block = Block.from_json(canonical.decode(bytes(row[0])), "block")
        commit = Commit.from_json(canonical.decode(bytes(row[1])), "commit")
        return block, commit, str(row[2])

    def height_of(self, block_hash_hex: str) -> int | None:
        """Height of the block with this hash, or None."""
        row = self._db.execute(
            "SELECT height FROM blocks WHERE hash = ?", (block_hash_hex,)
        ).fetchone()
        return None if row is None else int(row[0])

    def tx(self, tx_id_hex: str) -> StoredTx | None:
        """A committed transaction by id."""
        row = self._db.execute("SELECT * FROM txs WHERE id = ?", (tx_id_hex,)).fetchone()
        return None if row is None else _stored(row)

    def txs_of(self, sender: str, limit: int = 100) -> Iterator[StoredTx]:
        """The latest committed transactions of `sender`, newest first."""
        rows = self._db.execute(
            "SELECT * FROM txs WHERE sender = ? ORDER BY seq DESC LIMIT ?", (sender, limit)
        )
        for row in rows:
            yield _stored(row)
