"""Finality latency and throughput of real hub validators over a loopback mosquitto.

For 4 and 7 validators (`gtx hub run` processes) on this machine: gateways' transfers are
published on `gtx/v1/{chain}/gw/{key}/tx` (QoS 1) at a steady offered rate, then as fast as
possible (saturation). Finality latency is publish -> the finalized block carrying the
transaction arriving on `gtx/v1/{chain}/blocks`; throughput is committed transactions per
second over the run.

    .venv/bin/python bench/consensus_latency.py [--validators 4 7] [--rate 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from tests.hub.hubnet import HubNet, wait_until  # noqa: E402
from tests.support import make_broker  # noqa: E402
from wire.envelope import sign  # noqa: E402
from wire.keys import public_hex  # noqa: E402
from wire.kinds import Transfer  # noqa: E402

CLIENTS = 64


class Watcher:
    """Subscribes to the blocks topic; records when each tx id is seen in a finalized block."""

    def __init__(self, port: int, chain: str) -> None:
        self.seen: dict[str, float] = {}
        self.blocks = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"gtx/v1/{chain}/blocks", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        block = json.loads(msg.payload)["body"]["block"]
        with self.lock:
            self.blocks += 1
            for text in block["txs"]:
                self.seen.setdefault(hashlib.sha256(text.encode()).hexdigest(), now)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_load(net: HubNet, port: int, rate: float | None, count: int, label: str) -> None:
    keys = net.clients
    envs = []
    for k in range(count):
        c = k % len(keys)
        net.client_seq[c] += 1
        body = Transfer(to=public_hex(keys[(c + 1) % len(keys)]), amount=1)
        envs.append(sign(keys[c], net.chain, body, net.client_seq[c], int(time.time() * 1000)))
    watcher = Watcher(port, net.chain)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    sent: dict[str, float] = {}
    start = time.monotonic()
    for k, env in enumerate(envs):
        if rate is not None:
            due = start + k / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sent[env.message_id()] = time.monotonic()
        pub.publish(f"gtx/v1/{net.chain}/gw/{env.sender}/tx", env.to_bytes(), qos=1)
    offered_s = time.monotonic() - start

    def done() -> bool:
        with watcher.lock:
            return len(watcher.seen.keys() & sent.keys()) >= count

    try:
        wait_until(f"{count} txs committed", done, 60 + count / 200, 0.05)
    except AssertionError as exc:
        print(f"  {label}: {exc}")
    with watcher.lock:
        lat = sorted((watcher.seen[t] - s) * 1000 for t, s in sent.items() if t in watcher.seen)
        last = max((watcher.seen[t] for t in sent if t in watcher.seen), default=start)
    watcher.close()
    pub.loop_stop()
    pub.disconnect()
    if not lat:
        print(f"  {label}: nothing committed")
        return
    span = last - start
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"  {label:<22} offered {count / offered_s:8.0f} tx/s  committed {len(lat):6d} "
        f"in {span:5.1f}s = {len(lat) / span:7.0f} tx/s  finality p50 {p50:6.0f} ms  "
        f"p99 {p99:6.0f} ms  max {lat[-1]:6.0f} ms"
    )


def bench(n: int, rate: float, seconds: float, burst: int, nodelay: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="gtx-bench-") as tmp:
        directory = Path(tmp)
        broker = make_broker(directory)
        if nodelay:
            # Without it, Nagle's algorithm holds small messages for up to ~40 ms per hop.
            broker.conf.write_text(broker.conf.read_text() + "set_tcp_nodelay true\n")
        broker.start()
        net = HubNet(
            directory,
            broker.url,
            n,
            chain="gtx-bench",
            clients=CLIENTS,
            params={"bft_heartbeat_ms": 10_000},
        )
        try:
            net.start_all()
            wait_until("validators up", lambda: min(net.heights()) >= 0, 30)
            time.sleep(1.0)
            print(f"{n} validators (broker set_tcp_nodelay {str(nodelay).lower()}):")
            run_load(net, broker.port, 20.0, int(20 * seconds / 2), "light (20 tx/s)")
            run_load(net, broker.port, rate, int(rate * seconds), f"steady ({rate:.0f} tx/s)")
            run_load(net, broker.port, None, burst, f"saturation ({burst} burst)")
            top = min(net.heights())
            hashes = {net.block(i, top)["hash"] for i in range(n)}
            print(f"  height {top}, all validators agree: {len(hashes) == 1}")
        finally:
            net.close()
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--validators", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--rate", type=float, default=200.0, help="steady offered tx/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase length")
    parser.add_argument("--burst", type=int, default=20_000, help="saturation tx count")
    parser.add_argument(
        "--nagle", action="store_true", help="leave the broker's set_tcp_nodelay off (default on)"
    )
    args = parser.parse_args()
    for n in args.validators:
        bench(n, args.rate, args.seconds, args.burst, not args.nagle)


if __name__ == "__main__":
    main()
