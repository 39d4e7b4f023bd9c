"""The durable outbox: SQLite (WAL, synchronous=FULL) holding every signed message until it is safe.

One database file per gateway (`state_dir/outbox.sqlite`) holds, updated in one transaction
per reading:

- `seq`: the next seq of each stream. A message's seq is allocated, the message signed and
  stored, and the counter advanced in the same transaction, so a seq is never used before
  it is durable and never used twice (power loss rolls back all three). A new database
  starts each stream at the creation time in unix ms, so a gateway whose state was wiped
  still counts above anything it sent before.
- `message`: signed envelopes in insertion order (`id`), which is seq order per stream.
  Telemetry is deleted at PUBACK. `tx` messages are deleted at PUBACK with
  `keep_tx_until = "puback"`; with `"committed"` they get `acked_ms` and stay until
  `commit_through` learns the chain committed their seq (DESIGN.md: a PUBACK is not
  delivery), and are re-sent in order when not committed in time.
- `device`: each device's memory (last cumulative registers, last meter_read) so sanity
  checks and the `prev` hash chain survive restarts.
- `meta`: the gateway key and chain the file belongs to, publish statistics, and for
  `keep_tx_until = "committed"` when the hub last answered (`hub_checked_ms`) and how many
  re-sends in a row brought no commit (`republish_rounds`).
- `committed`: the highest seq per stream the chain is known to have committed.
- `totals`: messages, unpublished messages and payload bytes per stream, kept by triggers
  on `message` in the same transactions, so the status every 2 s and the quota check read
  two rows instead of scanning a backlog that may hold days of readings.

Not thread-safe: the daemon calls it from one worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

from edge.errors import ConfigError, EdgeError
from edge.intake import GENESIS, DeviceMemory, after_meter_read
from edge.retention import TelemetryRow, thinning_plan
from wire.envelope import Envelope
from wire.kinds import MeterRead
from wire.struct import Body

P = ParamSpec("P")
T = TypeVar("T")

STREAMS = ("telemetry", "tx")
"""Streams the gateway publishes on, each with its own seq and MQTT topic."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seq (stream TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    acked_ms INTEGER,
    first_acked_ms INTEGER,
    UNIQUE (stream, seq)
);
CREATE INDEX IF NOT EXISTS message_pending ON message (acked_ms, id);
CREATE TABLE IF NOT EXISTS committed (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS device (
    name TEXT PRIMARY KEY,
    import_wh INTEGER,
    export_wh INTEGER,
    read_interval INTEGER,
    read_id TEXT NOT NULL
);
"""

# Created (and filled from what `message` holds) in one transaction when an outbox written
# before they existed is opened. They see INSERT, DELETE and UPDATE OF acked_ms: code that
# changes a row's stream or payload, or uses INSERT OR REPLACE (its implicit delete fires
# no trigger), must keep the totals itself.
_TOTALS = """
CREATE TABLE totals (
    stream TEXT PRIMARY KEY,
    messages INTEGER NOT NULL,
    unpublished INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT INTO totals
    SELECT s.stream, count(m.id), coalesce(sum(m.id IS NOT NULL AND m.acked_ms IS NULL), 0),
           coalesce(sum(length(m.payload)), 0)
    FROM (SELECT 'telemetry' AS stream UNION ALL SELECT 'tx') AS s
    LEFT JOIN message AS m ON m.stream = s.stream GROUP BY s.stream;
CREATE TRIGGER totals_insert AFTER INSERT ON message BEGIN
    UPDATE totals SET messages = messages + 1, unpublished = unpublished + (NEW.acked_ms IS NULL),
        bytes = bytes + length(NEW.payload) WHERE stream = NEW.stream;
END;
CREATE TRIGGER totals_delete AFTER DELETE ON message BEGIN
    UPDATE totals SET messages = messages - 1, unpublished = unpublished - (OLD.acked_ms IS NULL),
        bytes = bytes - length(OLD.payload) WHERE stream = OLD.stream;
END;
CREATE TRIGGER totals_ack AFTER UPDATE OF acked_ms ON message
    WHEN (OLD.acked_ms IS NULL) != (NEW.acked_ms IS NULL) BEGIN
    UPDATE totals SET unpublished = unpublished + (NEW.acked_ms IS NULL) - (OLD.acked_ms IS NULL)
        WHERE stream = NEW.stream;
END;
"""


LATE_MS = 2_000
"""A tx message first acknowledged this long before the hub said it is not committed is
late (commits take well under a second). The first acknowledgement counts, not that of a
re-send: reads refused before registration stay late however often they were re-sent."""
REPUBLISH_BACKOFF = 8
"""Most the re-send delay grows: 8 x `republish_s` (40 min at the default 300 s)."""


class OutboxError(EdgeError):
    """The outbox database cannot be opened or written (disk full, corrupt, read-only)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A stored message waiting for its PUBACK."""

    row_id: int
    """Outbox row id."""
    stream: str
    """`telemetry` or `tx`."""
    seq: int
    """The message's seq."""
    payload: bytes
    """The canonical envelope bytes, exactly as signed."""


@dataclass(frozen=True, slots=True)
class Depth:
    """How much waits in the outbox."""

    messages: dict[str, int]
    """Messages per stream (unpublished plus tx awaiting commit)."""
    unpublished: int
    """Messages not yet acknowledged by the broker."""
    payload_bytes: int
    """Sum of payload sizes."""
    awaiting_commit: int = 0
    """tx messages the broker acknowledged that the chain has not committed yet."""


Signer = Callable[[Body, int], Envelope]
"""Signs a body under a given seq (the outbox allocates the seq)."""


class Outbox:
    """The gateway's SQLite outbox. See the module docstring for the tables."""

    def __init__(
        self,
        path: Path,
        keep_tx_until: Literal["puback", "committed"] = "puback",
        *,
        readonly: bool = False,
    ) -> None:
        """Open (creating if needed) the outbox at `path`.

        Raises:
            OutboxError: the file cannot be opened or is not an outbox.
        """
        self.path = path
        self.keep_tx_until = keep_tx_until
        try:
            if readonly:
                self._db = sqlite3.connect(
                    f"file:{path}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(message)")}
                if "first_acked_ms" not in columns:  # an outbox written before it existed
                    self._db.execute("ALTER TABLE message ADD COLUMN first_acked_ms INTEGER")
                if not self._has_totals():
                    try:  # one transaction: all of it or nothing
                        self._db.executescript(f"BEGIN IMMEDIATE;{_TOTALS}COMMIT;")
                    except sqlite3.Error:
                        if self._db.in_transaction:
                            self._db.execute("ROLLBACK")
                        raise
            self._db.execute("PRAGMA busy_timeout=5000")
            # Asked once: a writable outbox has the totals from here on; a read-only open of
            # one from before them counts instead (`_totals`).
            self._kept_totals = self._has_totals()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _has_totals(self) -> bool:
        return bool(
            self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'totals'"
            ).fetchone()
        )

    def bind(self, sender: str, chain: str, now_ms: int) -> None:
        """Claim a new outbox for `sender` on `chain`, or check an existing one belongs to them.

        Raises:
            ConfigError: the outbox holds another gateway's or another chain's messages.
        """
        with self._tx():
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            for key, want in (("sender", sender), ("chain", chain)):
                have = rows.get(key)
                if have is None:
                    self._db.execute("INSERT INTO meta VALUES (?, ?)", (key, want))
                elif have != want:
                    raise ConfigError(
                        f"outbox {self.path} belongs to {key} {have[:16]}, but the config "
                        f"gives {want[:16]}; restore the right [gateway] key/chain or move the "
                        "outbox away (its unsent messages would be lost)"
                    )
            for stream in STREAMS:
                self._db.execute(
                    "INSERT OR IGNORE INTO seq VALUES (?, ?)", (stream, max(1, now_ms))
                )

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def memory(self, device: str) -> DeviceMemory:
        """What the outbox remembers of `device` (empty for a new device)."""
        row = self._db.execute(
            "SELECT import_wh, export_wh, read_interval, read_id FROM device WHERE name = ?",
            (device,),
        ).fetchone()
        if row is None:
            return DeviceMemory()
        return DeviceMemory(
            import_wh=row[0], export_wh=row[1], read_interval=row[2], read_id=row[3]
        )

    def store(
        self,
        device: str,
        bodies: Sequence[Body],
        memory: DeviceMemory,
        sign: Signer,
    ) -> tuple[tuple[Envelope, ...], DeviceMemory]:
        """Sign and store `bodies` and the device's new memory in one transaction.

        Each body gets the next seq of its stream; a `MeterRead` advances the device's hash
        chain to the new message's id. Nothing is stored if anything fails.

        Returns:
            The stored envelopes and the memory as persisted.

        Raises:
            OutboxError: the database could not be written (disk full, I/O error).
        """
        envelopes: list[Envelope] = []
        try:
            with self._tx():
                for body in bodies:
                    (seq,) = self._db.execute(
                        "SELECT next FROM seq WHERE stream = ?", (body.STREAM,)
                    ).fetchone()
                    env = sign(body, seq)
                    payload = env.to_bytes()
                    self._db.execute(
                        "INSERT INTO message (stream, seq, kind, device, ts_ms, payload) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (env.stream, seq, env.kind, device, env.ts_ms, payload),
                    )
                    self._db.execute(
                        "UPDATE seq SET next = ? WHERE stream = ?", (seq + 1, body.STREAM)
                    )
                    if isinstance(body, MeterRead):
                        memory = after_meter_read(memory, body, env.message_id())
                    envelopes.append(env)
                if self.keep_tx_until == "committed" and any(b.STREAM == "tx" for b in bodies):
                    self._resend_late_tx()
                self._db.execute(
                    "INSERT OR REPLACE INTO device VALUES (?, ?, ?, ?, ?)",
                    (
                        device,
                        memory.import_wh,
                        memory.export_wh,
                        memory.read_interval,
                        memory.read_id or GENESIS,
                    ),
                )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc
        return tuple(envelopes), memory

    def pending(self, limit: int) -> list[Pending]:
        """Up to `limit` unacknowledged messages, oldest first."""
        rows = self._db.execute(
            "SELECT id, stream, seq, payload FROM message WHERE acked_ms IS NULL "
            "ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [Pending(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def acknowledge(self, row_ids: Iterable[int], now_ms: int) -> None:
        """Record PUBACKs: telemetry leaves; tx leaves or waits for commit (`keep_tx_until`)."""
        ids = list(row_ids)
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self._tx():
            if self.keep_tx_until == "committed":
                self._db.execute(
                    "UPDATE message SET acked_ms = ?, first_acked_ms = coalesce(first_acked_ms, ?) "  # noqa: S608
                    f"WHERE stream = 'tx' AND id IN ({marks})",
                    (now_ms, now_ms, *ids),
                )
                self._db.execute(
                    f"DELETE FROM message WHERE stream != 'tx' AND id IN ({marks})",  # noqa: S608
                    ids,
                )
            else:
                self._db.execute(f"DELETE FROM message WHERE id IN ({marks})", ids)  # noqa: S608
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_publish_ms', ?)", (str(now_ms),)
            )

    def resend_late(self) -> int:
        """Mark the tx messages the hub showed late for sending again now (`_resend_late_tx`).

        Returns:
            How many will be re-sent.
        """
        with self._tx():
            return self._resend_late_tx()

    def _resend_late_tx(self) -> int:
        """Mark acknowledged tx messages for send again from the first the hub showed late.

        Called in the transaction that stores a new tx message, so they go out before it,
        in seq order: a gateway's first transaction on chain must be its lowest waiting one
        (reads refused before the gateway was registered), or the later one would commit
        first and turn the earlier ones into replays.
        """
        # From the oldest late one on, every acknowledged one: a re-send with a hole in it
        # would let the chain commit the seq after the hole first.
        return self._db.execute(
            "UPDATE message SET acked_ms = NULL WHERE stream = 'tx' AND acked_ms IS NOT NULL "
            "AND seq >= (SELECT min(seq) FROM message WHERE stream = 'tx' "
            "AND acked_ms IS NOT NULL AND first_acked_ms <= (SELECT CAST(value AS INTEGER) "
            "FROM meta WHERE key = 'hub_checked_ms') - ?)",
            (LATE_MS,),
        ).rowcount

    def commit_through(self, stream: str, seq: int, now_ms: int | None = None) -> int:
        """The chain committed every message of `stream` up to `seq`: forget them.

        Progress also ends the re-send backoff (`republish_overdue`). `now_ms` is when the
        hub said so: acknowledged tx messages older than that (by `LATE_MS`) are late.

        Returns:
            How many messages left the outbox.
        """
        with self._tx():
            if now_ms is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('hub_checked_ms', ?)", (str(now_ms),)
                )
            self._db.execute(
                "INSERT INTO committed VALUES (?, ?) ON CONFLICT (stream) "
                "DO UPDATE SET seq = max(seq, excluded.seq)",
                (stream, seq),
            )
            cur = self._db.execute(
                "DELETE FROM message WHERE stream = ? AND seq <= ?", (stream, seq)
            )
            if cur.rowcount:
                self._db.execute("DELETE FROM meta WHERE key = 'republish_rounds'")
            return cur.rowcount

    def awaiting_commit(self) -> int:
        """How many tx messages the broker acknowledged and the chain has not committed yet."""
        return self.depth().awaiting_commit

    def committed(self, stream: str) -> int | None:
        """The highest seq of `stream` the chain is known to have committed, if any."""
        row = self._db.execute("SELECT seq FROM committed WHERE stream = ?", (stream,)).fetchone()
        return int(row[0]) if row else None

    def republish_overdue(self, now_ms: int, republish_ms: int) -> int:
        """Send acknowledged-but-uncommitted tx messages again, in order, when overdue.

        If the oldest acknowledged tx message has waited more than the re-send delay, every
        acknowledged tx message is marked unpublished again, so the uplink re-sends the whole
        uncommitted tail in seq order (the hub ignores the ones it already has). The delay
        is `republish_ms` at first and doubles with each re-send that brings no commit, up
        to `REPUBLISH_BACKOFF` times: a fleet whose hub API is down (or that keeps sending
        what the hub refuses) does not re-send its whole backlog every few minutes.

        Returns:
            How many messages will be re-sent.
        """
        with self._tx():
            (oldest,) = self._db.execute(
                "SELECT min(acked_ms) FROM message WHERE stream = 'tx' AND acked_ms IS NOT NULL"
            ).fetchone()
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = 'republish_rounds'"
            ).fetchone()
            rounds = int(row[0]) if row else 0
            delay = republish_ms * min(2**rounds, REPUBLISH_BACKOFF)
            if oldest is None or now_ms - oldest < delay:
                return 0
            cur = self._db.execute(
                "UPDATE message SET acked_ms = NULL WHERE stream = 'tx' AND acked_ms IS NOT NULL"
            )
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('republish_rounds', ?)", (str(rounds + 1),)
            )
            return cur.rowcount

    def depth(self) -> Depth:
        """Counts and bytes waiting in the outbox."""
        per = dict.fromkeys(STREAMS, 0)
        unpublished = size = awaiting = 0
        for stream, n, waiting, nbytes in self._totals():
            per[stream] = n
            unpublished += waiting
            size += nbytes
            if stream == "tx":  # acknowledged tx messages stay only until committed
                awaiting = n - waiting
        return Depth(per, unpublished, size, awaiting)

    def _totals(self) -> list[tuple[str, int, int, int]]:
        """(stream, messages, unpublished, bytes) per stream."""
        if self._kept_totals:
            return self._db.execute(
                "SELECT stream, messages, unpublished, bytes FROM totals"
            ).fetchall()
        # Read-only, on an outbox no gateway of this version has opened yet: count.
        return self._db.execute(
            "SELECT stream, count(*), sum(acked_ms IS NULL), sum(length(payload)) "
            "FROM message GROUP BY stream"
        ).fetchall()

    def last_publish_ms(self) -> int | None:
        """When the broker last acknowledged a message, unix ms."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_publish_ms'").fetchone()
        return int(row[0]) if row else None

    def next_seq(self, stream: str) -> int | None:
        """The seq the next message of `stream` will get."""
        row = self._db.execute("SELECT next FROM seq WHERE stream = ?", (stream,)).fetchone()
        return int(row[0]) if row else None

    def enforce_quota(self, quota_bytes: int, interval_ms: int) -> int:
        """Thin old telemetry until payload bytes fit the quota (see `edge.retention`).

        Returns:
            How many telemetry messages were dropped.
        """
        total = self.depth().payload_bytes
        if total <= quota_bytes:
            return 0
        rows = [
            TelemetryRow(r[0], r[1], r[2], r[3])
            for r in self._db.execute(
                "SELECT id, device, ts_ms, length(payload) FROM message "
                "WHERE stream = 'telemetry' ORDER BY id"
            ).fetchall()
        ]
        doomed = thinning_plan(rows, total - quota_bytes, interval_ms)
        with self._tx():
            for start in range(0, len(doomed), 500):
                chunk = doomed[start : start + 500]
                self._db.execute(
                    f"DELETE FROM message WHERE id IN ({','.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                )
        return len(doomed)


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


class OutboxThread:
    """Runs every call on an `Outbox` in one worker thread, so fsyncs never block the loop."""

    def __init__(self, outbox: Outbox) -> None:
        """Own `outbox` from now on (close it through `close`)."""
        self.outbox = outbox
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` in the outbox thread and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        """Finish queued calls, then close the database."""
        self._pool.shutdown(wait=True)
        self.outbox.close()
