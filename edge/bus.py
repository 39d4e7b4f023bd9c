"""The bus shell: one asyncio task per physical bus, one request at a time on it.

`Bus.run` asks the pure scheduler (`edge.scheduler`) who is due, reads that device through
its link (`ModbusLink` for TCP and RTU, `Iec61850Link` for MMS), hands the reading to the
recorder, and feeds the outcome back to the scheduler. A device that fails is retried with
backoff and, once degraded, polled rarely, so it never holds up the others. Outages are
logged once at ERROR and then at DEBUG until the device answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from edge import modbus
from edge.config import DeviceSettings, PollingSettings
from edge.errors import DeviceError, DeviceTimeout, DeviceUnreachable, FrameError
from edge.scheduler import Health, Policy, after_failure, after_success, became_degraded, next_poll
from edge.transport import Transport
from hw.measurement import Measurements
from hw.sunspec import SunSpecMap

log = logging.getLogger("gtx.edge.bus")

Clock = Callable[[], int]
"""Returns unix milliseconds."""
Recorder = Callable[[DeviceSettings, Measurements, int], Awaitable[tuple[str, ...]]]
"""Takes (device, reading, reading time ms); returns the problems that rejected it."""


class Link(Protocol):
    """A way to read devices on one bus."""

    async def read(self, device: DeviceSettings, retries: int) -> Measurements:
        """One reading of `device`, or a `DeviceError`."""

    async def close(self) -> None:
        """Release the transport."""


class ModbusLink:
    """One pymodbus client shared by every device of a TCP endpoint or serial port."""

    def __init__(self, transport: Transport, frame_gap_ms: int) -> None:
        """Prepare a link (connects on first read)."""
        self._transport = transport
        self._gap_s = frame_gap_ms / 1000 if transport.kind == "rtu" else 0.0
        self._client: modbus.ModbusClient | None = None
        self._sunspec: dict[str, SunSpecMap] = {}

    async def _connected(self, timeout_s: float) -> modbus.ModbusClient:
        if self._client is not None and not self._client.connected:
            await self.close()
        if self._client is None:
            self._client = await modbus.open_client(self._transport, timeout_s, "bus")
            # A unit that never answers must not make pymodbus drop the shared connection.
            self._client.set_max_no_responses(1_000_000)
        return self._client

    async def read(self, device: DeviceSettings, retries: int) -> Measurements:
        """Read `device` through the shared client (SunSpec discovery cached per device).

        Raises:
            DeviceError: any failure, already translated by `edge.modbus`.
        """
        timeout_s = device.timeout_ms / 1000
        label = f"{device.name} ({device.profile})"  # edge.modbus appends transport and unit
        profile = device.spec
        try:
            client = await self._connected(timeout_s)
        except DeviceError as exc:
            raise DeviceUnreachable(device.describe(), exc.reason) from None
        try:
            smap = self._sunspec.get(device.name)
            if profile.protocol == "sunspec" and smap is None:
                smap = await modbus.discover_sunspec(client, profile, device.unit, retries, label)
                self._sunspec[device.name] = smap
            return await modbus.read_measurements(
                client,
                profile,
                device.unit,
                timeout_s,
                retries,
                name=label,
                sunspec_map=smap,
            )
        except FrameError:
            self._sunspec.pop(device.name, None)  # the device may have been replaced
            raise
        finally:
            if self._gap_s:
                await asyncio.sleep(self._gap_s)

    async def close(self) -> None:
        """Close the client; the next read reconnects."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


class Iec61850Link:
    """Reads an IEC 61850 server (each read in a worker process, see `edge.iec61850`)."""

    def __init__(self, transport: Transport) -> None:
        """Prepare a link to one MMS server."""
        self._transport = transport

    async def read(self, device: DeviceSettings, retries: int) -> Measurements:
        """One reading over MMS; `retries` extra tries when the server does not answer.

        Raises:
            DeviceError: any failure, named after the device, of the subclass that says what
                went wrong (the metrics count failures by it).
        """
        from edge import iec61850

        t = self._transport
        tries = 0
        while True:
            try:
                return await iec61850.aread_measurements(
                    t.host, t.port, t.ld_name, device.timeout_ms
                )
            except DeviceError as exc:
                tries += 1
                if tries > retries or not isinstance(exc, DeviceTimeout | DeviceUnreachable):
                    raise type(exc)(device.describe(), exc.reason) from exc

    async def close(self) -> None:
        """Nothing to release per link (the worker pool is shared)."""


def link_for(transport: Transport, polling: PollingSettings) -> Link:
    """The link type serving `transport`."""
    if transport.kind == "iec61850":
        return Iec61850Link(transport)
    return ModbusLink(transport, polling.frame_gap_ms)


class Bus:
    """One physical bus: its devices, their health, and the polling loop."""

    def __init__(
        self,
        name: str,
        devices: tuple[DeviceSettings, ...],
        link: Link,
        policy: Policy,
        retries: int,
        recorder: Recorder,
        clock: Clock,
    ) -> None:
        """A bus polling `devices` through `link`; readings go to `recorder`."""
        self.name = name
        self.devices = {d.name: d for d in devices}
        self.order = tuple(d.name for d in devices)
        self.link = link
        self.policy = policy
        self.retries = retries
        self.recorder = recorder
        self.clock = clock
        now = clock()
        self.health = {d.name: Health(poll_ms=d.poll_ms, due_ms=now) for d in devices}
        self.rejected = dict.fromkeys(self.order, 0)
        self.error_kinds: dict[str, dict[str, int]] = {d.name: {} for d in devices}
        self.last_activity_ms = now
        """When the loop last completed a poll (for the watchdog)."""

    async def run(self) -> None:
        """Poll forever (until cancelled)."""
        try:
            while True:
                await self.poll_next()
        finally:
            await self.link.close()

    async def poll_next(self) -> None:
        """Wait until the next device is due, then poll it once."""
        name, due = next_poll(self.health, self.order)
        while (now := self.clock()) < due:
            await asyncio.sleep((due - now) / 1000)
        await self.poll(name, now)

    async def poll(self, name: str, now_ms: int) -> None:
        """Read device `name` once and record the outcome."""
        device = self.devices[name]
        before = self.health[name]
        retries = 0 if before.degraded else self.retries
        try:
            reading = await self.link.read(device, retries)
        except DeviceError as exc:
            self._failed(device, before, str(exc), type(exc).__name__, now_ms)
            return
        finally:
            self.last_activity_ms = self.clock()
        problems = await self.recorder(device, reading, now_ms)
        if problems:
            self.rejected[name] += 1
            reason = f"{device.describe()}: reading rejected: {'; '.join(problems)}"
            self._failed(device, before, reason, "Rejected", now_ms)
            return
        after = after_success(before, self.policy, now_ms)
        if before.failures:
            log.warning(
                "%s answers again after %d failed polls", device.describe(), before.failures
            )
        self.health[name] = after

    def _failed(
        self, device: DeviceSettings, before: Health, reason: str, kind: str, now_ms: int
    ) -> None:
        kinds = self.error_kinds[device.name]
        kinds[kind] = kinds.get(kind, 0) + 1
        after = after_failure(before, self.policy, now_ms, reason)
        self.health[device.name] = after
        if before.failures == 0:
            log.error("%s", reason)
        elif became_degraded(before, after):
            log.error(
                "%s: degraded after %d failed polls; polling it every %d ms until it answers",
                device.describe(),
                after.failures,
                after.due_ms - now_ms,
            )
        else:
            log.debug("%s", reason)
