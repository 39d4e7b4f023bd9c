"""The outbox's housekeeping with a long backlog: what the gateway does every 2 s.

A broker outage of days leaves hundreds of thousands of messages in the outbox. Every 2 s
the daemon reads the outbox depth for its status file and metrics, and every few rounds it
checks the disk quota; while draining, the uplink reads the next batch and acknowledges it.
This fills an outbox with `--messages` telemetry messages of a typical size (the rows go
in through SQL, one transaction, so the triggers that keep the totals run as they do for
each stored reading), then times those calls.

    .venv/bin/python bench/outbox_backlog.py [--messages 300000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.outbox import Outbox

PAYLOAD = b"x" * 420  # a signed SDM630 telemetry envelope is about this size


def timed(fn: Callable[[], object], runs: int = 50) -> tuple[float, float]:
    """Median and max wall time of `fn` in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    """Fill an outbox, time the housekeeping calls, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=300_000, help="backlog size")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outbox.sqlite"
        ob = Outbox(path)
        db = ob._db
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO message (stream, seq, kind, device, ts_ms, payload) "
            "VALUES ('telemetry', ?, 'telemetry', 'm1', ?, ?)",
            ((i, i * 1000, PAYLOAD) for i in range(args.messages)),
        )
        db.execute("COMMIT")
        print(f"backlog                  {args.messages} messages, {path.stat().st_size >> 20} MiB")
        quota = path.stat().st_size * 2  # under quota: the check finds nothing to thin
        for kept in (True, False):
            # False: count the table, as the outbox did before it kept totals (and still
            # does when a read-only open meets an outbox from before them).
            ob._kept_totals = kept
            print("kept totals:" if kept else "counting the table:")
            for name, fn in (
                ("depth (status, metrics)", ob.depth),
                ("quota check", lambda: ob.enforce_quota(quota, 900_000)),
                ("next batch of 500", lambda: ob.pending(500)),
            ):
                median, worst = timed(fn, 50 if kept else 10)
                print(f"  {name:<24} median {median:.3f} ms, max {worst:.3f} ms")
        ids = [p.row_id for p in ob.pending(100 * 500)]
        batches = [ids[i : i + 500] for i in range(0, len(ids), 500)]
        for label, half in (("with the totals' triggers", batches[:50]), ("without", batches[50:])):
            if label == "without":
                db.executescript(
                    "DROP TRIGGER totals_insert; DROP TRIGGER totals_delete; "
                    "DROP TRIGGER totals_ack;"
                )
            start = time.perf_counter()
            for batch in half:
                ob.acknowledge(batch, now_ms=1)
            per = (time.perf_counter() - start) * 1000 / len(half)
            print(f"acknowledge 500, {label}: {per:.3f} ms per batch (one transaction, fsync)")
        ob.close()


if __name__ == "__main__":
    main()
