"""A local hub network of real `gtx hub run` processes for end-to-end tests and benchmarks."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from hub.localnet import init_network, write_config
from tests.support import free_port
from wire.envelope import Envelope, sign
from wire.keys import public_hex
from wire.kinds import Transfer

ROOT = Path(__file__).resolve().parents[2]


def client_key(i: int) -> SigningKey:
    """A deterministic funded client account."""
    return SigningKey(hashlib.sha256(f"client-{i}".encode()).digest())


class HubNet:
    """N validators (processes) on one broker, each with its own free API port."""

    def __init__(
        self,
        directory: Path,
        mqtt_url: str,
        n: int = 4,
        *,
        chain: str = "gtx-e2e",
        params: dict[str, int] | None = None,
        clients: int = 4,
        mqtt: list[dict[str, str]] | None = None,
    ) -> None:
        self.directory = directory
        self.chain = chain
        self.clients = [client_key(i) for i in range(clients)]
        self.client_seq = [0] * clients
        defaults = {"bft_heartbeat_ms": 500, "bft_cap_ms": 2_000}
        net = init_network(
            directory / "net",
            validators=n,
            chain=chain,
            mqtt_url=mqtt_url,
            fund={public_hex(k): 10**12 for k in self.clients},
            params={**defaults, **(params or {})},
            time_ms=int(time.time() * 1000),
        )
        self.keys = net.keys
        self.ports = [free_port() for _ in range(n)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.configs = list(net.configs)
        for i, cfg in enumerate(self.configs):
            write_config(
                cfg,
                mqtt_url=mqtt_url,
                api_port=self.ports[i],
                peers=[u for j, u in enumerate(self.urls) if j != i],
                mqtt=None if mqtt is None else mqtt[i],
            )
        self.validators = n
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.http = httpx.Client(timeout=3.0)

    # ------------------------------------------------------------------ processes

    def start(self, i: int) -> None:
        log = open(self.directory / f"v{i}.log", "ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = ["hub", "run", "--config", str(self.configs[i])]
        if i >= self.validators:
            args.append("--follower")
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *args],
            stdout=log,
            stderr=log,
            env=env,
            cwd=ROOT,
        )
        log.close()

    def add_follower(self, mqtt_url: str) -> int:
        """Configure a non-voting follower (index after the validators); returns its index."""
        i = len(self.procs)
        fdir = self.directory / "net" / f"f{i}"
        fdir.mkdir()
        (fdir / "genesis.json").write_bytes((self.directory / "net" / "genesis.json").read_bytes())
        port = free_port()
        write_config(
            fdir / "hub.toml", mqtt_url=mqtt_url, api_port=port, peers=list(self.urls), key="none"
        )
        self.configs.append(fdir / "hub.toml")
        self.urls.append(f"http://127.0.0.1:{port}")
        self.ports.append(port)
        self.procs.append(None)
        return i

    def start_all(self) -> None:
        for i in range(self.validators):
            self.start(i)

    def stop(self, i: int, sig: int = signal.SIGTERM) -> None:
        proc = self.procs[i]
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.procs[i] = None

    def kill(self, i: int) -> None:
        self.stop(i, signal.SIGKILL)

    def close(self) -> None:
        for i in range(len(self.procs)):
            self.stop(i)
        self.http.close()

    def log(self, i: int) -> str:
        return (self.directory / f"v{i}.log").read_text(errors="replace")

    # ------------------------------------------------------------------ API

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            response = self.http.get(f"{self.urls[i]}/v1/status")
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        data: dict[str, Any] = response.json()
        return data

    def height(self, i: int) -> int:
        status = self.status(i)
        return -1 if status is None else int(status["height"])

    def heights(self, nodes: list[int] | None = None) -> list[int]:
        return [self.height(i) for i in (nodes if nodes is not None else range(len(self.procs)))]

    def block(self, i: int, height: int) -> dict[str, Any]:
        response = self.http.get(f"{self.urls[i]}/v1/blocks/{height}")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def transfer(self, client: int, amount: int = 1, to: int | None = None) -> Envelope:
        self.client_seq[client] += 1
        target = self.clients[(client + 1) % len(self.clients) if to is None else to]
        body = Transfer(to=public_hex(target), amount=amount)
        return sign(
            self.clients[client], self.chain, body, self.client_seq[client], int(time.time() * 1000)
        )

    def submit(self, i: int, env: Envelope) -> httpx.Response:
        return self.http.post(f"{self.urls[i]}/v1/tx", content=env.to_bytes())

    def tx_status(self, i: int, tx_id: str) -> str | None:
        """`pending`, `committed` or `rejected` on node `i`, None when it does not know it."""
        info = self.tx(i, tx_id)
        return None if info is None else str(info["status"])

    def tx(self, i: int, tx_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"{self.urls[i]}/v1/tx/{tx_id}")
        if response.status_code == 404:
            return None
        data: dict[str, Any] = response.json()
        return data


def wait_until(
    what: str, check: Callable[[], bool], timeout_s: float, poll_s: float = 0.1
) -> float:
    """Poll `check` until true; return the seconds it took; fail with `what` on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
