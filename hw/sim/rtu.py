"""Modbus RTU simulator on a pseudo-terminal, with honest RS-485 wire timing.

The simulator opens a pty pair, links `link_path` to the client side (the path a gateway
opens like `/dev/ttyUSB0`), and serves RTU frames on the master side: several unit ids
share the link, exactly as on one RS-485 bus; units it does not simulate stay silent.

With a baud rate set, the link behaves like the wire: a request occupies the bus for its
length in characters (10 bits per character for 8N1, 11 for 8E1/8O1), the device answers
no sooner than 3.5 characters after the request ends, and response bytes are delivered no
faster than the baud rate. Without a baud rate the link answers at once, for fast tests.

The RTU framing (CRC-16/MODBUS, frame length by function code) is implemented here,
small and strict: a frame with a bad CRC is dropped, as a real device would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from hw.profile import Function, Profile
from hw.sim.device import DeviceOptions, Fault, SimulatedDevice, Site, devices_for_units
from hw.sim.tcp import Clock, wall_clock_ms

_FUNCTIONS: dict[int, Function] = {3: "holding", 4: "input"}


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of `data` (initial 0xFFFF, reflected polynomial 0xA001)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """Append the CRC, low byte first, as RTU sends it."""
    return body + crc16(body).to_bytes(2, "little")


def request_length(buffer: bytes) -> int | None:
    """Length of the request frame at the start of `buffer`, None if not yet known.

    Reads (FC1-4) and single writes (FC5, FC6) are 8 bytes; multiple writes (FC15, FC16)
    carry a byte count. Other function codes are answered as illegal after a silence.
    """
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (1, 2, 3, 4, 5, 6):
        return 8
    if function in (15, 16):
        return 9 + buffer[6] if len(buffer) >= 7 else None
    return None


def char_bits(parity: str, stopbits: int = 1) -> int:
    """Bits on the wire per character: start + 8 data + parity + stop."""
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


@dataclass(frozen=True, slots=True)
class RtuSimulator:
    """A running RTU simulator."""

    link_path: str
    """Path of the symlink to the client side of the pty (open it like /dev/ttyUSB0)."""
    devices: dict[int, SimulatedDevice]
    """Simulated device per unit id."""
    baud: int | None
    """Emulated bit rate, None for instant answers."""
    parity: str
    """Parity the link emulates (N, E or O); changes only the timing."""

    def url(self, baud: int | None = None) -> str:
        """Transport string for `edge.modbus.parse_transport`.

        Always parity N: Linux ptys reject parity settings (tcsetattr EINVAL), so the
        client opens the pty as 8N1 while the simulator times the wire as 8E1/8O1.
        """
        return f"rtu://{self.link_path}?baud={baud or self.baud or 9600}&parity=N"


class RtuLink:
    """Serves RTU frames for several units on the master side of a pty."""

    def __init__(
        self,
        devices: dict[int, SimulatedDevice],
        master_fd: int,
        baud: int | None,
        parity: str,
        clock: Clock,
    ) -> None:
        """Serve `devices` on `master_fd`; timing per `baud`/`parity` (None: no timing)."""
        self._devices = devices
        self._fd = master_fd
        self._clock = clock
        self._baud = baud
        self._char_s = char_bits(parity) / baud if baud else 0.0
        self._buffer = b""
        self._frames: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._first_byte_at = 0.0
        self._bus_free_at = 0.0
        self._loop = asyncio.get_running_loop()
        self._silence: asyncio.TimerHandle | None = None
        self.frames_served = 0
        """Responses written, for tests and benchmarks."""

    @property
    def _gap_s(self) -> float:
        # 3.5 characters; the Modbus spec fixes 1.75 ms above 19200 baud.
        if not self._baud:
            return 0.0
        return 0.00175 if self._baud > 19200 else 3.5 * self._char_s

    def on_readable(self) -> None:
        """Loop reader callback: collect bytes and cut them into frames."""
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return
        now = self._loop.time()
        if not self._buffer:
            self._first_byte_at = now
        self._buffer += data
        self._cut_frames()
        if self._silence is not None:
            self._silence.cancel()
        self._silence = self._loop.call_later(max(self._gap_s, 0.05), self._on_silence)

    def _cut_frames(self) -> None:
        while (length := request_length(self._buffer)) is not None and len(self._buffer) >= length:
            frame, self._buffer = self._buffer[:length], self._buffer[length:]
            if crc16(frame) == 0:
                self._frames.put_nowait((frame, self._first_byte_at))
            else:
                # Resynchronise: a real device waits for silence; drop what we have.
                self._buffer = b""
            self._first_byte_at = self._loop.time()

    def _on_silence(self) -> None:
        """A silence ends any frame: an unknown function code or a broken tail."""
        self._silence = None
        frame, self._buffer = self._buffer, b""
        if len(frame) >= 4 and crc16(frame) == 0:
            self._frames.put_nowait((frame, self._first_byte_at))

    async def run(self) -> None:
        """Answer frames one at a time, like a half-duplex bus."""
        while True:
            frame, arrived = await self._frames.get()
            await self._serve(frame, arrived)

    async def _serve(self, frame: bytes, arrived: float) -> None:
        start = max(arrived, self._bus_free_at + self._gap_s)
        request_end = start + len(frame) * self._char_s
        self._bus_free_at = request_end
        unit, function = frame[0], frame[1]
        device = self._devices.get(unit)
        if device is None or device.fault == "timeout":
            return
        try:
            answer = self._answer(device, unit, function, frame)
        except Exception:  # a simulator bug must not kill the bus: answer "device failure"
            logging.getLogger(__name__).exception("unit %d: cannot serve %s", unit, frame.hex())
            answer = with_crc(bytes((unit, function | 0x80, 4)))
        if device.fault == "garbage":
            answer = bytes(b ^ 0xA5 for b in answer[:-2]) + b"\x00\x00\x13\x37"
        await self._transmit(answer, request_end + self._gap_s)
        self.frames_served += 1

    def _answer(self, device: SimulatedDevice, unit: int, function: int, frame: bytes) -> bytes:
        table = _FUNCTIONS.get(function)
        if table is None:
            return with_crc(bytes((unit, function | 0x80, 1)))
        address = int.from_bytes(frame[2:4], "big")
        count = int.from_bytes(frame[4:6], "big")
        if not 1 <= count <= 125 or address + count > 0x10000:
            return with_crc(bytes((unit, function | 0x80, 3)))
        result = device.read(table, address, count, self._clock())
        if isinstance(result, int):
            return with_crc(bytes((unit, function | 0x80, result)))
        payload = b"".join(v.to_bytes(2, "big") for v in result)
        return with_crc(bytes((unit, function, len(payload))) + payload)

    async def _transmit(self, data: bytes, not_before: float) -> None:
        """Write `data`, never faster than the emulated baud rate."""
        if not self._char_s:
            self._write(data)
            return
        sent = 0
        while sent < len(data):
            now = self._loop.time()
            due = (
                min(len(data), int((now - not_before) / self._char_s) + 1)
                if now >= not_before
                else 0
            )
            if due > sent:
                self._write(data[sent:due])
                sent = due
            if sent < len(data):
                wake = not_before + sent * self._char_s
                await asyncio.sleep(max(wake - self._loop.time(), 0.0005))
        self._bus_free_at = not_before + len(data) * self._char_s

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                continue
            view = view[written:]


@asynccontextmanager
async def serve_rtu(
    profile: Profile,
    link_path: str | Path,
    units: Sequence[int] = (1,),
    baud: int | None = None,
    parity: str = "N",
    site: Site | None = None,
    faults: dict[int, Fault] | None = None,
    clock: Clock = wall_clock_ms,
    options: DeviceOptions | None = None,
) -> AsyncIterator[RtuSimulator]:
    """Serve simulated devices over Modbus RTU on a pty for the duration of the `async with`.

    Args:
        profile: register map every unit serves.
        link_path: where to create the symlink to the client side (must not exist).
        units: unit ids sharing the link.
        baud: emulated bit rate (None: answer instantly).
        parity: N, E or O (timing only: 10 or 11 bits per character).
        site: physics parameters (unit `u` uses seed `site.seed + u`).
        faults: unit id -> misbehaviour.
        clock: time source in unix ms.
        options: SunSpec base and models, starting counters, update period.

    Yields:
        The running simulator.
    """
    if parity not in ("N", "E", "O"):
        raise ValueError(f"parity must be N, E or O, not {parity!r}")
    devices = devices_for_units(profile, units, site or Site(), dict(faults or {}), options)
    master, slave = os.openpty()
    link = Path(link_path)
    task: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    try:
        tty.setraw(slave)
        os.set_blocking(master, False)
        link.symlink_to(os.ttyname(slave))
        server = RtuLink(devices, master, baud, parity, clock)
        loop.add_reader(master, server.on_readable)
        task = asyncio.create_task(server.run(), name=f"rtu-sim {link}")
        yield RtuSimulator(str(link), devices, baud, parity)
    finally:
        loop.remove_reader(master)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(FileNotFoundError):
            if link.is_symlink():
                link.unlink()
        os.close(master)
        os.close(slave)
