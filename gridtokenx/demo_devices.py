"""The simulated devices of `gtx demo` and the one-shot read of each (the foundation check).

Two solar sites and a shop, on every transport a gateway speaks:

| device | profile | transport |
|---|---|---|
| pv-roof | SunSpec inverter, 60 kWp | Modbus TCP |
| main-meter | Eastron SDM630 | Modbus TCP |
| huawei-pv | Huawei SUN2000, 50 kWp | Modbus TCP |
| ied-meter | IEC 61850 meter (SDM630 limits) | IEC 61850 MMS |
| shop-meter | Eastron SDM120 | Modbus RTU on a pty, 9600 baud wire timing |
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gridtokenx.network import DeviceSpec, StageError, background, free_port, now_ms

PV1_W = 60_000
"""The cold store's roof (SunSpec inverter), W peak."""
PV2_W = 50_000
"""The school's roof (Huawei SUN2000), W peak."""


@contextlib.asynccontextmanager
async def simulated_devices(
    workdir: Path, clock: Callable[[], int]
) -> AsyncIterator[dict[str, DeviceSpec]]:
    """Simulated devices on the event loop; yields them by name, as gateways reach them.

    `clock` drives their physics (unix ms); the RTU pty link is created in `workdir`.
    """
    from hw.iec61850_sim import Iec61850MeterServer, PhysicsMeter
    from hw.profile import load_profile
    from hw.sim import Site, serve_rtu, serve_tcp

    iec_port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        pv1 = await stack.enter_async_context(
            serve_tcp(load_profile("sunspec-inverter"), site=Site(kwp_w=PV1_W), clock=clock)
        )
        m1 = await stack.enter_async_context(
            serve_tcp(load_profile("sdm630"), site=Site(kwp_w=PV1_W), clock=clock)
        )
        pv2 = await stack.enter_async_context(
            serve_tcp(load_profile("huawei-sun2000"), site=Site(kwp_w=PV2_W, seed=5), clock=clock)
        )
        rtu = await stack.enter_async_context(
            serve_rtu(
                load_profile("sdm120"),
                workdir / "ttyRS485",
                baud=9600,
                site=Site(kwp_w=0, seed=9),
                clock=clock,
            )
        )
        iec = stack.enter_context(Iec61850MeterServer("127.0.0.1", iec_port))
        meter = PhysicsMeter(seed=5, pv_rated_w=PV2_W)
        iec.update(meter.reading(clock()), now_ms())

        async def refresh_iec() -> None:
            while True:
                await asyncio.sleep(1.0)
                iec.update(meter.reading(clock()), now_ms())

        await stack.enter_async_context(background(refresh_iec()))
        yield {
            "pv-roof": DeviceSpec("pv-roof", "sunspec-inverter", pv1.url, "solar", PV1_W * 6 // 5),
            "main-meter": DeviceSpec("main-meter", "sdm630", m1.url, "grid", 80_000),
            "huawei-pv": DeviceSpec(
                "huawei-pv", "huawei-sun2000", pv2.url, "solar", PV2_W * 6 // 5
            ),
            "ied-meter": DeviceSpec(
                "ied-meter",
                "sdm630",
                f"iec61850://127.0.0.1:{iec_port}/{iec.domain}",
                "grid",
                80_000,
            ),
            "shop-meter": DeviceSpec("shop-meter", "sdm120", rtu.url(9600), "grid", 12_000),
        }


async def check_devices(specs: dict[str, DeviceSpec], say: Callable[[str], None]) -> None:
    """Read every device once, the way a gateway does (the foundation check)."""
    from edge.errors import DeviceError
    from edge.iec61850 import aread_measurements
    from edge.modbus import read_measurements
    from hw.profile import load_profile

    say(f"{'device':<12} {'power W':>8} {'volt V':>7} {'freq Hz':>8} {'export Wh':>10}  transport")
    with ThreadPoolExecutor(max_workers=1) as pool:
        for d in specs.values():
            try:
                if d.transport.startswith("iec61850://"):
                    hostport = d.transport.split("/")[2]
                    port = int(hostport.rsplit(":", 1)[1])
                    m = await aread_measurements("127.0.0.1", port, executor=pool)
                else:
                    m = await read_measurements(d.transport, load_profile(d.profile), d.unit)
            except DeviceError as exc:
                raise StageError(f"{d.name} did not answer: {exc}") from exc
            f = m.as_body_fields()
            say(
                f"{d.name:<12} {f['power_w']:>8} {f['voltage_dv'] / 10:>7.1f} "
                f"{f['frequency_mhz'] / 1000:>8.3f} {f['export_wh']:>10}  {d.transport}"
            )
