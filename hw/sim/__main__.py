"""Stand-alone driver: `python -m hw.sim --device sdm630 --tcp 127.0.0.1:5020`.

The `gtx` CLI mounts the same parser as `gtx sim`; this entry point exists so the
simulator runs (and is tested) without the top-level CLI.
"""

from __future__ import annotations

import argparse
import sys

from hw.sim.cli import add_sim_parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` as `gtx sim` arguments and run the simulator; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m hw.sim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_sim_parser(sub)
    args = parser.parse_args(["sim", *(sys.argv[1:] if argv is None else argv)])
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
