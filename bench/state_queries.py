"""API queries over a large state: an owner's certificates, a page of all of them.

The hub's API answers from the validator's event loop, so a query that walks a whole table
delays consensus for as long as it runs. This fills a state store with `--certs` renewable
energy certificates (one per settled renewable trade, so a year of a busy network holds
millions) spread over `--owners` owners, then times the queries the API serves: one
owner's certificates (owner index) and one page of all certificates, against a scan of
the table as the API did before the index.

    .venv/bin/python bench/state_queries.py [--certs 200000] [--owners 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.state.certificates import Certificate
from hub.state.queries import certificates_of
from hub.state.state import INDEXES, SCHEMA, Meta, State
from hub.state.store import Overlay, Store


def timed(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of `fn`, ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    """Fill a store, time the queries, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--certs", type=int, default=200_000)
    ap.add_argument("--owners", type=int, default=2_000)
    args = ap.parse_args()
    store = Store(SCHEMA, INDEXES)
    store.load("meta", "chain", Meta(chain="gtx-bench"))
    start = time.perf_counter()
    for i in range(args.certs):
        owner = f"{i % args.owners:064x}"
        cid = f"cert:{i:064x}"
        cert = Certificate(cid, owner, "solar", "pea/x/f1", 0, 100, 0, 40, f"{i:064x}")
        store.load("certs", cid, cert)
    print(f"store                    {args.certs} certificates, {args.owners} owners "
          f"(filled in {time.perf_counter() - start:.1f} s)")  # fmt: skip
    view = State(Overlay(store), 0, 0)
    owner = f"{7:064x}"
    per_owner = args.certs // args.owners

    def scan() -> list[Certificate]:  # what the API did before the owner index
        return [c for _k, c in view.ov.items("certs") if c.owner == owner]

    indexed = timed(lambda: certificates_of(view, owner), 20)
    page = timed(lambda: certificates_of(view, None, "", 1000), 5)
    scanned = timed(scan, 3)
    print(f"one owner's {per_owner} (index)   median {indexed:.2f} ms")
    print(f"a page of 1000 of all    median {page:.1f} ms")
    print(f"one owner's by a scan    median {scanned:.0f} ms (before the index)")


if __name__ == "__main__":
    main()
