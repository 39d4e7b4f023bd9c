"""How many gateways' "what committed?" questions one validator's API answers.

A gateway with `keep_tx_until = "committed"` asks `GET /v1/accounts/{gateway}` every
`[hub] poll_s` while its tx messages wait (edge/commits.py): after each interval boundary
every gateway has a meter read waiting, so N gateways put about N / poll_s requests per
second on the validators for a few seconds. This runs 4 real validators (`gtx hub run`)
on a loopback mosquitto and asks validator 0 from T client threads, each a new connection
per request as the gateways' urllib does, for a fixed time; prints requests/s, latency
percentiles and the validator's CPU.

    .venv/bin/python bench/commit_queries.py [--threads 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hub.hubnet import HubNet, wait_until  # noqa: E402
from tests.support import make_broker  # noqa: E402
from wire.keys import public_hex  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (100 Hz)


def ask(url: str, stop_at: float, latencies: list[float], errors: list[str]) -> None:
    """Ask `url` in a loop until `stop_at` (monotonic), one connection per request."""
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
        except OSError as exc:
            errors.append(str(exc))
            continue
        latencies.append(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8, help="concurrent askers")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to ask")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gtx-bench-") as tmp:
        broker = make_broker(Path(tmp))
        broker.start()
        net = HubNet(Path(tmp), broker.url, 4, chain="gtx-bench")
        try:
            net.start_all()
            wait_until("validators up", lambda: min(net.heights()) >= 1, 30)
            url = f"{net.urls[0]}/v1/accounts/{public_hex(net.clients[0])}"
            proc = net.procs[0]
            assert proc is not None
            cpu_before = cpu_seconds(proc.pid)
            per_thread: list[list[float]] = [[] for _ in range(args.threads)]
            errors: list[str] = []
            stop_at = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=ask, args=(url, stop_at, lat, errors)) for lat in per_thread
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            cpu = cpu_seconds(proc.pid) - cpu_before
            latencies = sorted(x for lat in per_thread for x in lat)
            q = statistics.quantiles(latencies, n=100)
            rate = len(latencies) / args.seconds
            print(
                f"validator API, GET /v1/accounts/{{id}}, {args.threads} askers, "
                f"{args.seconds:.0f} s: {rate:,.0f} requests/s, latency p50 {q[49] * 1000:.1f} "
                f"ms p99 {q[98] * 1000:.1f} ms, {len(errors)} errors, validator CPU "
                f"{cpu / args.seconds * 100:.0f} % of a core "
                f"({cpu / max(1, len(latencies)) * 1e6:.0f} µs per request)"
            )
            print(
                f"at poll_s = 15 one validator answers the questions of ~{rate * 15:,.0f} "
                "gateways waiting at once"
            )
        finally:
            net.close()
            broker.stop()


if __name__ == "__main__":
    main()
