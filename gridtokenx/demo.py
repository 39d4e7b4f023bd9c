"""`gtx demo`: simulated devices on every transport, read, signed and verified like a gateway.

Everything runs in this process on 127.0.0.1 and stops when the demo ends: Modbus TCP
simulators (an Eastron SDM630 meter, a SunSpec inverter, a Huawei SUN2000), an SDM120 on a
Modbus RTU pseudo-terminal with 9600-baud wire timing, and an IEC 61850 meter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import DeviceError
from hw.measurement import Measurements
from wire import kinds
from wire.envelope import Envelope, parse, sign
from wire.errors import InvalidMessage
from wire.keys import generate_key, public_hex, save_key

CHAIN = "gtx-demo"


@dataclass(frozen=True, slots=True)
class DemoDevice:
    """One simulated device and how the gateway reads it."""

    name: str
    transport: str
    read: Callable[[], Awaitable[Measurements]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _devices(workdir: Path) -> AsyncIterator[list[DemoDevice]]:
    from edge.iec61850 import aread_measurements
    from edge.modbus import read_measurements
    from hw.iec61850_sim import Iec61850MeterServer, PhysicsMeter
    from hw.profile import load_profile
    from hw.sim import serve_rtu, serve_tcp

    sdm630, sunspec, huawei, sdm120 = (
        load_profile(n) for n in ("sdm630", "sunspec-inverter", "huawei-sun2000", "sdm120")
    )
    iec_port = _free_port()
    meter = PhysicsMeter(seed=7)
    async with contextlib.AsyncExitStack() as stack:
        tcp_meter = await stack.enter_async_context(serve_tcp(sdm630))
        tcp_inv = await stack.enter_async_context(serve_tcp(sunspec))
        tcp_hw = await stack.enter_async_context(serve_tcp(huawei))
        rtu = await stack.enter_async_context(
            serve_rtu(sdm120, workdir / "ttyRS485", units=(1, 2), baud=9600)
        )
        iec = stack.enter_context(Iec61850MeterServer("127.0.0.1", iec_port))
        iec.update(meter.reading(int(time.time() * 1000)), int(time.time() * 1000))
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        link = rtu.url(9600)
        yield [
            DemoDevice(
                "house-meter", tcp_meter.url, lambda: read_measurements(tcp_meter.url, sdm630, 1)
            ),
            DemoDevice(
                "rooftop-pv", tcp_inv.url, lambda: read_measurements(tcp_inv.url, sunspec, 1)
            ),
            DemoDevice("huawei-pv", tcp_hw.url, lambda: read_measurements(tcp_hw.url, huawei, 1)),
            DemoDevice("flat-1", link + " unit 1", lambda: read_measurements(link, sdm120, 1)),
            DemoDevice("flat-2", link + " unit 2", lambda: read_measurements(link, sdm120, 2)),
            DemoDevice(
                "substation-ied",
                f"iec61850://127.0.0.1:{iec_port}",
                lambda: aread_measurements("127.0.0.1", iec_port, executor=pool),
            ),
        ]


async def _run(out: Any) -> int:
    with tempfile.TemporaryDirectory(prefix="gtx-demo-") as tmp:
        workdir = Path(tmp)
        key = generate_key()
        save_key(key, workdir / "gateway.key")
        out.write(f"gateway key {public_hex(key)} (fresh, in {workdir}, removed at exit)\n\n")
        out.write(
            f"{'device':<15} {'power W':>8} {'volt V':>7} {'freq Hz':>8} "
            f"{'import Wh':>10} {'export Wh':>10} {'read ms':>7}  transport\n"
        )
        signed: list[Envelope] = []
        async with _devices(workdir) as devices:
            for seq, dev in enumerate(devices, start=1):
                t0 = time.perf_counter()
                try:
                    m = await dev.read()
                except DeviceError as exc:
                    out.write(f"{dev.name:<15} FAILED: {exc}\n")
                    continue
                ms = (time.perf_counter() - t0) * 1000
                body = kinds.Telemetry(device=dev.name, **m.as_body_fields())
                signed.append(sign(key, CHAIN, body, seq, int(time.time() * 1000)))
                f = m.as_body_fields()
                out.write(
                    f"{dev.name:<15} {f['power_w']:>8} {f['voltage_dv'] / 10:>7.1f} "
                    f"{f['frequency_mhz'] / 1000:>8.3f} {f['import_wh']:>10} "
                    f"{f['export_wh']:>10} {ms:>7.1f}  {dev.transport}\n"
                )
    out.write(f"\nsigned {len(signed)} telemetry messages on chain {CHAIN!r}; verifying:\n")
    ok = 0
    for env in signed:
        parse(env.to_bytes(), CHAIN)
        ok += 1
    out.write(f"  {ok}/{len(signed)} verify (canonical JSON, Ed25519, body ranges)\n")
    sample = signed[0].to_bytes()
    out.write(f"  example: {sample.decode()}\n")
    first = signed[0].body
    power = first.power_w if isinstance(first, kinds.Telemetry) else 0
    tampered = sample.replace(f'"power_w":{power},'.encode(), f'"power_w":{power - 500},'.encode())
    try:
        parse(tampered, CHAIN)
    except InvalidMessage as exc:
        out.write(f"  the same message with power_w lowered by 500 W is refused: {exc}\n")
    else:
        out.write("  a tampered copy verified: this is a bug, please report it\n")
        return 1
    return 0 if ok == len(devices) else 1


def run_demo(args: argparse.Namespace) -> int:
    """Handler of `gtx demo`."""
    return asyncio.run(_run(sys.stdout))


def add_demo_parser(sub: Any) -> None:
    """Register `gtx demo`."""
    p = sub.add_parser(
        "demo",
        help="run simulated devices and read, sign and verify them like a gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run_demo)
