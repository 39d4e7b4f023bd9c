"""`gtx`: the one command for installers, operators and developers.

Each area registers its own subcommands; this module only assembles them, so a gateway
never imports the hub's dependencies and vice versa (imports happen when a command runs).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from edge import cli as edge_cli
from gridtokenx import __version__, demo, edge_commands, verify

# Areas whose parsers live with their code: (module, function, command, extra to install).
_AREAS = (
    ("hw.sim.cli", "add_sim_parser", "sim", "edge"),
    ("hub.cli", "add_hub_parser", "hub", "hub"),
    ("hub.state.txcli", "add_tx_parser", "tx", "hub"),
)


def _add_area(sub: Any, module: str, func: str, command: str, extra: str) -> None:
    """Register an area's subcommands, or a stub that says which extra to install."""
    try:
        add: Callable[[Any], None] = getattr(importlib.import_module(module), func)
    except ImportError as exc:
        if exc.name == module:  # the area itself is not part of this build
            return
        missing = str(exc)

        def unavailable(_args: argparse.Namespace) -> int:
            print(
                f"gtx {command}: not available ({missing}); "
                f"install with `pip install 'gridtokenx[{extra}]'`",
                file=sys.stderr,
            )
            return 2

        p = sub.add_parser(command, help=f"(needs gridtokenx[{extra}])")
        p.set_defaults(func=unavailable)
        return
    add(sub)


def build_parser() -> argparse.ArgumentParser:
    """The full `gtx` argument parser."""
    parser = argparse.ArgumentParser(
        prog="gtx",
        description="GridTokenX: edge gateways and hub validators for peer-to-peer solar trading.",
        epilog="Run `gtx COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"gtx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    edge = sub.add_parser(
        "edge",
        help="gateway: keys, one-shot reads, bus scans",
        description="Gateway commands: create keys, read a device once, scan a bus.",
    )
    edge_sub = edge.add_subparsers(dest="edge_command", metavar="ACTION", required=True)
    edge_commands.add_keygen_parser(edge_sub)
    edge_commands.add_read_parser(edge_sub)
    edge_commands.add_scan_parser(edge_sub)
    edge_cli.add_run_parser(edge_sub)
    edge_cli.add_status_parser(edge_sub)
    edge_cli.add_check_parser(edge_sub)
    edge_commands.add_pubkey_parser(edge_sub)
    verify.add_verify_parser(sub)
    demo.add_demo_parser(sub)
    for module, func, command, extra in _AREAS:
        _add_area(sub, module, func, command, extra)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gtx` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # pymodbus logs every timeout and stray byte at ERROR; our errors already say what
    # happened and what to check, once, so its chatter only hides them.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
