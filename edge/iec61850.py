"""Read a meter over IEC 61850 MMS (libiec61850 through `pyiec61850`) into `Measurements`.

Points read, relative to the logical device (IEC 61850-7-4 MMXU and MMTR):

| Measurements field | object reference            | FC | MMS type | integer conversion          |
|--------------------|-----------------------------|----|----------|-----------------------------|
| power_w            | MMXU1.TotW.mag.f            | MX | FLOAT32  | W, nearest integer          |
| voltage_dv         | MMXU1.PhV.phsA.cVal.mag.f   | MX | FLOAT32  | V x 10, nearest integer     |
| frequency_mhz      | MMXU1.Hz.mag.f              | MX | FLOAT32  | Hz x 1000, nearest integer  |
| import_wh          | MMTR1.DmdWh.actVal          | ST | INT64    | Wh as is                    |
| export_wh          | MMTR1.SupWh.actVal          | ST | INT64    | Wh as is                    |
| phases[power_lN_w] | MMXU1.W.phsA/B/C.cVal.mag.f | MX | FLOAT32  | W, nearest integer          |
| phases[voltage_lN_dv] | MMXU1.PhV.phsB/C.cVal.mag.f | MX | FLOAT32 | V x 10, nearest integer   |

"Nearest integer" rounds halves away from zero. Each value's quality `q` is read too: a
headline value whose validity is not *good* raises `ImplausibleReading`; a per-phase value
that is missing from the model or not *good* is left out of `phases`.

Three facts about the binding shape this module:

- Every `pyiec61850` call holds the GIL for its whole duration (connect included, up to the
  timeout), so a thread does not keep an event loop responsive. `aread_measurements`
  therefore runs reads in a worker *process* by default.
- Closing and destroying a connection takes about 20-30 ms (libiec61850 joins its receive
  thread), so a read costs at least that; fine at the seconds-scale poll interval.
- Now and then a freshly opened connection is dead on arrival (its first request fails with
  CONNECTION_LOST); `read_measurements` retries such a read once on a new connection.

Values come from several MMS requests, so a reading may straddle two device updates; the
counters are cumulative, so that is harmless for settlement.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Final

import pyiec61850 as iec

from edge.errors import (
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    FrameError,
    ImplausibleReading,
)
from hw.measurement import (
    MAX_ENERGY_WH,
    MAX_FREQUENCY_MHZ,
    MAX_POWER_W,
    MAX_VOLTAGE_DV,
    Measurements,
)

DEFAULT_LD_NAME: Final = "GTXMeterLD0"
"""Full logical device name (MMS domain: IED name + LD inst) of the simulated meter."""
DEFAULT_TIMEOUT_MS: Final = 2000
"""Connect timeout and per-request timeout, milliseconds."""

_QUALITY_VALIDITY_MASK: Final = 0b11
_VALIDITY_NAMES: Final = {1: "reserved", 2: "invalid", 3: "questionable"}


class MissingDataObject(DeviceError):
    """The device answered, but the logical device or a data object is not in its model."""


@dataclass(frozen=True, slots=True)
class _Analogue:
    """A FLOAT32 measured value and how to make it an integer."""

    field: str
    """Measurements field, or `phases` key for a per-phase point."""
    obj: str
    """Data object reference relative to the LD, e.g. `MMXU1.TotW`."""
    value: str
    """Attribute path below the data object, e.g. `mag.f`."""
    scale: int
    """Integer units per SI unit."""
    limit: tuple[int, int]
    """Inclusive range of the integer value; outside it the reading is garbage."""


@dataclass(frozen=True, slots=True)
class _Counter:
    """An INT64 BCR energy counter in Wh."""

    field: str
    """Measurements field."""
    obj: str
    """Data object reference relative to the LD, e.g. `MMTR1.SupWh`."""


_POWER_LIMIT: Final = (-MAX_POWER_W, MAX_POWER_W)
_VOLTAGE_LIMIT: Final = (0, MAX_VOLTAGE_DV)
_HEADLINE_ANALOGUES: Final = (
    _Analogue("power_w", "MMXU1.TotW", "mag.f", 1, _POWER_LIMIT),
    _Analogue("voltage_dv", "MMXU1.PhV.phsA", "cVal.mag.f", 10, _VOLTAGE_LIMIT),
    _Analogue("frequency_mhz", "MMXU1.Hz", "mag.f", 1000, (0, MAX_FREQUENCY_MHZ)),
)
_COUNTERS: Final = (
    _Counter("import_wh", "MMTR1.DmdWh"),
    _Counter("export_wh", "MMTR1.SupWh"),
)
_PHASE_ANALOGUES: Final = (
    _Analogue("power_l1_w", "MMXU1.W.phsA", "cVal.mag.f", 1, _POWER_LIMIT),
    _Analogue("power_l2_w", "MMXU1.W.phsB", "cVal.mag.f", 1, _POWER_LIMIT),
    _Analogue("power_l3_w", "MMXU1.W.phsC", "cVal.mag.f", 1, _POWER_LIMIT),
    _Analogue("voltage_l2_dv", "MMXU1.PhV.phsB", "cVal.mag.f", 10, _VOLTAGE_LIMIT),
    _Analogue("voltage_l3_dv", "MMXU1.PhV.phsC", "cVal.mag.f", 10, _VOLTAGE_LIMIT),
)


# --- pure conversions ---------------------------------------------------------------------


def scaled_to_int(value: float, scale: int) -> int:
    """Convert an SI float to integer units: `value * scale`, rounded half away from zero.

    Args:
        value: the device's value in SI units (W, V, Hz), usually a FLOAT32.
        scale: integer units per SI unit (1 for W, 10 for decivolts, 1000 for millihertz).

    Returns:
        The nearest integer; exact for every FLOAT32 nearest to an integer-unit value in
        the physical ranges of `hw.measurement`.

    Raises:
        ValueError: the value is NaN or infinite.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    scaled = value * scale
    return int(math.copysign(math.floor(abs(scaled) + 0.5), scaled))


def validity_name(quality: int) -> str:
    """Name the validity of an IEC 61850 quality word: good, invalid, reserved, questionable.

    Args:
        quality: the 13-bit quality as libiec61850 returns it (validity in the low 2 bits).

    Returns:
        The validity's name.
    """
    return _VALIDITY_NAMES.get(quality & _QUALITY_VALIDITY_MASK, "good")


# --- blocking reader ----------------------------------------------------------------------


def device_label(host: str, port: int, ld_name: str) -> str:
    """How errors name an IEC 61850 device, e.g. `iec61850 127.0.0.1:10102 GTXMeterLD0`.

    Args:
        host: server address.
        port: server TCP port.
        ld_name: full logical device name.

    Returns:
        The label.
    """
    return f"iec61850 {host}:{port} {ld_name}"


def read_measurements(
    host: str,
    port: int,
    ld_name: str = DEFAULT_LD_NAME,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> Measurements:
    """Connect, read one reading, disconnect. Blocking; safe to call from any thread.

    Every call opens and closes its own MMS association, so nothing leaks between calls
    and a device restart between polls needs no recovery.

    Args:
        host: server address, e.g. `127.0.0.1`.
        port: server TCP port (102 is standard).
        ld_name: full logical device name, i.e. the MMS domain: IED name + LD inst, e.g.
            `GTXMeterLD0`.
        timeout_ms: connect timeout and timeout of each request, milliseconds.

    Returns:
        The reading in integer units (see the module docstring for the conversions).

    Raises:
        DeviceUnreachable: the TCP connection was refused or lost.
        DeviceTimeout: no MMS answer within timeout_ms.
        MissingDataObject: the logical device or a required data object does not exist.
        FrameError: a value has the wrong MMS type or the answer was malformed.
        ImplausibleReading: a value is flagged not good, not finite, or out of range.
        DeviceError: any other failure the device reports (access denied, ...).
    """
    if timeout_ms <= 0:
        raise ValueError(f"timeout_ms must be positive, got {timeout_ms}")
    device = device_label(host, port, ld_name)
    try:
        return _read_once(device, host, port, ld_name, timeout_ms)
    except _DeadOnArrival:
        # libiec61850 1.5.2 now and then (a few % of fresh connections when several open at
        # once) reports a connection as open whose first request then fails with
        # CONNECTION_LOST; a new connection works. Retry exactly once.
        try:
            return _read_once(device, host, port, ld_name, timeout_ms)
        except _DeadOnArrival as exc:
            raise DeviceUnreachable(device, exc.reason) from None


class _DeadOnArrival(Exception):
    """The first request on a freshly opened connection found it closed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_once(device: str, host: str, port: int, ld_name: str, timeout_ms: int) -> Measurements:
    con = iec.IedConnection_create()
    try:
        iec.IedConnection_setConnectTimeout(con, timeout_ms)
        iec.IedConnection_setRequestTimeout(con, timeout_ms)
        _connect(con, device, host, port, timeout_ms)
        try:
            return _Session(con, device, ld_name, timeout_ms).read()
        finally:
            iec.IedConnection_close(con)
    finally:
        iec.IedConnection_destroy(con)


def _connect(con: Any, device: str, host: str, port: int, timeout_ms: int) -> None:
    started = time.monotonic()
    error = iec.IedConnection_connect(con, host, port)
    if error == iec.IED_ERROR_OK:
        return
    waited_ms = int((time.monotonic() - started) * 1000)
    # libiec61850 reports both "refused" and "no MMS answer" as CONNECTION_REJECTED; only
    # the time spent tells them apart.
    if error == iec.IED_ERROR_TIMEOUT or waited_ms >= timeout_ms * 9 // 10:
        raise DeviceTimeout(
            device,
            f"no MMS association within {timeout_ms} ms; check that the device is powered, "
            "the address and port are right, and nothing filters the connection",
        )
    raise DeviceUnreachable(
        device,
        f"connection failed ({_error_name(error)}); check that the IEC 61850 server is "
        "running and listening on this address and port",
    )


class _Session:
    """The reads of one reading over one open connection."""

    def __init__(self, con: Any, device: str, ld_name: str, timeout_ms: int) -> None:
        self._con = con
        self._device = device
        self._ld = ld_name
        self._timeout_ms = timeout_ms
        self._answered = False  # whether any request got an answer on this connection

    def read(self) -> Measurements:
        values: dict[str, int] = {}
        for analogue in _HEADLINE_ANALOGUES:
            values[analogue.field] = self._analogue(analogue)
        for counter in _COUNTERS:
            values[counter.field] = self._counter(counter)
        phases: dict[str, int] = {}
        for analogue in _PHASE_ANALOGUES:
            value = self._optional_analogue(analogue)
            if value is not None:
                phases[analogue.field] = value
        return Measurements(**values, phases=phases)

    def _analogue(self, point: _Analogue) -> int:
        reference = f"{self._ld}/{point.obj}.{point.value}"
        raw = self._call(iec.IedConnection_readFloatValue, reference, iec.IEC61850_FC_MX, "FLOAT32")
        self._require_good(f"{self._ld}/{point.obj}.q", iec.IEC61850_FC_MX)
        return self._convert(point, reference, raw)

    def _optional_analogue(self, point: _Analogue) -> int | None:
        reference = f"{self._ld}/{point.obj}.{point.value}"
        raw, error = iec.IedConnection_readFloatValue(self._con, reference, iec.IEC61850_FC_MX)
        if error == iec.IED_ERROR_OBJECT_DOES_NOT_EXIST:
            return None  # the device does not measure this phase
        self._check(error, reference, "FLOAT32")
        quality = self._call(
            iec.IedConnection_readQualityValue,
            f"{self._ld}/{point.obj}.q",
            iec.IEC61850_FC_MX,
            "quality",
        )
        if validity_name(quality) != "good":
            return None
        return self._convert(point, reference, raw)

    def _counter(self, point: _Counter) -> int:
        reference = f"{self._ld}/{point.obj}.actVal"
        raw = self._call(iec.IedConnection_readInt64Value, reference, iec.IEC61850_FC_ST, "INT64")
        self._require_good(f"{self._ld}/{point.obj}.q", iec.IEC61850_FC_ST)
        if not 0 <= raw <= MAX_ENERGY_WH:
            raise ImplausibleReading(
                self._device,
                f"{reference} = {raw} Wh is outside 0..{MAX_ENERGY_WH}; a cumulative counter "
                "cannot be negative: check the meter's register configuration",
            )
        return int(raw)

    def _convert(self, point: _Analogue, reference: str, raw: float) -> int:
        try:
            value = scaled_to_int(raw, point.scale)
        except ValueError:
            raise ImplausibleReading(
                self._device, f"{reference} = {raw} is not a finite number"
            ) from None
        low, high = point.limit
        if not low <= value <= high:
            raise ImplausibleReading(
                self._device,
                f"{reference} = {raw} gives {point.field}={value}, outside {low}..{high}; "
                "check the device's units and scaling",
            )
        return value

    def _require_good(self, reference: str, fc: int) -> None:
        quality = self._call(iec.IedConnection_readQualityValue, reference, fc, "quality")
        validity = validity_name(quality)
        if validity != "good":
            raise ImplausibleReading(
                self._device,
                f"{reference} validity is {validity} (quality 0x{quality:04x}); the device "
                "flags this value as unusable: check its alarms and wiring",
            )

    def _call(
        self, read: Callable[[Any, str, int], Any], reference: str, fc: int, kind: str
    ) -> Any:
        value, error = read(self._con, reference, fc)
        self._check(error, reference, kind)
        return value

    def _check(self, error: int, reference: str, kind: str) -> None:
        if error in (iec.IED_ERROR_CONNECTION_LOST, iec.IED_ERROR_NOT_CONNECTED):
            reason = f"connection lost while reading {reference}; the device closed it or restarted"
            if not self._answered:
                raise _DeadOnArrival(reason)
            raise DeviceUnreachable(self._device, reason)
        self._answered = True
        if error == iec.IED_ERROR_OK:
            return
        if error == iec.IED_ERROR_OBJECT_DOES_NOT_EXIST:
            raise MissingDataObject(self._device, self._missing_reason(reference))
        if error == iec.IED_ERROR_TIMEOUT:
            raise DeviceTimeout(
                self._device,
                f"no answer reading {reference} within {self._timeout_ms} ms; the device "
                "is overloaded or the link is dropping packets",
            )
        if error in (
            iec.IED_ERROR_UNEXPECTED_VALUE_RECEIVED,
            iec.IED_ERROR_TYPE_INCONSISTENT,
            iec.IED_ERROR_TYPE_UNSUPPORTED,
            iec.IED_ERROR_MALFORMED_MESSAGE,
        ):
            raise FrameError(
                self._device,
                f"{reference} is not a {kind} ({_error_name(error)}); the device's data model "
                "differs from IEC 61850-7-4 MMXU/MMTR: check it with an MMS browser",
            )
        raise DeviceError(self._device, f"reading {reference} failed: {_error_name(error)}")

    def _missing_reason(self, reference: str) -> str:
        domains = _logical_devices(self._con)
        if domains is not None and self._ld not in domains:
            listed = ", ".join(sorted(domains)) or "none"
            return (
                f"logical device {self._ld!r} does not exist (the server has: {listed}); set "
                "the device's logical device to the full MMS domain name, IED name + LD inst"
            )
        return (
            f"{reference} does not exist; the device's model lacks the IEC 61850-7-4 "
            "MMXU1/MMTR1 data objects this reader needs"
        )


def _logical_devices(con: Any) -> set[str] | None:
    """The server's logical device names, or None if it will not list them."""
    listing, error = iec.IedConnection_getLogicalDeviceList(con)
    if error != iec.IED_ERROR_OK or listing is None:
        return None
    names: set[str] = set()
    try:
        element = iec.LinkedList_getNext(listing)
        while element is not None:
            names.add(str(iec.toCharP(iec.LinkedList_getData(element))))
            element = iec.LinkedList_getNext(element)
    finally:
        iec.LinkedList_destroy(listing)
    return names


def _error_name(error: int) -> str:
    for name in dir(iec):
        if name.startswith("IED_ERROR_") and getattr(iec, name) == error:
            return name
    return f"IedClientError {error}"


# --- asyncio --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Failure:
    """A DeviceError carried back from a worker (DeviceError itself does not pickle)."""

    kind: str
    """Class name, a key of `_ERROR_KINDS`."""
    device: str
    """DeviceError.device."""
    reason: str
    """DeviceError.reason."""


_ERROR_KINDS: Final[dict[str, type[DeviceError]]] = {
    cls.__name__: cls
    for cls in (
        DeviceError,
        DeviceTimeout,
        DeviceUnreachable,
        FrameError,
        ImplausibleReading,
        MissingDataObject,
    )
}

_pool_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _shared_pool() -> ProcessPoolExecutor:
    global _pool  # one worker pool per gateway process
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=2, mp_context=multiprocessing.get_context("spawn")
            )
        return _pool


def close_worker_pool() -> None:
    """Stop the worker processes `aread_measurements` started. Safe to call any time.

    The next `aread_measurements` without an executor starts new workers.
    """
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_outcome(host: str, port: int, ld_name: str, timeout_ms: int) -> Measurements | _Failure:
    """`read_measurements` with DeviceError turned into a picklable value (runs in a worker)."""
    try:
        return read_measurements(host, port, ld_name, timeout_ms)
    except DeviceError as exc:
        kind = type(exc).__name__ if type(exc).__name__ in _ERROR_KINDS else "DeviceError"
        return _Failure(kind, exc.device, exc.reason)


async def aread_measurements(
    host: str,
    port: int,
    ld_name: str = DEFAULT_LD_NAME,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    *,
    executor: Executor | None = None,
) -> Measurements:
    """`read_measurements` without blocking the event loop.

    Runs in a shared pool of two worker processes (started on first use, stopped by
    `close_worker_pool`) because the binding holds the GIL during its blocking calls; a
    crash inside libiec61850 then costs a worker, not the gateway. Pass a
    `ThreadPoolExecutor` to stay in-process, accepting that the loop stalls for the length
    of each C call.

    Args:
        host: server address.
        port: server TCP port.
        ld_name: full logical device name (MMS domain), e.g. `GTXMeterLD0`.
        timeout_ms: connect timeout and timeout of each request, milliseconds.
        executor: where to run the blocking read; None for the shared worker processes.

    Returns:
        The reading in integer units.

    Raises:
        DeviceError: as `read_measurements`, with the same subclasses; also when the
            worker process died.
    """
    if timeout_ms <= 0:
        raise ValueError(f"timeout_ms must be positive, got {timeout_ms}")
    loop = asyncio.get_running_loop()
    pool = executor if executor is not None else _shared_pool()
    try:
        outcome = await loop.run_in_executor(pool, _read_outcome, host, port, ld_name, timeout_ms)
    except BrokenProcessPool:
        if executor is None:
            close_worker_pool()
        raise DeviceError(
            device_label(host, port, ld_name),
            "the IEC 61850 worker process died during the read (libiec61850 crashed); the "
            "next read starts a new worker",
        ) from None
    if isinstance(outcome, _Failure):
        raise _ERROR_KINDS[outcome.kind](outcome.device, outcome.reason)
    return outcome
