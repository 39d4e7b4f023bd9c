"""Modbus TCP simulator: pymodbus `ModbusTcpServer` serving simulated devices.

Each unit id is a pymodbus `SimDevice` (pymodbus 3.10+ names: device, not slave) whose
register blocks span the profile's register image; an `action` hook refills the
requested registers from the physics on every read. Unknown unit ids get exception 0x0B
(gateway target failed to respond), like a Modbus TCP gateway. Faults are injected on the
byte stream: `timeout` drops the answer, `garbage` scrambles it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hw.profile import Function, Profile
from hw.sim.device import DeviceOptions, Fault, SimulatedDevice, Site, devices_for_units
from hw.sim.encoding import image_span

Clock = Callable[[], int]
"""Returns the current time in unix milliseconds."""

_FUNCTIONS: dict[int, Function] = {3: "holding", 4: "input", 6: "holding", 16: "holding"}


def wall_clock_ms() -> int:
    """The real time in unix milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TcpSimulator:
    """A running TCP simulator."""

    host: str
    """Bound address."""
    port: int
    """Bound TCP port."""
    devices: dict[int, SimulatedDevice]
    """Simulated device per unit id (ask them for the truth: `devices[1].reading(t)`)."""

    @property
    def url(self) -> str:
        """Transport string for `edge.modbus.parse_transport`."""
        return f"tcp://{self.host}:{self.port}"


async def _serve_action(
    device: SimulatedDevice,
    clock: Clock,
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    function = _FUNCTIONS.get(function_code)
    if function is None or set_values:
        return ExcCodes.ILLEGAL_FUNCTION
    result = device.read(function, address, count, clock())
    if isinstance(result, int):
        return ExcCodes(result)
    registers[address - start_address : address - start_address + count] = result
    return None


async def _missing_unit(*_args: object) -> ExcCodes | None:
    return ExcCodes.GATEWAY_NO_RESPONSE


def _sim_device(unit: int, device: SimulatedDevice, clock: Clock) -> SimDevice:
    spans = image_span(device.image(clock()))
    blocks: list[list[SimData]] = []
    for function in ("holding", "input"):
        lo, hi = spans.get(function, (0, 1))
        blocks.append([SimData(lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)])
    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    return SimDevice(
        id=unit,
        simdata=(bits, list(bits), blocks[0], blocks[1]),
        action=functools.partial(_serve_action, device, clock),
    )


def _fault_filter(faults: dict[int, Fault]) -> Callable[[bool, bytes], bytes]:
    def trace(sending: bool, packet: bytes) -> bytes:
        # MBAP header: transaction(2) protocol(2) length(2) unit(1), then the PDU.
        if not sending or len(packet) < 7:
            return packet
        fault = faults.get(packet[6])
        if fault == "timeout":
            return b""
        if fault == "garbage":
            return packet[:7] + bytes(b ^ 0x5A for b in packet[7:])
        return packet

    return trace


@asynccontextmanager
async def serve_tcp(
    profile: Profile,
    host: str = "127.0.0.1",
    port: int = 0,
    units: Sequence[int] = (1,),
    site: Site | None = None,
    faults: dict[int, Fault] | None = None,
    clock: Clock = wall_clock_ms,
    options: DeviceOptions | None = None,
) -> AsyncIterator[TcpSimulator]:
    """Serve simulated devices over Modbus TCP for the duration of the `async with`.

    Args:
        profile: register map every unit serves.
        host: address to bind (tests: 127.0.0.1).
        port: TCP port, 0 for a free one.
        units: unit ids to answer for (each gets seed `site.seed + unit`).
        site: physics parameters.
        faults: unit id -> misbehaviour.
        clock: time source in unix ms (tests pass a fixed or stepped clock).
        options: SunSpec base and models, starting counters, update period.

    Yields:
        The running simulator with its bound port and devices.
    """
    faults = dict(faults or {})
    devices = devices_for_units(profile, units, site or Site(), faults, options)
    sim_devices = [_sim_device(u, d, clock) for u, d in devices.items()]
    sim_devices.append(
        SimDevice(
            id=0,
            simdata=(
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, count=0x10000, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=0x10000, values=0, datatype=DataType.REGISTERS)],
            ),
            action=_missing_unit,
        )
    )
    server = ModbusTcpServer(sim_devices, address=(host, port), trace_packet=_fault_filter(faults))
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:  # pymodbus' only word for a failed bind
        raise OSError(
            f"cannot listen on tcp {host}:{port}: the port is in use or the address is not "
            "this machine's; choose another HOST:PORT"
        ) from exc
    try:
        sockets = getattr(server.transport, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        yield TcpSimulator(host, int(bound), devices)
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]
        await asyncio.sleep(0)
