"""RS-485 bus efficiency: 8 simulated SDM630s on one 9600-baud Modbus RTU link.

The simulator (`python -m hw.sim --rtu-link ... --baud 9600`) emulates the wire: each
character takes 10 bit times (8N1), a device answers 3.5 characters after the request
ends, and bytes arrive no faster than the baud rate. `gtx edge run` polls all 8 meters
as fast as the bus allows (poll_ms = 100, far below what the bus can serve), and the
readings per second it completes are compared with the wire limit: the time the bytes and
mandatory silences of one reading's read plan take at 9600 baud, with zero device and
gateway latency.

    .venv/bin/python bench/edge_rtu_efficiency.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.plan import plan_reads
from hw.profile import load_profile
from tests.edge.harness import (
    make_key,
    start_gateway,
    start_rtu_sim,
    stop,
    wait_until,
    write_config,
)
from tests.support import make_broker

BAUD = 9600
BITS_PER_CHAR = 10  # 8N1
METERS = 8


def wire_seconds_per_reading(profile_name: str) -> tuple[float, int, int]:
    """Bytes and silences of one reading at BAUD: (seconds, requests, bytes)."""
    plan = plan_reads(load_profile(profile_name).measured_points())
    char_s = BITS_PER_CHAR / BAUD
    total_bytes = 0
    for req in plan:
        request = 8  # unit, fc, address(2), count(2), crc(2)
        response = 5 + 2 * req.count  # unit, fc, byte count, data, crc(2)
        total_bytes += request + response
    silences = 2 * 3.5 * len(plan)  # before the answer and before the next request
    return (total_bytes + silences) * char_s, len(plan), total_bytes


def completed(status_path: Path) -> tuple[int, int]:
    obj = json.loads(status_path.read_text())
    good = sum(d["polls"] - d["errors"] for d in obj["devices"])
    return good, obj["now_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--profile", default="sdm630")
    args = parser.parse_args()
    per_reading, requests, nbytes = wire_seconds_per_reading(args.profile)
    limit = 1 / per_reading
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = make_broker(tmp)
        broker.start()
        link = tmp / "ttyBENCH0"
        sim = start_rtu_sim(tmp, link, args.profile, f"1-{METERS}", BAUD)
        key, _ = make_key(tmp)
        config = write_config(
            tmp,
            key,
            broker.url,
            [
                {
                    "name": f"m{u}",
                    "profile": args.profile,
                    "transport": f"rtu://{link}?baud={BAUD}&parity=N",
                    "unit": u,
                    "poll_ms": 100,
                    "timeout_ms": 1000,
                }
                for u in range(1, METERS + 1)
            ],
            interval_s=900,
            extra="[polling]\nframe_gap_ms = 0",
        )
        gw = start_gateway(config, tmp)
        status = tmp / "state" / "status.json"
        try:
            wait_until(lambda: status.exists() and completed(status)[0] > 2 * METERS, 60, "polls")
            time.sleep(2)
            n0, t0 = completed(status)
            time.sleep(args.seconds)
            n1, t1 = completed(status)
            obj = json.loads(status.read_text())
        finally:
            stop(gw, signal.SIGTERM)
            stop(sim)
            broker.stop()
    rate = (n1 - n0) * 1000 / (t1 - t0)
    errors = sum(dev["errors"] for dev in obj["devices"])
    print(f"{METERS} x {args.profile} on one {BAUD}-baud RTU link (8N1), {args.seconds} s")
    print(f"read plan                {requests} requests, {nbytes} bytes per reading")
    print(f"wire limit               {limit:.2f} readings/s ({per_reading * 1000:.1f} ms each)")
    print(f"measured                 {rate:.2f} readings/s ({errors} failed polls)")
    print(f"bus efficiency           {100 * rate / limit:.1f} % of the wire limit")


if __name__ == "__main__":
    main()
