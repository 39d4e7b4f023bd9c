"""edge.modbus over Modbus RTU on a real pty, served by hw.sim.rtu."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.errors import DeviceTimeout, FrameError, ModbusException
from edge.modbus import open_client, read_measurements, scan
from edge.transport import parse_transport
from hw.decode import decode_profile
from hw.plan import plan_reads
from hw.profile import load_profile
from hw.sim.device import DeviceOptions
from hw.sim.rtu import char_bits, crc16, request_length, serve_rtu, with_crc

from .conftest import SteppedClock

SDM630 = load_profile("sdm630")
SDM120 = load_profile("sdm120")


def test_crc16_known_vector() -> None:
    # Read holding registers unit 1, address 0, count 10: 01 03 00 00 00 0A C5 CD
    frame = bytes.fromhex("01030000000a")
    assert with_crc(frame) == bytes.fromhex("01030000000ac5cd")
    assert crc16(bytes.fromhex("01030000000ac5cd")) == 0
    assert request_length(bytes.fromhex("0110000a0002")) is None
    assert request_length(bytes.fromhex("0110000a000204")) == 13
    assert char_bits("N") == 10
    assert char_bits("E") == 11


async def test_eight_meters_on_one_link_with_faulty_neighbours(
    tmp_path: Path, clock: SteppedClock
) -> None:
    faults = {3: "timeout", 5: "exception", 6: "garbage"}
    link = tmp_path / "ttyRS485"
    async with serve_rtu(SDM630, link, units=range(1, 9), clock=clock, faults=faults) as sim:  # type: ignore[arg-type]
        client = await open_client(parse_transport(sim.url()), timeout_s=0.3)
        try:
            for unit in (1, 2, 4, 7, 8):
                got = await read_measurements(client, SDM630, unit, timeout_s=0.3)
                truth = sim.devices[unit].reading(clock())
                assert got.power_w == truth.power_w
                assert got.import_wh == truth.import_wh
                assert got.voltage_dv == truth.voltage_dv
                assert got == decode_profile(SDM630, sim.devices[unit].image(clock()))
            with pytest.raises(
                DeviceTimeout,
                match=f"sdm630 on rtu {link} unit 3: no answer after 2 tries at 9600 baud",
            ):
                await read_measurements(client, SDM630, 3, timeout_s=0.1, retries=1, backoff_s=0.01)
            with pytest.raises(ModbusException, match="unit 5: exception 4"):
                await read_measurements(client, SDM630, 5, timeout_s=0.3)
            with pytest.raises(FrameError, match="unit 6: garbled answer"):
                await read_measurements(client, SDM630, 6, timeout_s=0.1, retries=1, backoff_s=0.01)
            # After all that, the bus still works.
            clock.advance(60_000)
            again = await read_measurements(client, SDM630, 8, timeout_s=0.3)
            assert again.power_w == sim.devices[8].reading(clock()).power_w
        finally:
            client.close()
    assert not link.exists()


def wire_seconds(profile_points: list, baud: int, parity: str) -> float:  # type: ignore[type-arg]
    """Minimum time a poll takes on the wire: request, 3.5-char gap, response, gap."""
    chars = 0.0
    for req in plan_reads(profile_points):
        chars += 8 + 3.5 + (5 + 2 * req.count) + 3.5
    return (chars - 3.5) * char_bits(parity) / baud


@pytest.mark.parametrize(("baud", "parity"), [(9600, "N"), (19200, "E")])
async def test_wire_timing_is_honest(
    tmp_path: Path, clock: SteppedClock, baud: int, parity: str
) -> None:
    points = list(SDM120.measured_points())
    minimum = wire_seconds(points, baud, parity)
    async with serve_rtu(SDM120, tmp_path / "tty", baud=baud, parity=parity, clock=clock) as sim:
        client = await open_client(parse_transport(sim.url()), timeout_s=1.0)
        try:
            await read_measurements(client, SDM120, 1)  # warm up
            start = time.monotonic()
            got = await read_measurements(client, SDM120, 1)
            elapsed = time.monotonic() - start
        finally:
            client.close()
    assert got.voltage_dv == sim.devices[1].reading(clock()).voltage_dv
    assert elapsed >= minimum * 0.97, (elapsed, minimum)
    assert elapsed < minimum + 0.5


async def test_scan_rtu(tmp_path: Path, clock: SteppedClock) -> None:
    inverter = load_profile("sunspec-inverter")
    options = DeviceOptions(sunspec_base=0)
    async with serve_rtu(
        inverter,
        tmp_path / "tty",
        units=(1, 2, 4),
        clock=clock,
        faults={4: "timeout"},
        options=options,
    ) as sim:
        found = await scan(sim.url(), units=range(1, 6), timeout_s=0.15)
        got = await read_measurements(sim.url(), inverter, 2)
        assert got.power_w == sim.devices[2].reading(clock()).power_w
    assert [r.unit for r in found] == [1, 2]
    assert all(r.sunspec_base == 0 and r.models == (1, 103, 120, 123) for r in found)


async def test_missing_serial_port(tmp_path: Path) -> None:
    from edge.errors import DeviceUnreachable

    with pytest.raises(DeviceUnreachable, match="cannot open serial port"):
        await read_measurements(f"rtu://{tmp_path}/nope", SDM120, 1, timeout_s=0.2)
