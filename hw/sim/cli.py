"""`gtx sim`: run simulated meters and inverters until SIGINT/SIGTERM.

Examples:
    gtx sim --device sdm630 --tcp 127.0.0.1:5020
    gtx sim --device sdm120 --rtu-link /tmp/ttySIM0 --baud 9600 --units 1-8
    gtx sim --device sunspec-inverter --tcp 127.0.0.1:1502 --kwp 10 --sunspec-base 50000
    gtx sim --device iec61850-meter --iec61850 127.0.0.1:10102
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from hw.profile import ProfileError, list_profiles, load_profile
from hw.sim.device import FAULTS, DeviceOptions, Fault, Site
from hw.sim.rtu import serve_rtu
from hw.sim.tcp import serve_tcp

IEC61850_DEVICE = "iec61850-meter"


def parse_units(text: str) -> tuple[int, ...]:
    """Parse `3`, `1-8` or `1,3,5-7` into unit ids (1..247).

    Raises:
        argparse.ArgumentTypeError: malformed or out of range.
    """
    units: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            first = int(lo)
            last = int(hi) if hi else first
            units.extend(range(first, last + 1))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"units {text!r}: use 3, 1-8 or 1,3,5-7") from exc
    if not units or any(not 1 <= u <= 247 for u in units):
        raise argparse.ArgumentTypeError(f"units {text!r}: unit ids are 1..247")
    return tuple(dict.fromkeys(units))


def parse_host_port(text: str) -> tuple[str, int]:
    """Parse `HOST:PORT`.

    Raises:
        argparse.ArgumentTypeError: malformed.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT, e.g. 127.0.0.1:5020")
    return host, int(port)


def parse_fault(text: str) -> tuple[int, Fault]:
    """Parse `UNIT:KIND`, e.g. `3:timeout`.

    Raises:
        argparse.ArgumentTypeError: malformed.
    """
    unit, _, kind = text.partition(":")
    if not unit.isdigit() or kind not in FAULTS:
        raise argparse.ArgumentTypeError(
            f"fault {text!r}: use UNIT:KIND with KIND one of {', '.join(FAULTS)}"
        )
    fault: Fault = kind
    return int(unit), fault


def add_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `sim` command to an argparse subparsers object.

    The parser's `func` default is `run_sim(args) -> int` (the exit status).
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run simulated meters/inverters (Modbus TCP, Modbus RTU on a pty, IEC 61850)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--device",
        required=True,
        metavar="PROFILE",
        help=(
            f"profile name ({', '.join([*list_profiles(), IEC61850_DEVICE])}) "
            "or the path of a profile TOML file"
        ),
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=parse_host_port, metavar="HOST:PORT", help="serve Modbus TCP")
    where.add_argument(
        "--rtu-link",
        metavar="PATH",
        help="serve Modbus RTU on a pty; PATH becomes a symlink to the client side",
    )
    where.add_argument(
        "--iec61850", type=parse_host_port, metavar="HOST:PORT", help="serve IEC 61850 MMS"
    )
    parser.add_argument(
        "--baud", type=int, default=None, help="RTU: emulate this bit rate on the wire"
    )
    parser.add_argument("--parity", choices=["N", "E", "O"], default="N", help="RTU parity")
    units = parser.add_mutually_exclusive_group()
    units.add_argument("--unit", type=int, default=None, help="Modbus unit id (default 1)")
    units.add_argument("--units", type=parse_units, default=None, help="unit ids, e.g. 1-8")
    parser.add_argument("--lat", type=float, default=13.7563, help="latitude (deg N)")
    parser.add_argument("--lon", type=float, default=100.5018, help="longitude (deg E)")
    parser.add_argument("--kwp", type=float, default=5.0, help="rated PV power in kWp")
    parser.add_argument("--seed", type=int, default=0, help="seed of clouds, load and noise")
    parser.add_argument(
        "--sunspec-base",
        type=int,
        choices=[40000, 50000, 0],
        default=40000,
        help="SunSpec: address of the SunS marker",
    )
    parser.add_argument(
        "--fault",
        type=parse_fault,
        action="append",
        default=[],
        metavar="UNIT:KIND",
        help=f"make one unit misbehave ({', '.join(FAULTS)}); repeatable",
    )
    parser.set_defaults(func=run_sim)
    return parser


def run_sim(args: argparse.Namespace) -> int:
    """Run the simulator described by parsed `args` until SIGINT/SIGTERM; exit status."""
    try:
        if args.device == IEC61850_DEVICE:
            return _run_iec61850(args)
        return asyncio.run(_serve_modbus(args))
    except (ProfileError, ValueError, OSError) as exc:
        print(f"gtx sim: {exc}", file=sys.stderr)
        return 2


def _run_iec61850(args: argparse.Namespace) -> int:
    if args.iec61850 is None:
        print("gtx sim: --device iec61850-meter needs --iec61850 HOST:PORT", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module("hw.iec61850_sim")
    except ImportError as exc:
        print(
            f"gtx sim: the IEC 61850 simulator is not available ({exc}); install the "
            "'iec61850' extra (pip install gridtokenx[iec61850])",
            file=sys.stderr,
        )
        return 2
    host, port = args.iec61850
    result = module.serve(host, port, lat=args.lat, lon=args.lon, seed=args.seed)
    if inspect.isawaitable(result):
        asyncio.run(_await(result))
    return 0


async def _await(awaitable: Any) -> None:
    await awaitable


@contextlib.asynccontextmanager
async def _stop_signals() -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve_modbus(args: argparse.Namespace) -> int:
    if args.iec61850 is not None:
        print(f"gtx sim: --iec61850 is only for --device {IEC61850_DEVICE}", file=sys.stderr)
        return 2
    profile = load_profile(args.device)
    units: tuple[int, ...] = args.units or ((args.unit,) if args.unit else (profile.default_unit,))
    site = Site(lat=args.lat, lon=args.lon, kwp_w=round(args.kwp * 1000), seed=args.seed)
    faults: dict[int, Fault] = dict(args.fault)
    options = DeviceOptions(sunspec_base=args.sunspec_base)
    unit_text = f"unit {units[0]}" if len(units) == 1 else f"units {_unit_range(units)}"
    async with _stop_signals() as stop:
        if args.tcp is not None:
            host, port = args.tcp
            async with serve_tcp(profile, host, port, units, site, faults, options=options) as sim:
                print(
                    f"serving {profile.name} {unit_text} on tcp {sim.host}:{sim.port}", flush=True
                )
                await stop.wait()
        else:
            async with serve_rtu(
                profile,
                args.rtu_link,
                units,
                args.baud,
                args.parity,
                site,
                faults,
                options=options,
            ) as rtu:
                speed = f" at {args.baud} baud 8{args.parity}1" if args.baud else ""
                print(
                    f"serving {profile.name} {unit_text} on rtu {rtu.link_path}{speed}", flush=True
                )
                await stop.wait()
    return 0


def _unit_range(units: tuple[int, ...]) -> str:
    if list(units) == list(range(units[0], units[-1] + 1)):
        return f"{units[0]}-{units[-1]}"
    return ",".join(str(u) for u in units)
