"""Signed-message costs on one core: canonical encode, sign, parse+verify, per message.

    .venv/bin/python bench/wire_bench.py [--n 20000]

Prints operations per second and microseconds per operation (median of 5 runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from nacl.signing import SigningKey

from wire import canonical, envelope, kinds

BODY = kinds.Telemetry(
    device="meter1",
    power_w=-3250,
    voltage_dv=2304,
    frequency_mhz=49_987,
    import_wh=1_234_567,
    export_wh=765_432,
)


def measure(label: str, n: int, op: Callable[[int], object]) -> None:
    runs = []
    for _ in range(5):
        t0 = time.process_time()
        for i in range(n):
            op(i)
        runs.append((time.process_time() - t0) / n)
    per = statistics.median(runs)
    print(f"{label:<32} {1 / per:>10,.0f} /s  {per * 1e6:>8.1f} µs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20_000)
    n = ap.parse_args().n
    key = SigningKey(bytes(range(32)))
    env = envelope.sign(key, "gtx-bench", BODY, 1, 1_767_225_600_000)
    raw = env.to_bytes()
    obj = env.to_obj()
    print(f"telemetry message: {len(raw)} bytes; CPU time per operation on one core\n")
    measure("canonical encode", n, lambda _i: canonical.encode(obj))
    measure("canonical decode", n, lambda _i: canonical.decode(raw))
    measure("body validate (from_json)", n, lambda _i: kinds.Telemetry.from_json(obj["body"]))
    measure("sign (build+encode+Ed25519)", n, lambda i: envelope.sign(key, "gtx-bench", BODY, i, i))
    measure("parse + verify", n, lambda _i: envelope.parse(raw, "gtx-bench"))
    measure("message id (sha256)", n, lambda _i: env.message_id())


if __name__ == "__main__":
    main()
