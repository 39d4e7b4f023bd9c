"""`gtx edge keygen|read|scan`: the installer's one-shot commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from edge.errors import DeviceError
from hw.measurement import Measurements
from wire import kinds
from wire.envelope import sign
from wire.errors import InvalidMessage, KeyFileError
from wire.keys import generate_key, load_key, public_hex, save_key

DEFAULT_CHAIN = "gtx-local"


def unit_id(text: str) -> int:
    """Argparse type of `--unit`: one Modbus unit id, 1..247.

    Raises:
        argparse.ArgumentTypeError: not an integer, or 0 (broadcast, which no device answers)
            or above 247 (reserved).
    """
    try:
        unit = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"unit {text!r}: give a unit id 1..247") from exc
    if unit == 0:
        raise argparse.ArgumentTypeError(
            "unit 0 is the Modbus broadcast address, which no device answers; give 1..247"
        )
    if not 1 <= unit <= 247:
        raise argparse.ArgumentTypeError(f"unit {unit}: Modbus unit ids are 1..247")
    return unit


def _fail(command: str, message: str, code: int = 1) -> int:
    print(f"gtx edge {command}: {message}", file=sys.stderr)
    return code


def run_keygen(args: argparse.Namespace) -> int:
    """Handler of `gtx edge keygen`."""
    key = generate_key()
    try:
        save_key(key, Path(args.out), overwrite=args.force)
    except KeyFileError as exc:
        return _fail("keygen", str(exc))
    if args.json:
        print(json.dumps({"public_key": public_hex(key), "path": str(args.out)}))
    else:
        print(public_hex(key))
    return 0


def add_keygen_parser(sub: Any) -> None:
    """Register `gtx edge keygen`."""
    p = sub.add_parser(
        "keygen",
        help="create the gateway's Ed25519 key",
        description=(
            "Create a new Ed25519 key on this device, write it with mode 0600 and print the "
            "public key (64 hex): the gateway's identity and trading account. The private key "
            "never leaves the device. Refuses to overwrite an existing key file."
        ),
    )
    p.add_argument("--out", required=True, metavar="KEYFILE", help="where to write the key")
    p.add_argument("--force", action="store_true", help="overwrite KEYFILE if it exists")
    p.add_argument("--json", action="store_true", help="print {public_key, path} as JSON")
    p.set_defaults(func=run_keygen)


def run_pubkey(args: argparse.Namespace) -> int:
    """Handler of `gtx edge pubkey`."""
    try:
        key = load_key(Path(args.key))
    except KeyFileError as exc:
        return _fail("pubkey", str(exc), 2)
    print(public_hex(key))
    return 0


def add_pubkey_parser(sub: Any) -> None:
    """Register `gtx edge pubkey`."""
    p = sub.add_parser(
        "pubkey",
        help="print the public key of a key file",
        description="Print the 64-hex public key (the gateway's identity) of an existing key file.",
    )
    p.add_argument("--key", required=True, metavar="KEYFILE", help="key file (gtx edge keygen)")
    p.set_defaults(func=run_pubkey)


def _add_transport_args(p: argparse.ArgumentParser, *, iec: bool) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="Modbus TCP device or gateway")
    where.add_argument("--rtu", metavar="PORT", help="Modbus RTU serial port, e.g. /dev/ttyAMA0")
    if iec:
        where.add_argument("--iec61850", metavar="HOST:PORT", help="IEC 61850 MMS server")
    # No defaults here: an rtu:// URL may carry its own; edge.transport supplies 9600 and N.
    p.add_argument("--baud", type=int, help="RTU baud rate (default: the URL's, else 9600)")
    p.add_argument(
        "--parity", choices=["N", "E", "O"], help="RTU parity (default: the URL's, else N)"
    )
    p.add_argument(
        "--timeout-ms", type=int, default=1000, help="per-request timeout (default 1000)"
    )


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option} wants HOST:PORT, got {text!r}")
    return host, int(port)


def _modbus_transport(args: argparse.Namespace) -> Any:
    from edge.transport import parse_transport

    if args.tcp:
        host, port = _host_port(args.tcp, "--tcp")
        return parse_transport(f"tcp://{host}:{port}")
    return parse_transport(args.rtu, baud=args.baud, parity=args.parity)


async def _read_modbus(args: argparse.Namespace, profile: Any) -> Measurements:
    from edge.modbus import read_measurements

    return await read_measurements(
        _modbus_transport(args),
        profile,
        args.unit,
        timeout_s=args.timeout_ms / 1000,
        retries=args.retries,
        name=args.name or profile.name,
    )


def _read_iec61850(args: argparse.Namespace) -> Measurements:
    from edge.iec61850 import read_measurements

    host, port = _host_port(args.iec61850, "--iec61850")
    return read_measurements(host, port, args.ld, args.timeout_ms)


def run_read(args: argparse.Namespace) -> int:
    """Handler of `gtx edge read`: one reading, signed, printed as one JSON line."""
    from edge.errors import ConfigError
    from hw.profile import ProfileError, load_profile

    if not args.iec61850 and not args.profile:
        return _fail("read", "--profile is required for Modbus devices (see `gtx sim --help`)", 2)
    try:
        key = load_key(Path(args.key))
    except KeyFileError as exc:
        return _fail("read", str(exc), 2)
    try:
        if args.iec61850:
            device = args.name or "iec61850-meter"
            reading = _read_iec61850(args)
        else:
            profile = load_profile(args.profile)
            device = args.name or profile.name
            reading = asyncio.run(_read_modbus(args, profile))
    except (ProfileError, ConfigError, ValueError) as exc:
        return _fail("read", str(exc), 2)
    except DeviceError as exc:
        return _fail("read", str(exc))
    try:
        body = kinds.Telemetry(device=device, **reading.as_body_fields())
        env = sign(key, args.chain, body, args.seq, int(time.time() * 1000))
    except InvalidMessage as exc:
        return _fail("read", f"{device}: reading cannot be signed as telemetry: {exc}")
    sys.stdout.buffer.write(env.to_bytes() + b"\n")
    if args.verbose:
        print(json.dumps({"measurements": reading.phases}, sort_keys=True), file=sys.stderr)
    return 0


def add_read_parser(sub: Any) -> None:
    """Register `gtx edge read`."""
    p = sub.add_parser(
        "read",
        help="read a device once and print a signed telemetry message",
        description=(
            "Read a meter or inverter once and print one signed `telemetry` message as one "
            "JSON line (check it with `gtx verify`). On an unreachable device, a timeout, a "
            "CRC error or a Modbus exception: exit 1 with one line naming the device and the "
            "fault. A one-shot read signs with --seq (default 0): it is for commissioning, "
            "not for the hub, which takes readings from `gtx edge run`."
        ),
    )
    p.add_argument("--profile", help="device profile, e.g. sdm630 (see hw/profiles/)")
    _add_transport_args(p, iec=True)
    p.add_argument("--unit", type=unit_id, default=1, help="Modbus unit id 1..247 (default 1)")
    p.add_argument("--retries", type=int, default=2, help="extra tries after a timeout")
    p.add_argument("--ld", default="GTXMeterLD0", help="IEC 61850 logical device (MMS domain)")
    p.add_argument("--key", required=True, metavar="KEYFILE", help="gateway key (gtx edge keygen)")
    p.add_argument("--chain", default=DEFAULT_CHAIN, help=f"chain id (default {DEFAULT_CHAIN})")
    p.add_argument("--name", help="device name in the message (default: the profile name)")
    p.add_argument("--seq", type=int, default=0, help="seq to sign with (default 0)")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also print per-phase values to stderr"
    )
    p.set_defaults(func=run_read)


async def _scan(args: argparse.Namespace) -> list[Any]:
    from edge.modbus import scan

    found: list[Any] = await scan(_modbus_transport(args), args.units, args.timeout_ms / 1000)
    return found


def run_scan(args: argparse.Namespace) -> int:
    """Handler of `gtx edge scan`."""
    from edge.errors import ConfigError

    try:
        found = asyncio.run(_scan(args))
    except (ConfigError, ValueError) as exc:
        return _fail("scan", str(exc), 2)
    except DeviceError as exc:
        return _fail("scan", str(exc))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "unit": r.unit,
                        "sunspec_base": r.sunspec_base,
                        "models": list(r.models),
                        "note": r.note,
                    }
                    for r in found
                ]
            )
        )
        return 0
    for r in found:
        line = f"unit {r.unit}: answers"
        if r.sunspec_base is not None:
            models = ", ".join(str(m) for m in r.models)
            line = f"unit {r.unit}: SunSpec at {r.sunspec_base}, models {models}"
        print(line + (f" ({r.note})" if r.note else ""))
    if not found:
        print("no unit answered", file=sys.stderr)
    return 0


def add_scan_parser(sub: Any) -> None:
    """Register `gtx edge scan`."""
    from hw.sim.cli import parse_units

    p = sub.add_parser(
        "scan",
        help="list the Modbus unit ids that answer",
        description=(
            "Probe unit ids on an RS-485 bus or behind a Modbus TCP gateway and list those "
            "that answer; for SunSpec devices, also where the SunS marker is and their models."
        ),
    )
    _add_transport_args(p, iec=False)
    p.add_argument(
        "--units",
        type=parse_units,
        default=tuple(range(1, 248)),
        help="unit ids to probe: 3, 1-8 or 1,3,5-7 (default 1-247)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=run_scan)
