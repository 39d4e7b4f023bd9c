"""SunSpec discovery: the pure state machine, and against a real TCP server at each base."""

from __future__ import annotations

import pytest

from edge.errors import FrameError
from edge.modbus import client_for, discover_sunspec, read_measurements
from edge.transport import parse_transport
from hw.profile import load_profile
from hw.sim.device import DeviceOptions, Site
from hw.sim.encoding import sunspec_layout
from hw.sim.tcp import serve_tcp
from hw.sunspec import Discovery, SunSpecError, resolve_profile

from .conftest import SteppedClock, tolerance

PROFILE = load_profile("sunspec-inverter")


def drive(
    image: dict[tuple[str, int], int], bases: tuple[int, ...] = (40000, 50000, 0)
) -> Discovery:
    machine = Discovery(bases)
    while (req := machine.next_read()) is not None:
        regs = [image.get(("holding", a)) for a in range(req.address, req.end)]
        machine.feed(None if None in regs else [r for r in regs if r is not None])
    return machine


@pytest.mark.parametrize("base", [40000, 50000, 0])
def test_discovery_walks_the_chain(base: int) -> None:
    smap, image = sunspec_layout(PROFILE, base)
    found = drive(image).result()
    assert found == smap
    assert found.base == base
    assert found.model_ids == (1, 103, 120, 123)
    assert found.models[0].address == base + 2
    assert found.models[1].address == base + 2 + 2 + 66


def test_no_marker_explains() -> None:
    with pytest.raises(SunSpecError, match=r"no SunS marker .* at 40000, 50000, 0"):
        drive({}).result()


def test_broken_chain_explains() -> None:
    _, image = sunspec_layout(PROFILE, 40000)
    image[("holding", 40002 + 1)] = 65  # model 1 must be 66 long
    with pytest.raises(SunSpecError, match="model 1 at 40002 has length 65"):
        drive(image).result()


def test_resolve_needs_the_inverter_model() -> None:
    smap, _ = sunspec_layout(PROFILE, 40000, (1, 120))
    with pytest.raises(SunSpecError, match="needs model 101 or 102 or 103"):
        resolve_profile(PROFILE, smap)


def test_resolve_drops_absent_control_models() -> None:
    smap, _ = sunspec_layout(PROFILE, 40000, (1, 103))
    resolved = resolve_profile(PROFILE, smap)
    names = {p.name for p in resolved.points}
    assert "W" in names
    assert "WMaxLimPct" not in names
    assert resolved.point("W").address == 40000 + 2 + 68 + 14


@pytest.mark.parametrize("base", [40000, 50000, 0])
async def test_real_server_discovery_and_read(base: int, clock: SteppedClock) -> None:
    options = DeviceOptions(sunspec_base=base)
    async with serve_tcp(PROFILE, clock=clock, site=Site(kwp_w=8000), options=options) as sim:
        client = client_for(parse_transport(sim.url), 1.0)
        await client.connect()
        try:
            smap = await discover_sunspec(client, PROFILE, 1)
            assert smap.base == base
            assert smap.model_ids == (1, 103, 120, 123)
            got = await read_measurements(client, PROFILE, 1, sunspec_map=smap)
        finally:
            client.close()
        truth = sim.devices[1].reading(clock())
    assert truth.power_w is not None
    assert truth.power_w > 1000
    assert got.power_w == truth.power_w
    assert got.voltage_dv == truth.voltage_dv
    assert got.export_wh == truth.export_wh
    assert got.import_wh is None
    hz = resolve_profile(PROFILE, smap).point("Hz")
    assert truth.frequency_mhz is not None
    assert got.frequency_mhz is not None
    assert abs(got.frequency_mhz - truth.frequency_mhz) <= tolerance(hz, truth.frequency_mhz, -2)
    assert got.phases["voltage_l3_dv"] == truth.phases["voltage_l3_dv"]


async def test_single_phase_model_101(clock: SteppedClock) -> None:
    options = DeviceOptions(sunspec_models=(1, 101, 120, 123))
    async with serve_tcp(PROFILE, clock=clock, options=options) as sim:
        got = await read_measurements(sim.url, PROFILE, 1)
        truth = sim.devices[1].reading(clock())
    assert got.power_w == truth.power_w
    # 101 has no phases B and C: served as "not implemented", left out of the reading.
    assert "voltage_l2_dv" not in got.phases


async def test_non_sunspec_device_gives_frame_error(clock: SteppedClock) -> None:
    async with serve_tcp(load_profile("sdm120"), clock=clock) as sim:
        with pytest.raises(FrameError, match="SunSpec discovery failed: no SunS marker"):
            await read_measurements(sim.url, PROFILE, 1, timeout_s=0.5)


async def test_big_inverter_raises_its_power_scale_factor(clock: SteppedClock) -> None:
    # 60 kWp at noon is ~47 kW: more than an s16 holds at W_SF 0, so the device uses W_SF 1.
    async with serve_tcp(PROFILE, clock=clock, site=Site(kwp_w=60_000)) as sim:
        got = await read_measurements(sim.url, PROFILE, 1)
        truth = sim.devices[1].reading(clock())
    assert truth.power_w is not None
    assert truth.power_w > 32767
    assert got.power_w is not None
    assert abs(got.power_w - truth.power_w) <= 5
