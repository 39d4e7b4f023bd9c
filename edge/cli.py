"""`gtx edge run`, `status` and `check`: the daemon, the operator's look at it, its config.

`gridtokenx.cli` mounts these with `add_run_parser`, `add_status_parser` and `add_check_parser`.
Exit codes: 0 fine, 1 runtime failure or daemon not running, 2 configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, EdgeError
from wire.errors import KeyFileError

DEFAULT_CONFIG = "/etc/gridtokenx/edge.toml"


def _fail(command: str, message: str, code: int) -> int:
    print(f"gtx edge {command}: {message}", file=sys.stderr)
    return code


def run_daemon(args: argparse.Namespace) -> int:
    """Handler of `gtx edge run`: validate the config, load the key, run until SIGTERM."""
    from edge.config import load_settings
    from edge.daemon import Daemon
    from wire.keys import load_key

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        settings = load_settings(Path(args.config))
        key = load_key(settings.key_path)
    except (ConfigError, KeyFileError) as exc:
        return _fail("run", str(exc), 2)
    try:
        daemon = Daemon(settings, key)
    except ConfigError as exc:
        return _fail("run", str(exc), 2)
    except EdgeError as exc:
        return _fail("run", str(exc), 1)
    try:
        asyncio.run(daemon.run())
    except (EdgeError, OSError) as exc:
        return _fail("run", str(exc), 1)
    except ExceptionGroup as group:
        failures = group.subgroup((EdgeError, OSError))
        if failures is None:
            raise
        return _fail("run", "; ".join(str(e) for e in failures.exceptions), 1)
    return 0


def add_run_parser(sub: Any) -> None:
    """Register `gtx edge run`."""
    p = sub.add_parser(
        "run",
        help="run the gateway daemon",
        description=(
            "Poll the configured meters and inverters, sign every sane reading, keep it in the "
            "durable outbox and publish it over MQTT. Runs until SIGTERM (systemd) or Ctrl-C. "
            "The config is validated at start; errors name the key and the fix."
        ),
    )
    p.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"gateway config (default {DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr (default info)",
    )
    p.set_defaults(func=run_daemon)


def read_status(config: Path) -> dict[str, Any]:
    """The daemon's last status, with outbox figures read from the database itself.

    Raises:
        ConfigError: invalid config.
        EdgeError: no status yet (the daemon never ran with this state_dir).
    """
    from edge.config import load_settings
    from edge.outbox import Outbox, OutboxError

    settings = load_settings(config)
    try:
        obj: dict[str, Any] = json.loads(settings.status_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeError(
            f"no status at {settings.status_path}: the daemon has not run with this config; "
            "start it with `systemctl start gtx-edge` or `gtx edge run --config ...`"
        ) from None
    except (OSError, ValueError) as exc:
        raise EdgeError(f"cannot read {settings.status_path}: {exc}") from exc
    if settings.outbox_path.exists():
        try:
            ob = Outbox(settings.outbox_path, readonly=True)
            try:
                depth = ob.depth()
                obj["outbox"]["messages"] = depth.messages
                obj["outbox"]["unpublished"] = depth.unpublished
                obj["outbox"]["bytes"] = depth.payload_bytes
                obj["last_publish_ms"] = ob.last_publish_ms()
            finally:
                ob.close()
        except (OutboxError, Exception) as exc:
            obj["outbox"]["error"] = str(exc)
    return obj


def run_status(args: argparse.Namespace) -> int:
    """Handler of `gtx edge status`."""
    from edge.status import STALE_AFTER_MS, describe

    try:
        obj = read_status(Path(args.config))
    except ConfigError as exc:
        return _fail("status", str(exc), 2)
    except EdgeError as exc:
        return _fail("status", str(exc), 1)
    now_ms = time.time_ns() // 1_000_000
    running = now_ms - int(obj.get("now_ms", 0)) <= STALE_AFTER_MS
    obj["running"] = running
    if not running:  # what the file says was true of a daemon that is gone
        obj["broker"]["last_known_connected"] = obj["broker"]["connected"]
        obj["broker"]["connected"] = False
    if args.json:
        print(json.dumps(obj, sort_keys=True))
    else:
        print(describe(obj, now_ms))
    return 0 if running else 1


def add_status_parser(sub: Any) -> None:
    """Register `gtx edge status`."""
    p = sub.add_parser(
        "status",
        help="show devices, their health, outbox depth and last publish",
        description=(
            "Print the running gateway's devices and their health, the outbox depth and the "
            "last publish. Exit code 0 if the daemon is running, 1 if not."
        ),
    )
    p.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"gateway config (default {DEFAULT_CONFIG})",
    )
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=run_status)


def run_check(args: argparse.Namespace) -> int:
    """Handler of `gtx edge check`: validate a config (and its key) without running anything."""
    from edge.config import buses, load_settings
    from wire.keys import load_key, public_hex

    try:
        settings = load_settings(Path(args.config))
    except ConfigError as exc:
        return _fail("check", str(exc), 2)
    gateway: str | None = None
    key_problem = ""
    try:
        gateway = public_hex(load_key(settings.key_path))
    except KeyFileError as exc:
        key_problem = str(exc)
    by_bus = {bus: [d.name for d in devs] for bus, devs in buses(settings).items()}
    summary = {
        "config": str(args.config),
        "gateway": gateway,
        "chain": settings.chain,
        "zone": settings.zone,
        "devices": len(settings.devices),
        "buses": by_bus,
        "tx_kept_until": settings.outbox.keep_tx_until,
        "hub": settings.hub.url if settings.hub else None,
        "key_problem": key_problem or None,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        # "valid" only when `gtx edge run` would start: a key it cannot load is a failure.
        verdict = "settings valid, key NOT usable" if key_problem and not args.no_key else "valid"
        print(f"{args.config}: {verdict}; {len(settings.devices)} devices on {len(by_bus)} buses")
        for bus, names in by_bus.items():
            print(f"  {bus}: {', '.join(names)}")
        if settings.hub is not None and settings.outbox.keep_tx_until == "committed":
            print(f"  meter reads stay in the outbox until {settings.hub.url} shows them committed")
        else:
            print("  meter reads leave the outbox at the broker's PUBACK (add [hub] to keep them)")
    if key_problem and not args.no_key:
        return _fail("check", key_problem, 2)
    return 0


def add_check_parser(sub: Any) -> None:
    """Register `gtx edge check`."""
    p = sub.add_parser(
        "check",
        help="validate a gateway config file without running it",
        description=(
            "Parse and validate a gateway config the way `gtx edge run` does, check that its "
            "key file can be loaded, and print the devices grouped by bus. Exit 0 when valid, "
            "2 with the key and the fix when not. Installers run it before (re)starting."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="edge.toml to check")
    p.add_argument("--no-key", action="store_true", help="do not require the key file to exist yet")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_check)
