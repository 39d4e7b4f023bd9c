"""The machinery behind `gtx demo`: a broker, validators, simulated devices and gateways.

Everything binds 127.0.0.1 on free ports and lives in one temporary directory. Child
processes (mosquitto, `gtx hub run`, `gtx edge run`) are started in their own session so a
Ctrl-C in the terminal reaches only the demo, which stops them by PID (`Processes.stop_all`).
Simulated devices run inside the demo process, on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from wire.envelope import Envelope, parse, sign
from wire.errors import InvalidMessage
from wire.keys import generate_key, public_hex, save_key
from wire.kinds import Telemetry
from wire.struct import Body

DAY_MS = 86_400_000
BANGKOK_MS = 7 * 3_600_000


class StageError(Exception):
    """A demo stage failed; the message says what and where to look."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_ms() -> int:
    """Wall clock, unix ms."""
    return time.time_ns() // 1_000_000


def noon_clock(target_local_ms: int = 12 * 3_600_000 + 1_800_000) -> Callable[[], int]:
    """A clock running at real speed but showing Bangkok at `target_local_ms` (12:30) now.

    The simulated devices' physics read it, so their panels produce at any hour of the day.
    """
    local = (now_ms() + BANGKOK_MS) % DAY_MS
    offset = (target_local_ms - local + DAY_MS // 2) % DAY_MS - DAY_MS // 2
    return lambda: now_ms() + offset


@dataclass
class Child:
    """A child process and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 12) -> str:
        """The last lines of its log, indented."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class Processes:
    """Every child process the demo started, stopped by PID in reverse order."""

    logdir: Path
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str]) -> Child:
        """Start `argv` with its output in `logdir/name.log`, in a session of its own."""
        log = self.logdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 (our own argv, no shell)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise `StageError` if a child exited.

        Raises:
            StageError: naming the child, its exit code and the end of its log.
        """
        for c in self.children:
            code = c.proc.poll()
            if code is not None:
                raise StageError(
                    f"{c.name} (pid {c.proc.pid}) exited with code {code}:\n{c.tail()}"
                )

    def stop_all(self, timeout_s: float = 8.0) -> list[int]:
        """SIGTERM every child (the broker last), SIGKILL what is left; returns the PIDs."""
        pids = [c.proc.pid for c in self.children]
        broker = [c for c in self.children if c.name == "mosquitto"]
        others = [c for c in self.children if c.name != "mosquitto"]
        for group in (others, broker):
            for c in group:
                if c.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        c.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            for c in group:
                try:
                    c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        c.proc.kill()
                    c.proc.wait()
        self.children.clear()
        return pids


def gtx(*args: str) -> list[str]:
    """Argv running `gtx ARGS` with this interpreter."""
    return [sys.executable, "-m", "gridtokenx.cli", *args]


def mosquitto_path() -> str | None:
    """The mosquitto executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def start_broker(procs: Processes, exe: str, workdir: Path) -> int:
    """Start mosquitto on a free loopback port; returns the port."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "max_queued_messages 100000\n"
        "persistence false\n"
        "log_dest stdout\n"
        "log_type error\nlog_type warning\n",
        encoding="utf-8",
    )
    procs.spawn("mosquitto", [exe, "-c", str(conf)])
    return port


async def wait_port(port: int, timeout_s: float) -> bool:
    """Whether something listens on 127.0.0.1:port within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def write_key(path: Path) -> SigningKey:
    """A fresh Ed25519 key saved at `path` (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    save_key(key, path)
    return key


@dataclass(frozen=True)
class DeviceSpec:
    """One simulated device behind a gateway."""

    name: str
    profile: str
    transport: str
    source: str
    capacity_w: int
    unit: int = 1


def write_edge_config(
    path: Path,
    *,
    key: Path,
    chain: str,
    zone: str,
    interval_s: int,
    mqtt_port: int,
    devices: list[DeviceSpec],
    hub_url: str | None = None,
) -> None:
    """An edge.toml for one gateway (see docs/examples/edge.toml).

    With `hub_url` the gateway keeps its meter reads until that validator shows them
    committed, asking every second and re-sending after 5 s (a demo's pace, not a field's).
    """
    lines = [
        "[gateway]",
        f"key = {json.dumps(str(key.resolve()))}",
        f"chain = {json.dumps(chain)}",
        f"zone = {json.dumps(zone)}",
        f"state_dir = {json.dumps(str(path.parent.resolve()))}",
        f"interval_s = {interval_s}",
        "",
        "[mqtt]",
        f'url = "mqtt://127.0.0.1:{mqtt_port}"',
        "",
    ]
    if hub_url is not None:
        lines += ["[outbox]", "republish_s = 5", "", "[hub]", f"url = {json.dumps(hub_url)}"]
        lines += ["poll_s = 1", ""]
    for d in devices:
        lines += [
            "[[device]]",
            f"name = {json.dumps(d.name)}",
            f"profile = {json.dumps(d.profile)}",
            f"transport = {json.dumps(d.transport)}",
            f"source = {json.dumps(d.source)}",
            "poll_ms = 1000",
        ]
        if not d.transport.startswith("iec61850"):
            lines.append(f"unit = {d.unit}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


class Api:
    """Async client of the validators' REST APIs."""

    def __init__(self, urls: list[str], chain: str) -> None:
        """Talk to `urls` (validator K at urls[K])."""
        self.urls = urls
        self.chain = chain
        self.http = httpx.AsyncClient(timeout=5.0)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def get(self, path: str, i: int = 0, **params: Any) -> Any:
        """GET a JSON document from validator `i`."""
        r = await self.http.get(self.urls[i] + path, params=params or None)
        r.raise_for_status()
        return r.json()

    async def try_get(self, path: str, i: int = 0, **params: Any) -> Any:
        """Like `get`, but None on any error."""
        try:
            return await self.get(path, i, **params)
        except (httpx.HTTPError, ValueError):
            return None

    async def submit(self, key: SigningKey, body: Body, seq: int | None = None) -> str:
        """Sign `body` with `key` and post it (like `gtx tx`); returns the tx id.

        Raises:
            StageError: the hub refused it.
        """
        me = public_hex(key)
        if seq is None:
            committed = (await self.get(f"/v1/accounts/{me}"))["seq"]
            seq = max(committed + 1, now_ms())
        env = sign(key, self.chain, body, seq, now_ms())
        r = await self.http.post(
            self.urls[0] + "/v1/tx",
            content=env.to_bytes(),
            headers={"content-type": "application/json"},
        )
        if r.status_code != 202:
            raise StageError(f"POST /v1/tx refused {env.kind}: {r.text}")
        return str(r.json()["id"])

    async def committed(self, tx_ids: list[str], timeout_s: float) -> list[dict[str, Any]]:
        """Wait until every tx is committed or rejected.

        Raises:
            StageError: one was rejected, or not decided in time.
        """
        deadline = time.monotonic() + timeout_s
        done: dict[str, dict[str, Any]] = {}
        while len(done) < len(tx_ids):
            if time.monotonic() > deadline:
                raise StageError(f"{len(tx_ids) - len(done)} transaction(s) not committed in time")
            for tid in tx_ids:
                if tid in done:
                    continue
                found = await self.try_get(f"/v1/tx/{tid}")
                if found and found.get("status") in ("committed", "rejected"):
                    if found["status"] == "rejected":
                        raise StageError(f"transaction {tid[:12]}… rejected: {found.get('reason')}")
                    done[tid] = found
            await asyncio.sleep(0.25)
        return [done[t] for t in tx_ids]


@dataclass
class Observer:
    """Subscribes to every gateway's telemetry and tx topics and verifies what flows."""

    chain: str
    port: int
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    invalid: int = 0
    latest: dict[tuple[str, str], Telemetry] = field(default_factory=dict)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Verify one message and count it per (gateway, kind)."""
        try:
            env: Envelope = parse(payload, self.chain)
        except InvalidMessage:
            self.invalid += 1
            return
        gateway = topic.split("/")[4]
        self.counts[(gateway, env.kind)] += 1
        if isinstance(env.body, Telemetry):
            self.latest[(gateway, env.body.device)] = env.body

    async def run(self) -> None:
        """Listen until cancelled (reconnecting if the broker drops us)."""
        import aiomqtt

        root = f"gtx/v1/{self.chain}/gw/+"
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier="gtx-demo-observer"
                ) as c:
                    await c.subscribe([(f"{root}/telemetry", 1), (f"{root}/tx", 1)])
                    self.connected.set()
                    async for msg in c.messages:
                        if isinstance(msg.payload, bytes):
                            self.on_message(str(msg.topic), msg.payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def background(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    """Run `coro` as a task for the duration of the `async with`."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
