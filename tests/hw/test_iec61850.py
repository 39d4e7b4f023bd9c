"""IEC 61850: the simulated MMS meter (hw.iec61850_sim) read by the edge client (edge.iec61850).

Everything runs against a real libiec61850 server on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyiec61850 as iec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import (
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    FrameError,
    ImplausibleReading,
)
from edge.iec61850 import (
    DEFAULT_LD_NAME,
    MissingDataObject,
    aread_measurements,
    close_worker_pool,
    read_measurements,
    scaled_to_int,
    validity_name,
)
from hw.iec61850_sim import Iec61850MeterServer, PhysicsMeter, serve
from hw.measurement import (
    MAX_FREQUENCY_MHZ,
    MAX_POWER_W,
    MAX_VOLTAGE_DV,
    Measurements,
)
from tests.support import free_port

pytestmark = pytest.mark.timeout(60)

T0 = 1_750_000_000_000  # unix ms
FULL = Measurements(
    power_w=-3217,
    voltage_dv=2301,
    frequency_mhz=49_987,
    import_wh=12_345_678,
    export_wh=2**40 + 7,  # beyond FLOAT32 and INT32: must travel as INT64
    phases={
        "power_l1_w": -1100,
        "power_l2_w": -1017,
        "power_l3_w": -1100,
        "voltage_l2_dv": 2299,
        "voltage_l3_dv": 2315,
    },
)
SINGLE_PHASE = Measurements(
    power_w=812, voltage_dv=2287, frequency_mhz=50_012, import_wh=1000, export_wh=0
)


def _start_server(ld_name: str = "LD0") -> Iec61850MeterServer:
    """A started server on a free port; retries if another process grabbed the port."""
    for _ in range(5):
        server = Iec61850MeterServer("127.0.0.1", free_port(), ld_name)
        try:
            server.start()
        except OSError:
            continue
        return server
    raise RuntimeError("no free port for the IEC 61850 server after 5 tries")


@pytest.fixture
def meter() -> Iterator[Iec61850MeterServer]:
    server = _start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def worker_pool() -> Iterator[None]:
    """aread_measurements' shared worker processes, stopped after the test."""
    try:
        yield
    finally:
        close_worker_pool()


def _read(server: Iec61850MeterServer) -> Measurements:
    return read_measurements("127.0.0.1", server.port, server.domain)


def _float32(x: float) -> float:
    """What a FLOAT32 on the wire makes of a Python float (round to nearest)."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


# --- conversions (pure) -------------------------------------------------------------------


@given(st.integers(-MAX_POWER_W, MAX_POWER_W))
def test_power_survives_float32(power_w: int) -> None:
    assert scaled_to_int(_float32(power_w), 1) == power_w


@given(st.integers(0, MAX_VOLTAGE_DV))
def test_voltage_survives_float32(voltage_dv: int) -> None:
    assert scaled_to_int(_float32(voltage_dv / 10), 10) == voltage_dv


@given(st.integers(0, MAX_FREQUENCY_MHZ))
def test_frequency_survives_float32(frequency_mhz: int) -> None:
    assert scaled_to_int(_float32(frequency_mhz / 1000), 1000) == frequency_mhz


def test_rounding_is_half_away_from_zero() -> None:
    assert [scaled_to_int(x, 1) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.49, -2.49)] == [
        1,
        2,
        3,
        -1,
        -3,
        2,
        -2,
    ]
    assert scaled_to_int(230.05, 10) == 2301


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        scaled_to_int(bad, 10)


def test_validity_names() -> None:
    assert validity_name(iec.QUALITY_VALIDITY_GOOD) == "good"
    assert validity_name(iec.QUALITY_VALIDITY_INVALID) == "invalid"
    assert validity_name(iec.QUALITY_VALIDITY_QUESTIONABLE) == "questionable"
    assert validity_name(iec.QUALITY_VALIDITY_INVALID | iec.QUALITY_DETAIL_FAILURE) == "invalid"


# --- server and client round trip ---------------------------------------------------------


def test_pushed_values_read_back_exactly(meter: Iec61850MeterServer) -> None:
    meter.update(FULL, T0)
    assert _read(meter) == FULL


def test_updates_change_values_and_energy_grows(meter: Iec61850MeterServer) -> None:
    meter.update(SINGLE_PHASE, T0)
    first = _read(meter)
    assert first == SINGLE_PHASE
    assert first.phases == {}  # per-phase points are flagged invalid, so left out

    later = Measurements(
        power_w=-1500, voltage_dv=2310, frequency_mhz=49_950, import_wh=1003, export_wh=41
    )
    meter.update(later, T0 + 15_000)
    second = _read(meter)
    assert second == later
    assert second.import_wh is not None
    assert first.import_wh is not None
    assert second.export_wh is not None
    assert first.export_wh is not None
    assert second.import_wh > first.import_wh
    assert second.export_wh > first.export_wh


def test_server_sets_quality_and_timestamps(meter: Iec61850MeterServer) -> None:
    meter.update(SINGLE_PHASE, T0 + 123)
    con = iec.IedConnection_create()
    try:
        assert iec.IedConnection_connect(con, "127.0.0.1", meter.port) == iec.IED_ERROR_OK
        for reference, fc in (
            ("MMXU1.TotW", iec.IEC61850_FC_MX),
            ("MMXU1.Hz", iec.IEC61850_FC_MX),
            ("MMXU1.PhV.phsA", iec.IEC61850_FC_MX),
            ("MMTR1.SupWh", iec.IEC61850_FC_ST),
            ("MMTR1.DmdWh", iec.IEC61850_FC_ST),
        ):
            value, error = iec.IedConnection_readObject(con, f"{meter.domain}/{reference}.t", fc)
            assert error == iec.IED_ERROR_OK, reference
            try:
                assert iec.MmsValue_getUtcTimeInMs(value) == T0 + 123, reference
            finally:
                iec.MmsValue_delete(value)
            quality, error = iec.IedConnection_readQualityValue(
                con, f"{meter.domain}/{reference}.q", fc
            )
            assert (error, quality) == (iec.IED_ERROR_OK, iec.QUALITY_VALIDITY_GOOD), reference
        quality, _ = iec.IedConnection_readQualityValue(
            con, f"{meter.domain}/MMXU1.W.phsB.q", iec.IEC61850_FC_MX
        )
        assert quality == iec.QUALITY_VALIDITY_INVALID
        behaviour, error = iec.IedConnection_readInt32Value(
            con, f"{meter.domain}/LLN0.Beh.stVal", iec.IEC61850_FC_ST
        )
        assert (error, behaviour) == (iec.IED_ERROR_OK, 1)
    finally:
        iec.IedConnection_close(con)
        iec.IedConnection_destroy(con)


def test_no_reading_before_the_first_update(meter: Iec61850MeterServer) -> None:
    with pytest.raises(ImplausibleReading, match=r"MMXU1\.TotW\.q validity is invalid"):
        _read(meter)


def test_unmeasured_headline_value_is_refused(meter: Iec61850MeterServer) -> None:
    meter.update(Measurements(power_w=5, voltage_dv=2300, import_wh=1, export_wh=1), T0)
    with pytest.raises(ImplausibleReading, match=r"MMXU1\.Hz\.q validity is invalid"):
        _read(meter)


def test_device_fault_is_refused(meter: Iec61850MeterServer) -> None:
    meter.update(FULL, T0)
    meter.invalidate(T0 + 1000)
    with pytest.raises(ImplausibleReading) as info:
        _read(meter)
    assert info.value.device == f"iec61850 127.0.0.1:{meter.port} GTXMeterLD0"
    assert "check its alarms" in str(info.value)


def test_out_of_range_value_is_refused(meter: Iec61850MeterServer) -> None:
    meter.update(Measurements(7, 2300, 50_000, 1, 1), T0)
    meter.update(Measurements(7, MAX_VOLTAGE_DV + 10, 50_000, 1, 1), T0)
    with pytest.raises(ImplausibleReading, match=r"voltage_dv=10010, outside 0\.\.10000"):
        _read(meter)


def test_custom_ld_name() -> None:
    server = _start_server("Meter7")
    try:
        server.update(SINGLE_PHASE, T0)
        assert server.domain == "GTXMeterMeter7"
        assert _read(server) == SINGLE_PHASE
    finally:
        server.stop()


# --- failures -----------------------------------------------------------------------------


def test_stopped_server_is_unreachable() -> None:
    server = _start_server()
    port = server.port
    server.update(SINGLE_PHASE, T0)
    assert _read(server) == SINGLE_PHASE
    server.stop()
    started = time.monotonic()
    with pytest.raises(DeviceUnreachable) as info:
        read_measurements("127.0.0.1", port, "GTXMeterLD0", timeout_ms=1000)
    assert time.monotonic() - started < 0.9  # refused at once, not timed out
    message = str(info.value)
    assert message.startswith(f"iec61850 127.0.0.1:{port} GTXMeterLD0: connection failed")
    assert "check that the IEC 61850 server is running" in message


def test_silent_peer_times_out() -> None:
    with socket.socket() as listener:  # accepts TCP (backlog) but never speaks MMS
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DeviceTimeout, match=r"no MMS association within 300 ms"):
            read_measurements("127.0.0.1", port, timeout_ms=300)
        assert time.monotonic() - started < 2


def test_wrong_logical_device_names_the_right_one(meter: Iec61850MeterServer) -> None:
    meter.update(SINGLE_PHASE, T0)
    with pytest.raises(MissingDataObject) as info:
        read_measurements("127.0.0.1", meter.port, "LD0")
    assert isinstance(info.value, DeviceError)
    assert info.value.device == f"iec61850 127.0.0.1:{meter.port} LD0"
    assert "logical device 'LD0' does not exist (the server has: GTXMeterLD0)" in str(info.value)


def _odd_server(build_mmxu: str) -> tuple[object, object, int]:
    """A raw libiec61850 server whose MMXU1 is deliberately not what the reader expects."""
    model = iec.IedModel_create("Odd")
    ld = iec.LogicalDevice_create("LD0", model)
    iec.LogicalNode_create("LLN0", ld)
    mmxu = iec.toModelNode(iec.LogicalNode_create("MMXU1", ld))
    if build_mmxu == "int_mag":  # TotW.mag.f exists but is an INT32
        tot_w = iec.toModelNode(iec.DataObject_create("TotW", mmxu, 0))
        iec.DataAttribute_create(
            "mag", tot_w, iec.IEC61850_CONSTRUCTED, iec.IEC61850_FC_MX, 0, 0, 0
        )
        # the binding cannot cast a DataAttribute to a ModelNode; look the node up instead
        mag = iec.IedModel_getModelNodeByObjectReference(model, "OddLD0/MMXU1.TotW.mag")
        iec.DataAttribute_create("f", mag, iec.IEC61850_INT32, iec.IEC61850_FC_MX, 0, 0, 0)
        iec.DataAttribute_create("q", tot_w, iec.IEC61850_QUALITY, iec.IEC61850_FC_MX, 0, 0, 0)
    # "no_totw": MMXU1 without any data object
    server = iec.IedServer_create(model)
    iec.IedServer_setLocalIpAddress(server, "127.0.0.1")
    port = free_port()
    iec.IedServer_start(server, port)
    assert iec.IedServer_isRunning(server)
    return model, server, port


@pytest.mark.parametrize(
    ("shape", "error", "text"),
    [
        ("int_mag", FrameError, r"OddLD0/MMXU1\.TotW\.mag\.f is not a FLOAT32"),
        ("no_totw", MissingDataObject, r"OddLD0/MMXU1\.TotW\.mag\.f does not exist"),
    ],
)
def test_unexpected_model_is_explained(shape: str, error: type[DeviceError], text: str) -> None:
    model, server, port = _odd_server(shape)
    try:
        with pytest.raises(error, match=text):
            read_measurements("127.0.0.1", port, "OddLD0")
    finally:
        iec.IedServer_stop(server)
        iec.IedServer_destroy(server)
        iec.IedModel_destroy(model)


def test_many_reads_leak_nothing(meter: Iec61850MeterServer) -> None:
    meter.update(FULL, T0)
    _read(meter)
    fds, threads = _open_fds(), _threads()
    for i in range(200):
        meter.update(Measurements(i, 2300, 50_000, 10 + i, 5, {}), T0 + i)
        assert _read(meter).power_w == i
    for _ in range(3):  # failing reads must clean up too
        with pytest.raises(MissingDataObject):
            read_measurements("127.0.0.1", meter.port, "NoSuchLD")
        with pytest.raises(DeviceUnreachable):
            read_measurements("127.0.0.1", free_port())
    assert _open_fds() == fds
    assert _threads() == threads
    deadline = time.monotonic() + 2
    while iec.IedServer_getNumberOfOpenConnections(meter._server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert iec.IedServer_getNumberOfOpenConnections(meter._server) == 0


# --- asyncio ------------------------------------------------------------------------------


@pytest.mark.usefixtures("worker_pool")
async def test_async_read_in_worker_process(meter: Iec61850MeterServer) -> None:
    meter.update(FULL, T0)
    # Fresh workers opening connections at once is when libiec61850 now and then hands out
    # a dead connection (see edge.iec61850.read_measurements); the reader must absorb it.
    for _ in range(3):
        readings = await asyncio.gather(
            *(aread_measurements("127.0.0.1", meter.port, meter.domain) for _ in range(4))
        )
        assert readings == [FULL] * 4
        close_worker_pool()
    with pytest.raises(MissingDataObject, match="the server has: GTXMeterLD0"):
        await aread_measurements("127.0.0.1", meter.port, "LD0")


@pytest.mark.usefixtures("worker_pool")
async def test_async_read_keeps_the_loop_running() -> None:
    # warm the worker up so process start-up does not count
    with pytest.raises(DeviceUnreachable):
        await aread_measurements("127.0.0.1", free_port(), timeout_ms=500)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        ticker = asyncio.create_task(tick())
        try:
            with pytest.raises(DeviceTimeout):
                await aread_measurements(
                    "127.0.0.1", listener.getsockname()[1], "GTXMeterLD0", timeout_ms=500
                )
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
    # ~50 ticks in 500 ms when the loop is free; a GIL-holding thread would allow ~0
    assert ticks >= 15


async def test_async_read_with_a_thread_executor(meter: Iec61850MeterServer) -> None:
    meter.update(SINGLE_PHASE, T0)
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = await aread_measurements("127.0.0.1", meter.port, DEFAULT_LD_NAME, executor=pool)
        assert reading == SINGLE_PHASE
        with pytest.raises(DeviceUnreachable):
            await aread_measurements("127.0.0.1", free_port(), executor=pool)


# --- server API ---------------------------------------------------------------------------


def test_server_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cannot bind port 0"):
        Iec61850MeterServer("127.0.0.1", 0)
    with pytest.raises(ValueError, match="ld_name 'LD 0'"):
        Iec61850MeterServer("127.0.0.1", 10102, "LD 0")
    server = Iec61850MeterServer("127.0.0.1", free_port())
    with pytest.raises(RuntimeError, match="not started"):
        server.update(FULL, T0)
    server.stop()  # idempotent before start


def test_server_refuses_negative_counters(meter: Iec61850MeterServer) -> None:
    with pytest.raises(ValueError, match="export_wh=-1 cannot be served"):
        meter.update(Measurements(0, 2300, 50_000, 0, -1), T0)


def test_port_in_use_is_an_os_error(meter: Iec61850MeterServer) -> None:
    with pytest.raises(OSError, match="could not listen"):
        Iec61850MeterServer("127.0.0.1", meter.port).start()


def test_context_manager_and_restart() -> None:
    port = free_port()
    for power_w in (1, 2):
        with Iec61850MeterServer("127.0.0.1", port) as server:
            assert server.running
            server.update(Measurements(power_w, 2300, 50_000, 1, 1), T0)
            assert _read(server).power_w == power_w
        assert not server.running


# --- physics-driven meter and serve() -----------------------------------------------------


def test_physics_meter_is_deterministic_and_counts_energy() -> None:
    a, b = PhysicsMeter(seed=3), PhysicsMeter(seed=3)
    noon_utc7 = 1_750_046_400_000  # 2025-06-16 05:00 UTC = 12:00 in Bangkok
    times = [noon_utc7 + i * 60_000 for i in range(30)]
    readings = [a.reading(t) for t in times]
    assert readings == [b.reading(t) for t in times]
    first, last = readings[0], readings[-1]
    assert first.export_wh == 500_000
    assert first.import_wh == 1_000_000
    assert last.export_wh is not None
    assert last.export_wh > 500_000
    assert all(r.power_w is not None and r.power_w < 0 for r in readings)


def test_serve_in_a_thread(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    stop = threading.Event()
    thread = threading.Thread(
        target=serve,
        args=("127.0.0.1", port),
        kwargs={"seed": 7, "stop_event": stop, "interval_ms": 50},
    )
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "ready" not in capsys.readouterr().out and time.monotonic() < deadline:
            time.sleep(0.01)  # readouterr consumes: the line was seen once, that is enough
        reading = read_measurements("127.0.0.1", port, "GTXMeterLD0")
        assert reading.voltage_dv is not None
        assert 2200 < reading.voltage_dv < 2400
        assert reading.frequency_mhz is not None
        assert 49_900 < reading.frequency_mhz < 50_100
        assert reading.import_wh is not None
        assert reading.import_wh >= 1_000_000
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(DeviceUnreachable):
        read_measurements("127.0.0.1", port, "GTXMeterLD0")


def test_serve_in_a_subprocess_stops_on_sigterm() -> None:
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    code = f"from hw.iec61850_sim import serve; serve('127.0.0.1', {port}, ld_name='LD1')"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == f"ready iec61850-meter 127.0.0.1:{port} ld=GTXMeterLD1\n"
        reading = read_measurements("127.0.0.1", port, "GTXMeterLD1")
        assert reading.phases == {}
        proc.terminate()
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
