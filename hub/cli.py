"""`gtx hub init | run | status`: create a local network, run a node, ask a node how it is.

`add_hub_parser(subparsers)` registers the `hub` command on the top-level `gtx` parser.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from hub.errors import ConfigError, HubError
from wire.errors import KeyFileError
from wire.keys import HEX64

__all__ = ["add_hub_parser", "cmd_init", "cmd_run", "cmd_status", "run_node"]


def _fail(command: str, message: str, code: int) -> int:
    print(f"gtx hub {command}: {message}", file=sys.stderr)
    return code


def _fund(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        key, sep, amount = item.partition("=")
        if not sep or not HEX64.fullmatch(key) or not amount.isdigit():
            raise ConfigError("--fund", f"expected PUBKEY=SATANG (64 hex = integer), got {item!r}")
        out[key] = out.get(key, 0) + int(amount)
    return out


def _params(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            number = int(value.strip()) if sep else None
        except ValueError:
            number = None
        if not name or number is None:
            raise ConfigError("--param", f"expected NAME=INTEGER, got {item!r}")
        out[name] = number
    return out


def cmd_init(args: argparse.Namespace) -> int:
    """Handler of `gtx hub init`: print the created network as JSON."""
    from hub.localnet import init_network

    try:
        params = {}
        if args.heartbeat_ms is not None:
            params["bft_heartbeat_ms"] = args.heartbeat_ms
        params.update(_params(args.param))
        net = init_network(
            Path(args.dir),
            validators=args.validators,
            chain=args.chain,
            mqtt_url=args.mqtt,
            api_port_base=args.api_port_base,
            fund=_fund(args.fund),
            interval_s=args.interval_s,
            gate_closure_s=args.gate_closure_s,
            grace_s=args.grace_s,
            params=params,
            mqtt_ca=None if args.mqtt_ca is None else Path(args.mqtt_ca),
            mqtt_users=args.mqtt_user,
            mqtt_password_dir=(
                None if args.mqtt_password_dir is None else Path(args.mqtt_password_dir)
            ),
        )
    except (ConfigError, KeyFileError) as exc:
        return _fail("init", str(exc), 2)
    except OSError as exc:
        where = exc.filename or args.dir
        problem = f"--dir: cannot write {where}: {exc.strerror}; choose another --dir"
        return _fail("init", problem, 2)
    print(json.dumps(net.to_json(), indent=2))
    return 0


async def run_node(config: Path, *, follower: bool = False) -> None:
    """Run one node until SIGTERM/SIGINT.

    Raises:
        ConfigError: the config is invalid.
        HubError: the node could not start or had to stop.
    """
    from hub.config import load_settings
    from hub.node import Node

    settings = load_settings(config)
    node = Node(settings, follower=follower)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.stop)
    await node.run()


def cmd_run(args: argparse.Namespace) -> int:
    """Handler of `gtx hub run`."""
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        asyncio.run(run_node(Path(args.config), follower=args.follower))
    except (ConfigError, KeyFileError) as exc:
        return _fail("run", str(exc), 2)
    except HubError as exc:
        return _fail("run", str(exc), 1)
    return 0


def _status_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    from hub.config import load_settings

    settings = load_settings(Path(args.config))
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "") else settings.api_host  # noqa: S104
    return f"http://{host}:{settings.api_port}"


def cmd_status(args: argparse.Namespace) -> int:
    """Handler of `gtx hub status`: print `GET /v1/status`; exit 1 if the node is down."""
    import httpx

    try:
        url = _status_url(args)
    except ConfigError as exc:
        return _fail("status", str(exc), 2)
    try:
        response = httpx.get(f"{url}/v1/status", timeout=5.0)
        response.raise_for_status()
        status: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return _fail("status", f"no answer from {url}: {exc}; is `gtx hub run` running?", 1)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(
            f"{status['chain']} {status['mode']} {status['node'][:16]}…  height {status['height']}"
            f"  block {status['block_hash'][:16]}…  state {status['state_hash'][:16]}…"
            f"  round {status['round']}  mempool {status['mempool']}"
            f"  {'syncing' if status['syncing'] else 'in sync'}"
        )
    return 0


def add_hub_parser(subparsers: Any) -> None:
    """Register `gtx hub init|run|status` on the top-level subparsers."""
    hub = subparsers.add_parser(
        "hub",
        help="validator: create a local network, run a node, show its status",
        description="Hub validator commands.",
    )
    sub = hub.add_subparsers(dest="hub_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "init",
        help="create a local network of N validators",
        description=(
            "Create DIR/v0 .. DIR/v{N-1}, each with a validator key (0600), hub.toml and the "
            "shared genesis.json (validators, authorities, balances, parameters). Prints the "
            "network as JSON."
        ),
    )
    p.add_argument("--validators", type=int, required=True, metavar="N", help="how many (4, 7…)")
    p.add_argument("--chain", required=True, metavar="ID", help="chain id, e.g. gtx-local")
    p.add_argument("--dir", required=True, metavar="DIR", help="directory to create it in")
    p.add_argument(
        "--mqtt", default="mqtt://127.0.0.1:1883", metavar="URL", help="broker URL for all nodes"
    )
    p.add_argument(
        "--mqtt-ca",
        metavar="FILE",
        help="the broker's CA certificate (mqtts:// only), copied to each vK/mqtt-ca.crt",
    )
    p.add_argument(
        "--mqtt-user",
        action="append",
        default=[],
        metavar="NAME",
        help="broker account of validator K (give it once per validator, in order)",
    )
    p.add_argument(
        "--mqtt-password-dir",
        metavar="DIR",
        help=(
            "directory holding each account's password as file NAME (ansible: "
            "credentials/mqtt/validators); copied to each vK/mqtt.password (0600)"
        ),
    )
    p.add_argument(
        "--api-port-base",
        type=int,
        default=8600,
        metavar="P",
        help="validator K serves its HTTP API on port P+K (default 8600)",
    )
    p.add_argument(
        "--fund",
        action="append",
        default=[],
        metavar="PUBKEY=SATANG",
        help="initial balance of an account (repeatable)",
    )
    p.add_argument(
        "--interval-s",
        type=int,
        default=900,
        metavar="S",
        help="market delivery interval in seconds (chain parameter; default 900)",
    )
    p.add_argument(
        "--gate-closure-s",
        type=int,
        default=None,
        metavar="S",
        help="orders for an interval close S seconds before it starts (default: one interval)",
    )
    p.add_argument(
        "--grace-s",
        type=int,
        default=None,
        metavar="S",
        help="settle an interval S seconds after it ends, for late meter reads (default 300)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=INT",
        help=(
            "any chain parameter (repeatable), e.g. price_floor=200, bft_propose_ms=500, "
            "feeder_capacity_wh:pea/sub-1=50000; unknown names and out-of-range values are "
            "refused (see GET /v1/params and docs/market.md)"
        ),
    )
    p.add_argument(
        "--heartbeat-ms",
        type=int,
        default=None,
        metavar="MS",
        help="an idle chain makes an empty block this often (default 10000)",
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "run",
        help="run one validator (or a follower)",
        description=(
            "Run a hub node: consensus over MQTT, SQLite chain store, HTTP API. Runs until "
            "SIGTERM or Ctrl-C; a restarted node resumes from disk and catches up."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the node's hub.toml")
    p.add_argument(
        "--follower", action="store_true", help="do not vote; verify and serve blocks only"
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr (default info)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "status",
        help="show a node's height, hashes and sync state",
        description="Ask a running node for GET /v1/status. Exit code 1 if it does not answer.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="FILE", help="the node's hub.toml (API address)")
    where.add_argument("--url", metavar="URL", help="API base URL, e.g. http://127.0.0.1:8600")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)


def main(argv: list[str] | None = None) -> int:
    """`python -m hub.cli ...` (same as `gtx hub ...`)."""
    parser = argparse.ArgumentParser(prog="gtx")
    add_hub_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
