"""edge.modbus against the in-process pymodbus TCP simulator, plus its pure parts."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException

from edge.errors import (
    ConfigError,
    DeviceTimeout,
    DeviceUnreachable,
    FrameError,
    ImplausibleReading,
    ModbusException,
)
from edge.modbus import (
    client_for,
    describe_device,
    read_measurements,
    scan,
    translate_error,
)
from edge.transport import Transport, parse_transport
from hw.decode import decode_profile
from hw.measurement import Measurements
from hw.profile import load_profile, parse_profile
from hw.sim.device import Site
from hw.sim.encoding import measurement_value
from hw.sim.tcp import serve_tcp

from .conftest import SteppedClock, tolerance

MODBUS_PROFILES = ["sdm630", "sdm120", "huawei-sun2000"]


def assert_matches(profile_name: str, got: Measurements, truth: Measurements) -> None:
    """Every measurement equals the physics' truth, to the registers' resolution."""
    profile = load_profile(profile_name)
    checked = 0
    for spec in profile.measured_points():
        for name in spec.measurements:
            want = measurement_value(truth, name)
            have = measurement_value(got, name)
            assert want is not None, name
            assert have is not None, name
            assert abs(have - want) <= tolerance(spec, want), (name, have, want)
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("name", MODBUS_PROFILES)
async def test_each_profile_reads_the_physics(name: str, clock: SteppedClock) -> None:
    profile = load_profile(name)
    async with serve_tcp(profile, units=(1, 7), clock=clock, site=Site(seed=5)) as sim:
        first = await read_measurements(sim.url, profile, 7, timeout_s=1.0)
        assert_matches(name, first, sim.devices[7].reading(clock()))
        clock.advance(15 * 60_000)  # a quarter hour later
        second = await read_measurements(sim.url, profile, 7, timeout_s=1.0)
        truth = sim.devices[7].reading(clock())
        assert_matches(name, second, truth)
    assert first != second
    assert (second.export_wh or 0) >= (first.export_wh or 0)
    if profile.kind == "meter":
        assert second.import_wh is not None
        assert first.import_wh is not None
        assert second.import_wh + (second.export_wh or 0) > first.import_wh + (first.export_wh or 0)
    else:
        assert truth.power_w is not None
        assert truth.power_w > 0
        assert (second.export_wh or 0) > (first.export_wh or 0)


async def test_units_differ_and_sdm630_phases_sum(clock: SteppedClock) -> None:
    profile = load_profile("sdm630")
    async with serve_tcp(profile, units=(1, 2), clock=clock) as sim:
        one = await read_measurements(sim.url, profile, 1)
        two = await read_measurements(sim.url, profile, 2)
    assert one.power_w != two.power_w
    assert one.power_w == sum(one.phases[f"power_l{i}_w"] for i in (1, 2, 3))


async def test_faulty_units_raise_the_right_errors(clock: SteppedClock) -> None:
    profile = load_profile("sdm120")
    faults = {2: "timeout", 3: "exception", 4: "garbage"}
    async with serve_tcp(profile, units=(1, 2, 3, 4), clock=clock, faults=faults) as sim:  # type: ignore[arg-type]
        with pytest.raises(
            DeviceTimeout, match=r"sdm120 on tcp 127\.0\.0\.1:\d+ unit 2: no answer after 2 tries"
        ):
            await read_measurements(sim.url, profile, 2, timeout_s=0.2, retries=1, backoff_s=0.01)
        with pytest.raises(ModbusException, match="unit 3: exception 4") as info:
            await read_measurements(sim.url, profile, 3, timeout_s=0.2)
        assert info.value.code == 4
        with pytest.raises(FrameError, match=r"unit 4: garbled answer after 1 tries.*Modbus TCP"):
            await read_measurements(sim.url, profile, 4, timeout_s=0.2, retries=0)
        # The healthy unit is unaffected.
        ok = await read_measurements(sim.url, profile, 1, timeout_s=0.5)
        assert ok.voltage_dv == sim.devices[1].reading(clock()).voltage_dv


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_garbled_tcp_answer_is_a_frame_error_on_a_shared_client(
    clock: SteppedClock, retries: int
) -> None:
    """pymodbus drops the connection after a garbled TCP answer: report the garbage, not that.

    The daemon shares one client per endpoint (and lifts pymodbus' no-response limit); with
    retries the second try used to meet the dropped connection and say "cannot connect".
    """
    profile = load_profile("sdm630")
    async with serve_tcp(profile, units=(1, 4), clock=clock, faults={4: "garbage"}) as sim:
        client = client_for(parse_transport(sim.url), timeout_s=0.3)
        assert await client.connect()
        client.set_max_no_responses(1_000_000)
        try:
            with pytest.raises(
                FrameError, match=r"sdm630 on tcp .* unit 4: garbled answer after 1 tries"
            ):
                await read_measurements(
                    client, profile, 4, timeout_s=0.3, retries=retries, backoff_s=0.01
                )
        finally:
            client.close()
        ok = await read_measurements(sim.url, profile, 1, timeout_s=0.5)
        assert ok.voltage_dv == sim.devices[1].reading(clock()).voltage_dv


async def test_missing_unit_behind_gateway(clock: SteppedClock) -> None:
    profile = load_profile("sdm120")
    async with serve_tcp(profile, units=(1,), clock=clock) as sim:
        with pytest.raises(ModbusException, match=r"exception 11.*check the unit id") as info:
            await read_measurements(sim.url, profile, 9)
    assert info.value.code == 11


async def test_implausible_reading_is_refused(clock: SteppedClock) -> None:
    text = Path(load_profile("sdm120").source).read_text()
    strict = parse_profile(
        text.replace("max_power_w = 12000", "max_power_w = 10"), "strict.toml", "sdm120"
    )
    async with serve_tcp(load_profile("sdm120"), clock=clock) as sim:
        with pytest.raises(ImplausibleReading, match=r"power_w -?\d+ W outside -10..10 W"):
            await read_measurements(sim.url, strict, 1)


async def test_unreachable_tcp() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeviceUnreachable, match=f"sdm120 on tcp 127.0.0.1:{port}: cannot connect"):
        await read_measurements(f"tcp://127.0.0.1:{port}", load_profile("sdm120"), 1, timeout_s=0.5)


async def test_scan_tcp(clock: SteppedClock) -> None:
    inverter = load_profile("sunspec-inverter")
    async with serve_tcp(inverter, units=(2, 5), clock=clock, faults={5: "exception"}) as sim:
        found = await scan(sim.url, units=range(1, 8), timeout_s=0.3)
    assert [r.unit for r in found] == [2, 5]
    assert found[0].sunspec_base == 40000
    assert found[0].models == (1, 103, 120, 123)
    assert "exception 4" in found[1].note


async def test_shared_client_concurrent_reads(clock: SteppedClock) -> None:
    profile = load_profile("sdm630")
    async with serve_tcp(profile, units=range(1, 9), clock=clock) as sim:
        client = client_for(parse_transport(sim.url))
        await client.connect()
        try:
            readings = await asyncio.gather(
                *(read_measurements(client, profile, u) for u in range(1, 9))
            )
        finally:
            client.close()
        for unit, got in zip(range(1, 9), readings, strict=False):
            assert got == decode_profile(profile, sim.devices[unit].image(clock()))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("tcp://10.0.0.5:1502", Transport("tcp", host="10.0.0.5", port=1502)),
        ("tcp://meter.local", Transport("tcp", host="meter.local", port=502)),
        (
            "rtu:///dev/ttyUSB0?baud=19200&parity=E",
            Transport("rtu", path="/dev/ttyUSB0", baud=19200, parity="E"),
        ),
        ("/dev/ttyAMA0", Transport("rtu", path="/dev/ttyAMA0")),
        (
            "rtu:///tmp/x/ttyS?baud=9600&stopbits=2",
            Transport("rtu", path="/tmp/x/ttyS", stopbits=2),
        ),
        (
            "iec61850://10.0.0.7/MeterLD0",
            Transport("iec61850", "10.0.0.7", 102, ld_name="MeterLD0"),
        ),
        ("iec61850://h:8102/LD", Transport("iec61850", host="h", port=8102, ld_name="LD")),
    ],
)
def test_parse_transport(text: str, want: Transport) -> None:
    assert parse_transport(text) == want
    assert parse_transport(want.url) == want


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("udp://1.2.3.4:5", "unknown scheme 'udp'"),
        ("tcp://:502", "missing the host"),
        ("rtu://ttyUSB0", "three slashes"),
        ("rtu:///dev/ttyUSB0?stopbits=3", "stopbits must be 1 or 2"),
        ("iec61850://meter/", "expected iec61850://HOST:PORT/LDNAME"),
        ("rtu:///dev/ttyUSB0?baud=1234", "baud must be one of 1200, 2400"),
        ("rtu:///dev/ttyUSB0?parity=X", "parity must be N, E or O"),
        ("rtu:///dev/ttyUSB0?speed=9600", "unknown option 'speed'"),
    ],
)
def test_parse_transport_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_transport(text)


def test_parse_transport_separate_args() -> None:
    assert parse_transport("/dev/ttyUSB1", baud=2400, parity="e") == Transport(
        "rtu", path="/dev/ttyUSB1", baud=2400, parity="E"
    )


def test_translate_error_messages() -> None:
    rtu = parse_transport("rtu:///dev/ttyUSB0?baud=9600")
    device = describe_device("sdm630", rtu, 3)
    err = translate_error(ModbusIOException("x"), device, rtu, 3)
    assert isinstance(err, DeviceTimeout)
    assert str(err) == (
        "sdm630 on rtu /dev/ttyUSB0 unit 3: no answer after 3 tries at 9600 baud; "
        "check wiring (A/B), termination, unit id and baud rate"
    )
    assert isinstance(
        translate_error(ModbusIOException("x"), device, rtu, 3, garbled=True), FrameError
    )
    assert isinstance(translate_error(ConnectionException("x"), device, rtu, 1), DeviceUnreachable)
    assert isinstance(translate_error(FileNotFoundError("x"), device, rtu, 1), DeviceUnreachable)
    assert isinstance(translate_error(TimeoutError(), device, rtu, 1), DeviceTimeout)
    assert isinstance(translate_error(RuntimeError("?"), device, rtu, 1), FrameError)
