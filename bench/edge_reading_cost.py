"""CPU cost of one reading through the gateway: decode + check + sign + persist + publish.

Runs the gateway's own code in one process: SDM630 register images (made beforehand by the
simulator, so its cost is not counted) are decoded with the profile, checked by the intake,
signed, stored in the SQLite outbox (WAL, synchronous=FULL, one transaction per reading) and
published by the uplink to a real mosquitto on loopback (QoS 1; deleted at PUBACK). CPU is
the process's user+system time over all threads; mosquitto's own CPU is not included.

    .venv/bin/python bench/edge_reading_cost.py [--readings 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import parse_settings
from edge.outbox import Outbox, OutboxThread
from edge.recorder import Recorder
from edge.uplink import Uplink, birth_payload
from hw.decode import decode_profile
from hw.profile import load_profile
from hw.sim.device import SimulatedDevice
from tests.support import make_broker
from wire.keys import generate_key, public_hex


def config(tmp: Path, url: str) -> str:
    return f"""
[gateway]
key = "{tmp}/k"
chain = "gtx-local"
zone = "pea/bench"
state_dir = "{tmp}"
interval_s = 60
[mqtt]
url = "{url}"
[[device]]
name = "m1"
profile = "sdm630"
transport = "tcp://127.0.0.1:1"
"""


async def run(n: int, tmp: Path, url: str) -> dict[str, float]:
    settings = parse_settings(config(tmp, url))
    key = generate_key()
    gw = public_hex(key)
    profile = load_profile("sdm630")
    sim = SimulatedDevice(profile)
    t0 = 1_767_225_600_000  # 2026-01-01 07:00 Bangkok
    images = [dict(sim.image(t0 + i * 1000)) for i in range(n)]
    ob = Outbox(settings.outbox_path)
    ob.bind(gw, settings.chain, t0)
    store = OutboxThread(ob)
    now = lambda: time.time_ns() // 1_000_000  # noqa: E731
    uplink = Uplink(settings, gw, store, lambda: birth_payload(gw, "pea/bench", ["m1"], now()), now)
    recorder = Recorder(settings, key, store, {}, uplink.wake.set)
    device = settings.devices[0]
    task = asyncio.create_task(uplink.run())
    while not uplink.connected:
        await asyncio.sleep(0.01)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i, image in enumerate(images):
        reading = decode_profile(profile, image)
        problems = await recorder(device, reading, t0 + i * 1000)
        if problems:
            raise SystemExit(f"reading {i} rejected: {problems}")
    while (await store.call(ob.depth)).messages["telemetry"] or uplink.published["tx"] < 1:
        await asyncio.sleep(0.001)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.to_thread(store.close)
    published = uplink.published["telemetry"] + uplink.published["tx"]
    return {
        "readings": n,
        "messages": published,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_reading": cpu * 1000 / n,
        "readings_per_cpu_s": n / cpu,
        "readings_per_wall_s": n / wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = make_broker(tmp)
        broker.start()
        try:
            r = asyncio.run(run(args.readings, tmp, broker.url))
        finally:
            broker.stop()
    print(f"readings                 {r['readings']:.0f} (messages published {r['messages']:.0f})")
    print(f"CPU per reading          {r['cpu_ms_per_reading']:.3f} ms")
    print(f"readings/s on one core   {r['readings_per_cpu_s']:.0f} (CPU-bound figure)")
    print(f"readings/s wall clock    {r['readings_per_wall_s']:.0f} (one fsync per reading)")
    print(f"peak RSS                 {r['peak_rss_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
