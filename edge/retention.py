"""What may leave the outbox without being published: quota thinning of old telemetry. Pure.

When the outbox's payload bytes exceed the quota (a long broker outage), old telemetry is
thinned in stages, oldest first and only as much as needed:

1. keep one telemetry message per device per minute;
2. keep one per device per delivery interval;
3. drop the oldest telemetry.

`meter_read` and every other `tx`-stream message are never candidates: settlement needs them
all. The thinned seqs leave gaps in the telemetry stream, which the hub tolerates (telemetry
is for monitoring, not on chain).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    """A telemetry message waiting in the outbox, as thinning sees it."""

    row_id: int
    """Outbox row id (insertion order)."""
    device: str
    """Device name."""
    ts_ms: int
    """Reading time, unix ms."""
    size: int
    """Payload bytes."""


def thinning_plan(
    rows: Sequence[TelemetryRow], excess_bytes: int, interval_ms: int
) -> tuple[int, ...]:
    """Row ids to delete so that at least `excess_bytes` are freed, if telemetry allows.

    Args:
        rows: telemetry rows, oldest first.
        excess_bytes: payload bytes above the quota (<= 0 means nothing to do).
        interval_ms: the delivery interval, the second stage's bucket.

    Returns:
        Ids to delete, oldest first within each stage. Frees less than asked only when
        every telemetry row is gone.
    """
    doomed: list[int] = []
    gone: set[int] = set()
    freed = 0
    for bucket_ms in (MINUTE_MS, max(interval_ms, MINUTE_MS), 0):
        if freed >= excess_bytes:
            break
        kept: set[tuple[str, int]] = set()
        for row in rows:
            if row.row_id in gone:
                continue
            if bucket_ms:
                bucket = (row.device, row.ts_ms // bucket_ms)
                if bucket not in kept:
                    kept.add(bucket)
                    continue
            doomed.append(row.row_id)
            gone.add(row.row_id)
            freed += row.size
            if freed >= excess_bytes:
                break
    return tuple(doomed)
