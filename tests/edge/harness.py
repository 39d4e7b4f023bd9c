"""Real processes for gateway tests: simulators, `gtx edge run`, and a verifying subscriber."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support import free_port, wait_port
from wire.envelope import parse
from wire.keys import generate_key, public_hex, save_key

CHAIN = "gtx-local"
PY = sys.executable


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    try:
        return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
    finally:
        handle.close()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    """Signal a process we started (by PID) and wait for it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class TcpSim:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def transport(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


def start_tcp_sim(
    tmp: Path, device: str = "sdm630", units: str = "1", faults: tuple[str, ...] = ()
) -> TcpSim:
    port = free_port()
    args = [PY, "-m", "hw.sim", "--device", device, "--tcp", f"127.0.0.1:{port}", "--units", units]
    for f in faults:
        args += ["--fault", f]
    proc = spawn(args, tmp / f"sim-{port}.log")
    wait_port(port, 20)
    return TcpSim(proc, port)


def start_rtu_sim(
    tmp: Path, link: Path, device: str, units: str, baud: int
) -> subprocess.Popen[bytes]:
    args = [
        PY,
        "-m",
        "hw.sim",
        "--device",
        device,
        "--rtu-link",
        str(link),
        "--units",
        units,
        "--baud",
        str(baud),
    ]
    proc = spawn(args, tmp / "rtu-sim.log")
    deadline = time.monotonic() + 20
    while not link.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError((tmp / "rtu-sim.log").read_text())
        time.sleep(0.05)
    return proc


def make_key(tmp: Path) -> tuple[Path, str]:
    key = generate_key()
    path = tmp / "gateway.key"
    save_key(key, path)
    return path, public_hex(key)


def write_config(
    tmp: Path,
    key: Path,
    broker_url: str,
    devices: list[dict[str, object]],
    interval_s: int = 3,
    extra: str = "",
) -> Path:
    lines = [
        "[gateway]",
        f'key = "{key}"',
        f'chain = "{CHAIN}"',
        'zone = "pea/ayutthaya/sub-01/feeder-3"',
        f'state_dir = "{tmp / "state"}"',
        f"interval_s = {interval_s}",
        "[mqtt]",
        f'url = "{broker_url}"',
        "keepalive_s = 5",
        "publish_timeout_ms = 3000",
        extra,
    ]
    for dev in devices:
        lines.append("[[device]]")
        for k, v in dev.items():
            lines.append(f"{k} = {json.dumps(v)}")
    path = tmp / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_gateway(config: Path, tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn(
        [PY, "-m", "gridtokenx.cli", "edge", "run", "--config", str(config), *extra],
        tmp / "gateway.log",
    )


@dataclass
class Subscriber:
    """A paho MQTT v5 subscriber with a persistent session: it misses nothing the broker keeps."""

    port: int
    topic: str
    payloads: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: mqtt.Client | None = None
    last_received: float = 0.0
    """`time.monotonic()` when the last message arrived."""

    def start(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"verifier-{self.port}",
            protocol=mqtt.MQTTv5,
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600

        def on_connect(c: mqtt.Client, *_args: object) -> None:
            c.subscribe(self.topic, qos=1)

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.payloads.append((msg.topic, bytes(msg.payload)))
                self.last_received = time.monotonic()

        client.on_connect = on_connect
        client.on_message = on_message
        client.reconnect_delay_set(0.1, 0.5)
        client.connect("127.0.0.1", self.port, keepalive=5, clean_start=False, properties=props)
        client.loop_start()
        self.client = client
        deadline = time.monotonic() + 10
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError("subscriber could not connect")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.payloads)


@dataclass
class Verdict:
    seqs: dict[str, list[int]]
    kinds: dict[str, int]
    devices: dict[str, int]
    status: list[bytes]
    duplicates: int


def verify(messages: list[tuple[str, bytes]], gateway: str) -> Verdict:
    """Every message verifies, sits on its stream's topic, and re-sends are identical.

    Returns the distinct seqs per stream (sorted) for contiguity checks by the caller.
    """
    by_seq: dict[tuple[str, int], bytes] = {}
    kinds: dict[str, int] = defaultdict(int)
    devices: dict[str, int] = defaultdict(int)
    status: list[bytes] = []
    duplicates = 0
    reads: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    prefix = f"gtx/v1/{CHAIN}/gw/{gateway}/"
    for topic, payload in messages:
        assert topic.startswith(prefix), topic
        leaf = topic[len(prefix) :]
        if leaf == "status":
            status.append(payload)
            continue
        env = parse(payload, CHAIN)
        assert env.sender == gateway
        assert leaf == env.stream, (leaf, env.kind)
        key = (env.stream, env.seq)
        if key in by_seq:
            assert by_seq[key] == payload, f"different message under used seq {key}"
            duplicates += 1
            continue
        by_seq[key] = payload
        kinds[env.kind] += 1
        devices[env.body.device] += 1  # type: ignore[attr-defined]
        if env.kind == "meter_read":
            reads[env.body.device].append((env.seq, env.body.prev, env.message_id()))  # type: ignore[attr-defined]
    for chain in reads.values():
        chain.sort()
        for (_, _, before), (_, prev, _) in itertools.pairwise(chain):
            assert prev == before, "meter_read prev does not chain to the previous read"
    seqs: dict[str, list[int]] = defaultdict(list)
    for stream, seq in sorted(by_seq):
        seqs[stream].append(seq)
    return Verdict(dict(seqs), dict(kinds), dict(devices), status, duplicates)


def assert_contiguous(seqs: list[int], first: int | None = None, last: int | None = None) -> None:
    assert seqs, "no messages"
    lo = seqs[0] if first is None else first
    hi = seqs[-1] if last is None else last
    missing = sorted(set(range(lo, hi + 1)) - set(seqs))
    assert not missing, f"{len(missing)} seqs missing between {lo} and {hi}: {missing[:10]}"


def outbox_next_seqs(state: Path) -> dict[str, int]:
    import sqlite3

    db = sqlite3.connect(state / "outbox.sqlite")
    try:
        return dict(db.execute("SELECT stream, next FROM seq").fetchall())
    finally:
        db.close()


def sent_through(sub: Subscriber, gateway: str, backlog: dict[str, int]) -> bool:
    """Whether the subscriber got every stream up to `backlog` (next seqs read earlier)."""
    seqs = verify(sub.snapshot(), gateway).seqs
    return all(bool(seqs.get(s)) and seqs[s][-1] >= backlog[s] - 1 for s in backlog)


def status_pid(state: Path) -> int | None:
    """The pid in the gateway's status file, None before the first one (or mid-replace)."""
    try:
        return int(json.loads((state / "status.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def outbox_rows(state: Path) -> int:
    import sqlite3

    db = sqlite3.connect(state / "outbox.sqlite")
    try:
        return int(db.execute("SELECT count(*) FROM message").fetchone()[0])
    finally:
        db.close()


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def env_without_notify() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    return env
