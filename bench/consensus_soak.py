"""Consensus soak: thousands of seeded simulations with every fault; prints what happened.

Each seed mixes message delays (reordering), drops, duplicates, a partition, a crash with
restart from disk, and up to f Byzantine validators (equivocating, voting for random blocks,
or silent), then heals. Safety (no two honest validators commit different blocks, no honest
validator signs conflicting votes) is checked on every commit; liveness is judged at the end
(every honest validator at least 3 blocks past where the best one stood at healing).

    .venv/bin/python bench/consensus_soak.py [--seeds 2000] [--n 4 7] [--start 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hub.simulation import SafetyViolation, random_scenario, run  # noqa: E402


def soak(n: int, seeds: range) -> bool:
    started = time.monotonic()
    unsafe: list[int] = []
    stuck: list[int] = []
    heights: list[int] = []
    txs = evidence = messages = 0
    faults: Counter[str] = Counter()
    for seed in seeds:
        scenario = random_scenario(seed, n)
        faults.update(scenario.byzantine.values())
        faults["crash"] += len(scenario.crashes)
        faults["partition"] += len(scenario.partitions)
        faults[f"drop {scenario.drop:.2f}"] += 1
        try:
            report = run(scenario)
        except SafetyViolation as exc:
            unsafe.append(seed)
            print(f"  SAFETY VIOLATION seed {seed}: {exc}")
            continue
        base = max(report.heights_at_heal.values())
        if min(report.heights.values()) < base + 3:
            stuck.append(seed)
            print(f"  stuck: seed {seed}: {report.heights_at_heal} -> {report.heights}")
        heights.append(min(report.heights.values()))
        txs += report.committed_txs
        evidence += report.evidence
        messages += report.messages
    took = time.monotonic() - started
    runs = len(seeds)
    print(f"n={n}: {runs} seeds in {took:.0f}s ({1000 * took / runs:.0f} ms per seed)")
    print(f"  safety violations: {len(unsafe)}   stuck after healing: {len(stuck)} {stuck[:20]}")
    if heights:
        print(
            f"  committed height per run: median {statistics.median(heights):.0f}, "
            f"min {min(heights)}; txs {txs}; evidence committed {evidence}; messages {messages}"
        )
    print("  faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
    return not unsafe and not stuck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2000, help="seeds per validator count")
    parser.add_argument("--n", type=int, nargs="+", default=[4, 7], help="validator counts")
    parser.add_argument("--start", type=int, default=10_000, help="first seed (tests use 0..)")
    args = parser.parse_args()
    ok = all(soak(n, range(args.start, args.start + args.seeds)) for n in args.n)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
