"""Modbus client shell: read a device's profile over TCP or RTU, scan a bus.

The parts that need no I/O (device descriptions, error translation) are plain functions;
transports come from `edge.transport`. The async functions only move registers between
pymodbus and the pure cores in `hw` (plan, SunSpec discovery, decode). Every pymodbus or
serial failure leaves this module as an `edge.errors.DeviceError` whose message names the device and
says what to check.

pymodbus quirks handled here: the client's own retries are set to 0 (we retry, so the
message can count tries); the per-request timeout lives in `client.comm_params`; after
`retries + 3` unanswered requests a TCP client drops its connection, so scans raise that
limit; garbled RTU answers are silently discarded by pymodbus' framer, so received bytes
are counted to tell "garbage on the line" from "no answer"; a garbled TCP answer makes
pymodbus drop the connection, so a read stops trying once the client is disconnected and
still reports the garbage (`FrameError`), not the disconnect that followed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.exceptions import ModbusException as PymodbusError

from edge.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    FrameError,
    ImplausibleReading,
    ModbusException,
)
from edge.transport import Transport, parse_transport
from hw.decode import DecodeError, decode_profile, plausibility_problems
from hw.measurement import Measurements
from hw.plan import DEFAULT_MAX_GAP, ReadRequest, plan_reads
from hw.profile import Function, Profile
from hw.sunspec import DEFAULT_BASES, Discovery, SunSpecError, SunSpecMap, resolve_profile

EXCEPTION_ADVICE = {
    1: "illegal function: the device does not support this read; check the profile",
    2: "illegal data address: the register is not in this device; check the profile model",
    3: "illegal data value: check the profile's register counts",
    4: "device failure: the device reported an internal error; power-cycle it",
    5: "acknowledge: the device is busy with a long command; retry later",
    6: "device busy: retry later",
    8: "memory parity error in the device",
    10: "gateway path unavailable: check the gateway's routing for this unit id",
    11: "gateway target failed to respond: check the unit id and the device behind the gateway",
}
"""What each Modbus exception code means for an operator."""

_GATEWAY_CODES = frozenset({10, 11})
_BUSY_CODES = frozenset({5, 6})
_RX_BYTES: weakref.WeakKeyDictionary[ModbusBaseClient, list[int]] = weakref.WeakKeyDictionary()

ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient


def describe_device(name: str, transport: Transport, unit: int) -> str:
    """`sdm630 on rtu /dev/ttyUSB0 unit 3`: how errors name a device."""
    return f"{name} on {transport.describe()} unit {unit}"


def _check_advice(transport: Transport) -> str:
    if transport.kind == "tcp":
        return "check the address, that the device or gateway is powered, and the unit id"
    return "check wiring (A/B), termination, unit id and baud rate"


def translate_error(
    exc: BaseException,
    device: str,
    transport: Transport,
    tries: int,
    garbled: bool = False,
) -> DeviceError:
    """Turn a pymodbus/serial/OS failure into the matching `DeviceError` (pure).

    Args:
        exc: what pymodbus or the OS raised.
        device: `describe_device(...)` of the device.
        transport: how it was reached.
        tries: requests sent before giving up.
        garbled: bytes arrived but never formed a valid frame.
    """
    if isinstance(exc, DeviceError):
        return exc
    speed = f" at {transport.baud} baud" if transport.kind == "rtu" else ""
    if garbled:
        if transport.kind == "tcp":
            advice = (
                "check that the port speaks Modbus TCP (not RTU over TCP) and that the "
                "gateway's serial side is set up right"
            )
        else:
            advice = (
                "check baud rate, parity, termination and for two devices with the same unit id"
            )
        return FrameError(
            device, f"garbled answer after {tries} tries{speed} (CRC or length errors); {advice}"
        )
    if isinstance(exc, ConnectionException | ConnectionError | FileNotFoundError | PermissionError):
        what = "cannot connect" if transport.kind == "tcp" else "cannot open serial port"
        return DeviceUnreachable(device, f"{what} ({exc}); {_check_advice(transport)}")
    if isinstance(exc, ModbusIOException | TimeoutError | asyncio.TimeoutError):
        return DeviceTimeout(
            device, f"no answer after {tries} tries{speed}; {_check_advice(transport)}"
        )
    if isinstance(exc, OSError):
        return DeviceUnreachable(device, f"I/O error {exc}; {_check_advice(transport)}")
    if isinstance(exc, DecodeError | SunSpecError):
        return FrameError(device, f"cannot decode the answer: {exc}")
    if isinstance(exc, PymodbusError):
        return FrameError(device, f"bad answer: {exc}")
    return FrameError(device, f"unexpected failure {type(exc).__name__}: {exc}")


def exception_error(device: str, code: int, request: ReadRequest) -> ModbusException:
    """The `ModbusException` for exception `code` answered to `request` (pure)."""
    advice = EXCEPTION_ADVICE.get(code, "unknown exception code")
    where = f"FC{request.function_code} {request.address}+{request.count}"
    return ModbusException(device, f"exception {code} to {where}: {advice}", code)


def client_for(transport: Transport, timeout_s: float = 1.0) -> ModbusClient:
    """A pymodbus client for `transport` (not connected; no pymodbus-level retries).

    Raises:
        ConfigError: `transport` is not a Modbus one (iec61850).
    """
    if transport.kind == "iec61850":
        raise ConfigError(f"{transport.url}: not a Modbus transport; use tcp:// or rtu://")
    counter = [0]

    def count_rx(sending: bool, data: bytes) -> bytes:
        if not sending:
            counter[0] += len(data)
        return data

    client: ModbusClient
    if transport.kind == "tcp":
        client = AsyncModbusTcpClient(
            transport.host,
            port=transport.port,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_packet=count_rx,
        )
    else:
        client = AsyncModbusSerialClient(
            transport.path,
            baudrate=transport.baud,
            parity=transport.parity,
            stopbits=transport.stopbits,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_packet=count_rx,
        )
    _RX_BYTES[client] = counter
    return client


async def open_client(
    transport: Transport, timeout_s: float = 1.0, name: str = "bus"
) -> ModbusClient:
    """Connect a client for `transport`.

    Raises:
        DeviceUnreachable: the TCP connection or serial port cannot be opened.
    """
    client = client_for(transport, timeout_s)
    label = f"{name} on {transport.describe()}"
    try:
        ok = await client.connect()
    except (OSError, PymodbusError) as exc:
        client.close()
        raise translate_error(ConnectionException(str(exc)), label, transport, 1) from exc
    if not ok:
        client.close()
        raise DeviceUnreachable(
            label,
            ("cannot connect; " if transport.kind == "tcp" else "cannot open serial port; ")
            + _check_advice(transport),
        )
    return client


def transport_of(client: ModbusBaseClient) -> Transport:
    """Recover the transport a pymodbus client was built for (for messages)."""
    params = client.comm_params
    if isinstance(client, AsyncModbusSerialClient):
        parity = str(params.parity or "N").upper()
        return Transport(
            "rtu",
            path=str(params.host),
            baud=int(params.baudrate or 9600),
            parity="E" if parity == "E" else "O" if parity == "O" else "N",
            stopbits=int(params.stopbits or 1),
        )
    return Transport("tcp", host=str(params.host), port=int(params.port or 502))


@dataclass(frozen=True, slots=True)
class _Target:
    client: ModbusBaseClient
    transport: Transport
    unit: int
    device: str
    retries: int
    backoff_s: float


async def _read_once(target: _Target, request: ReadRequest) -> list[int] | int:
    """One request: registers, or the exception code the device answered."""
    call = (
        target.client.read_holding_registers
        if request.function == "holding"
        else target.client.read_input_registers
    )
    response = await call(request.address, count=request.count, device_id=target.unit)
    if response.isError():
        return int(getattr(response, "exception_code", 0))
    registers = list(getattr(response, "registers", []))
    if len(registers) != request.count:
        raise FrameError(
            target.device,
            f"asked for {request.count} registers at {request.address}, got {len(registers)}",
        )
    return registers


async def _read(
    target: _Target, request: ReadRequest, allow_illegal: bool = False
) -> list[int] | None:
    """Read with retries; None for exception 2 when `allow_illegal` (SunSpec probing)."""
    counter = _RX_BYTES.get(target.client)
    tries = 0
    last: BaseException | None = None
    garbled = False
    while tries <= target.retries:
        if tries:
            await asyncio.sleep(target.backoff_s * 2 ** (tries - 1))
        tries += 1
        before = counter[0] if counter else 0
        try:
            result = await _read_once(target, request)
        except DeviceError:
            raise
        except (TimeoutError, PymodbusError, OSError) as exc:
            last = exc
            # Sticky: pymodbus drops a TCP connection after a garbled answer, so later tries
            # fail with "not connected" and must not hide the garbage that caused it.
            garbled = garbled or bool(counter and counter[0] > before)
            if not target.client.connected:
                break  # a dropped connection; the caller reconnects, retrying here cannot
            continue
        if isinstance(result, list):
            return result
        if result == 2 and allow_illegal:
            return None
        if result in _BUSY_CODES:
            last = exception_error(target.device, result, request)
            continue
        raise exception_error(target.device, result, request)
    error = last or ModbusIOException("no response")
    raise translate_error(error, target.device, target.transport, tries, garbled) from (
        None if isinstance(error, DeviceError) else error
    )


def _as_client(
    client_or_transport: ModbusBaseClient | Transport | str,
) -> tuple[ModbusBaseClient | None, Transport]:
    if isinstance(client_or_transport, ModbusBaseClient):
        return client_or_transport, transport_of(client_or_transport)
    if isinstance(client_or_transport, str):
        return None, parse_transport(client_or_transport)
    return None, client_or_transport


async def discover_sunspec(
    client: ModbusBaseClient,
    profile: Profile,
    unit: int,
    retries: int = 2,
    name: str | None = None,
) -> SunSpecMap:
    """Find a SunSpec device's marker and model chain.

    Raises:
        DeviceError: transport failure, or `FrameError` if the device is not SunSpec.
    """
    transport = transport_of(client)
    device = describe_device(name or profile.name, transport, unit)
    target = _Target(client, transport, unit, device, retries, 0.05)
    bases = profile.sunspec.bases if profile.sunspec else DEFAULT_BASES
    machine = Discovery(bases)
    while (request := machine.next_read()) is not None:
        machine.feed(await _read(target, request, allow_illegal=True))
    try:
        return machine.result()
    except SunSpecError as exc:
        raise FrameError(device, f"SunSpec discovery failed: {exc}") from exc


async def read_measurements(
    client_or_transport: ModbusBaseClient | Transport | str,
    profile: Profile,
    unit: int,
    timeout_s: float = 1.0,
    retries: int = 2,
    *,
    name: str | None = None,
    sunspec_map: SunSpecMap | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
    backoff_s: float = 0.05,
) -> Measurements:
    """Read and decode one reading of a device.

    Plans the fewest reads for the profile, runs SunSpec discovery for SunSpec profiles
    (pass `sunspec_map` to skip it), decodes, and checks the profile's physical limits.

    Args:
        client_or_transport: a connected pymodbus client (shared per bus), a `Transport`
            or a transport string (a client is opened and closed for this one read).
        profile: the device's profile.
        unit: Modbus unit id.
        timeout_s: per-request answer timeout in seconds.
        retries: extra tries per request after a timeout.
        name: device name for messages (defaults to the profile name).
        sunspec_map: cached SunSpec discovery result.
        max_gap: unused registers bridged between points (see `hw.plan`).
        backoff_s: pause before the first retry; doubles each retry.

    Raises:
        DeviceTimeout: no answer after all tries.
        DeviceUnreachable: the transport cannot be opened.
        ModbusException: the device answered with an exception code.
        FrameError: garbled or undecodable answer.
        ImplausibleReading: decoded values outside the profile's physical limits.
    """
    client, transport = _as_client(client_or_transport)
    owned = client is None
    if client is None:
        client = await open_client(transport, timeout_s, name or profile.name)
    client.comm_params.timeout_connect = timeout_s
    device = describe_device(name or profile.name, transport, unit)
    target = _Target(client, transport, unit, device, retries, backoff_s)
    try:
        resolved = profile
        if profile.protocol == "sunspec":
            smap = sunspec_map or await discover_sunspec(client, profile, unit, retries, name)
            try:
                resolved = resolve_profile(profile, smap)
            except SunSpecError as exc:
                raise FrameError(device, str(exc)) from exc
        image: dict[tuple[Function, int], int] = {}
        for request in plan_reads(resolved.measured_points(), max_gap=max_gap):
            registers = await _read(target, request)
            if registers is None:  # pragma: no cover - only with allow_illegal
                continue
            for offset, value in enumerate(registers):
                image[(request.function, request.address + offset)] = value
        try:
            reading = decode_profile(resolved, image)
        except DecodeError as exc:
            raise FrameError(device, f"cannot decode the answer: {exc}") from exc
        problems = plausibility_problems(resolved, reading)
        if problems:
            raise ImplausibleReading(device, "; ".join(problems))
        return reading
    finally:
        if owned:
            client.close()


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A unit id that answered a scan."""

    unit: int
    """Modbus unit id."""
    sunspec_base: int | None = None
    """Address of the SunS marker, None if the device is not SunSpec."""
    models: tuple[int, ...] = ()
    """SunSpec model ids in chain order."""
    note: str = ""
    """Anything odd (exception answers, garbled frames)."""


async def _probe(target: _Target, bases: Sequence[int]) -> ScanResult | None:
    """Probe one unit: None if silent, else what it is."""
    counter = _RX_BYTES.get(target.client)
    before = counter[0] if counter else 0
    first = ReadRequest("holding", bases[0], 2)
    try:
        answer = await _read_once(target, first)
    except (TimeoutError, PymodbusError, OSError, DeviceError):
        if counter and counter[0] > before:
            return ScanResult(target.unit, note="garbled answer")
        return None
    if isinstance(answer, int) and answer in _GATEWAY_CODES:
        return None
    if isinstance(answer, int) and answer != 2:
        return ScanResult(
            target.unit, note=f"exception {answer}: {EXCEPTION_ADVICE.get(answer, '')}"
        )
    machine = Discovery(bases)
    machine.feed(answer if isinstance(answer, list) else None)
    try:
        while (request := machine.next_read()) is not None:
            machine.feed(await _read(target, request, allow_illegal=True))
        smap = machine.result()
    except (SunSpecError, DeviceError):
        return ScanResult(target.unit)
    return ScanResult(target.unit, smap.base, smap.model_ids)


async def scan(
    transport: Transport | str,
    units: Sequence[int] = range(1, 248),
    timeout_s: float = 0.2,
    bases: Sequence[int] = DEFAULT_BASES,
) -> list[ScanResult]:
    """List the unit ids on a bus (or behind a TCP gateway) that answer.

    A unit that answers anything, even a Modbus exception, is present (gateway exceptions
    10 and 11 mean absent). SunSpec devices are walked for their model ids.

    Raises:
        DeviceUnreachable: the transport cannot be opened.
    """
    if isinstance(transport, str):
        transport = parse_transport(transport)
    client = await open_client(transport, timeout_s, "scan")
    client.set_max_no_responses(1_000_000)
    found: list[ScanResult] = []
    try:
        for unit in units:
            device = describe_device("scan", transport, unit)
            result = await _probe(_Target(client, transport, unit, device, 0, 0.0), bases)
            if result is not None:
                found.append(result)
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return found
