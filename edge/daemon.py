"""`gtx edge run`: the gateway daemon wiring buses, recorder, outbox, uplink and housekeeping.

One `asyncio.TaskGroup` holds a task per bus, the uplink, housekeeping (status file, quota,
systemd watchdog) and, if configured, the metrics server. SIGTERM or SIGINT publishes the
retained `offline` status, cancels the tasks, finishes pending outbox writes and exits 0.
A task that fails for good (the outbox cannot be written) stops the daemon with an error so
systemd restarts it; nothing is lost, the outbox is durable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

from nacl.signing import SigningKey

from edge import systemd
from edge.bus import Bus, link_for
from edge.commits import CommitWatcher
from edge.config import Settings, buses
from edge.metrics import serve_metrics
from edge.outbox import Outbox, OutboxThread
from edge.recorder import Recorder
from edge.scheduler import Policy
from edge.status import (
    CommitStatus,
    DeviceStatus,
    Snapshot,
    render_metrics,
    to_obj,
)
from edge.uplink import Uplink, birth_payload
from wire.keys import public_hex

log = logging.getLogger("gtx.edge")

HOUSEKEEPING_MS = 2000
"""Status file and watchdog period."""
QUOTA_EVERY = 5
"""Check the outbox quota every this many housekeeping rounds."""
STOP_SETTLE_S = 3.0
"""On SIGTERM, how long to wait for the broker to acknowledge what is in flight."""


def wall_clock_ms() -> int:
    """The real time, unix milliseconds (the one clock of the daemon)."""
    return time.time_ns() // 1_000_000


class Daemon:
    """The running gateway."""

    def __init__(self, settings: Settings, key: SigningKey) -> None:
        """Open the outbox and build every part (nothing runs until `run`).

        Raises:
            OutboxError: the outbox cannot be opened.
            ConfigError: the outbox belongs to another key or chain.
        """
        self.settings = settings
        self.gateway = public_hex(key)
        self.clock = wall_clock_ms
        self.started_ms = self.clock()
        outbox = Outbox(settings.outbox_path, settings.outbox.keep_tx_until)
        outbox.bind(self.gateway, settings.chain, self.started_ms)
        self.store = OutboxThread(outbox)
        memories = {d.name: outbox.memory(d.name) for d in settings.devices}
        devices = [d.name for d in settings.devices]
        self.uplink = Uplink(
            settings,
            self.gateway,
            self.store,
            lambda: birth_payload(self.gateway, settings.zone, devices, self.clock()),
            self.clock,
        )
        self.recorder = Recorder(settings, key, self.store, memories, self.uplink.wake.set)
        self.commits: CommitWatcher | None = None
        if settings.hub is not None and settings.outbox.keep_tx_until == "committed":
            self.commits = CommitWatcher(
                settings.hub, self.gateway, self.store, clock=self.clock, wake=self.uplink.wake.set
            )
        p = settings.polling
        policy = Policy(
            interval_ms=settings.interval_ms,
            retry_backoff_ms=p.retry_backoff_ms,
            degraded_after=p.degraded_after,
            degraded_poll_ms=p.degraded_poll_ms,
        )
        self.buses = [
            Bus(
                name,
                devs,
                link_for(devs[0].transport, p),
                policy,
                p.retries,
                self.recorder,
                self.clock,
            )
            for name, devs in buses(settings).items()
        ]
        self.thinned = 0
        self.snapshot: Snapshot | None = None
        slowest = max(max(d.poll_ms for d in settings.devices), p.degraded_poll_ms)
        worst_read = max(d.timeout_ms for d in settings.devices) * (p.retries + 1) * 8
        self.watchdog_limit_ms = 2 * slowest + worst_read + 10_000

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        metrics_server: asyncio.Server | None = None
        try:
            if self.settings.metrics_port is not None:
                metrics_server = await serve_metrics(
                    self.settings.metrics_host, self.settings.metrics_port, self._render
                )
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(bus.run(), name=f"bus {bus.name}") for bus in self.buses]
                tasks.append(tg.create_task(self.uplink.run(), name="uplink"))
                tasks.append(tg.create_task(self._housekeeping(), name="housekeeping"))
                if self.commits is not None:
                    tasks.append(tg.create_task(self.commits.run(), name="commits"))
                systemd.notify(f"READY=1\nSTATUS=polling {len(self.settings.devices)} devices")
                log.info(
                    "gateway %s running: %d devices on %d buses, outbox %s",
                    self.gateway,
                    len(self.settings.devices),
                    len(self.buses),
                    self.settings.outbox_path,
                )
                await stop.wait()
                log.info("stopping")
                systemd.notify("STOPPING=1")
                # Stop polling first, then let in-flight publishes get their PUBACK, so a
                # routine restart re-sends nothing; what is left waits in the outbox.
                for task in tasks[: len(self.buses)]:
                    task.cancel()
                left = await self.uplink.settle(STOP_SETTLE_S)
                if left:
                    log.info("%d messages stay in the outbox for the next start", left)
                await self.uplink.goodbye()
                for task in tasks:
                    task.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if metrics_server is not None:
                metrics_server.close()
            await asyncio.to_thread(self.store.close)
            if any(d.transport.kind == "iec61850" for d in self.settings.devices):
                from edge.iec61850 import close_worker_pool

                await asyncio.to_thread(close_worker_pool)

    def _render(self) -> str:
        return render_metrics(self.snapshot) if self.snapshot else ""

    async def _housekeeping(self) -> None:
        period_ms = systemd.watchdog_period_ms()
        rounds = 0
        while True:
            rounds += 1
            ob = self.store.outbox
            if rounds % QUOTA_EVERY == 0:
                dropped = await self.store.call(
                    ob.enforce_quota,
                    self.settings.outbox.quota_kb * 1024,
                    self.settings.interval_ms,
                )
                if dropped:
                    self.thinned += dropped
                    log.warning(
                        "outbox over its quota of %d KiB: thinned %d old telemetry messages "
                        "(meter_read and tx are kept)",
                        self.settings.outbox.quota_kb,
                        dropped,
                    )
            self.snapshot = await self.take_snapshot()
            await asyncio.to_thread(write_status, self.settings.status_path, self.snapshot)
            now = self.clock()
            activity = {bus.name: bus.last_activity_ms for bus in self.buses}
            if period_ms is not None and systemd.polling_healthy(
                activity, now, self.watchdog_limit_ms
            ):
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(min(HOUSEKEEPING_MS, period_ms or HOUSEKEEPING_MS) / 1000)

    async def take_snapshot(self) -> Snapshot:
        """The gateway's state now."""
        ob = self.store.outbox
        depth = await self.store.call(ob.depth)
        last_publish = await self.store.call(ob.last_publish_ms)
        devices = []
        for bus in self.buses:
            for name in bus.order:
                h = bus.health[name]
                if h.degraded:
                    state = "degraded"
                elif h.failures:
                    state = "failing"
                elif h.last_ok_ms is None:
                    state = "unknown"
                else:
                    state = "ok"
                devices.append(
                    DeviceStatus(
                        name=name,
                        bus=bus.name,
                        describe=bus.devices[name].describe(),
                        state=state,
                        polls=h.polls,
                        errors=h.errors,
                        rejected=bus.rejected[name],
                        last_ok_ms=h.last_ok_ms,
                        last_error=h.last_error,
                        error_kinds=dict(bus.error_kinds[name]),
                    )
                )
        m = self.settings.mqtt
        commits = None
        if self.commits is not None:
            commits = CommitStatus(
                hub_url=self.commits.hub.url,
                committed_seq=self.commits.committed,
                awaiting=depth.awaiting_commit,
                errors=self.commits.errors,
                last_error=self.commits.last_error,
                registered=self.commits.registered,
            )
        return Snapshot(
            gateway=self.gateway,
            chain=self.settings.chain,
            zone=self.settings.zone,
            pid=os.getpid(),
            started_ms=self.started_ms,
            now_ms=self.clock(),
            broker_connected=self.uplink.connected,
            broker_url=m.url,
            devices=tuple(devices),
            outbox=depth.messages,
            outbox_unpublished=depth.unpublished,
            outbox_bytes=depth.payload_bytes,
            published=dict(self.uplink.published),
            last_publish_ms=last_publish,
            thinned=self.thinned,
            latency=self.uplink.latency,
            commits=commits,
        )


def write_status(path: Path, snapshot: Snapshot) -> None:
    """Replace the status file atomically (write a temporary file, then rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_obj(snapshot), sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
