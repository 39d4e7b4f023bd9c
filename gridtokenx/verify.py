"""`gtx verify`: check JSON lines of signed messages."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from wire.envelope import parse
from wire.errors import InvalidMessage
from wire.replay import SeqGuard


@dataclass(frozen=True, slots=True)
class LineResult:
    """The verdict on one line."""

    number: int
    """1-based line number."""
    error: str | None
    """Why the line is invalid, or None when it verified."""
    kind: str | None = None
    """Kind of a valid message."""


def verify_lines(
    lines: Iterable[bytes], chain: str | None = None, check_seq: bool = False
) -> Iterator[LineResult]:
    """Verify each non-blank line as one signed message.

    Args:
        lines: raw lines (with or without trailing newline).
        chain: if given, messages for another chain are invalid.
        check_seq: also require seq to increase per sender and stream; an exact re-send of
            an already seen message is accepted (MQTT QoS 1 may deliver twice).
    """
    guard = SeqGuard()
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            env = parse(line, chain)
            if check_seq:
                mid = env.message_id()
                if mid not in seen:
                    guard.accept(env)
                    seen.add(mid)
        except InvalidMessage as exc:  # Replayed included
            yield LineResult(number, str(exc))
        else:
            yield LineResult(number, None, env.kind)


def run_verify(args: argparse.Namespace) -> int:
    """Handler of `gtx verify`."""
    stream: Any
    if args.file in (None, "-"):
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(args.file, "rb")  # closed in the finally below
        except OSError as exc:
            print(f"gtx verify: cannot open {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
    out: TextIO = sys.stdout
    good = bad = 0
    try:
        for result in verify_lines(stream, args.chain, args.seq):
            if result.error is None:
                good += 1
                continue
            bad += 1
            if args.json:
                out.write(json.dumps({"line": result.number, "error": result.error}) + "\n")
            else:
                out.write(f"line {result.number}: {result.error}\n")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    print(f"{good} valid, {bad} invalid", file=sys.stderr)
    if good + bad == 0:
        # An empty file proves nothing: a script that checks a capture must not pass on one.
        print("gtx verify: no messages to check (empty input)", file=sys.stderr)
        return 1
    return 1 if bad else 0


def add_verify_parser(sub: Any) -> None:
    """Register `gtx verify`."""
    p = sub.add_parser(
        "verify",
        help="check signed messages (JSON lines)",
        description=(
            "Check JSON lines of signed messages: canonical JSON, known kind, valid body, "
            "Ed25519 signature. Exit 0 when all lines are valid; otherwise exit 1 and print "
            "each bad line's number and the reason. Blank lines are skipped; input with no "
            "message at all exits 1."
        ),
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="file to check; - or none for stdin")
    p.add_argument("--chain", help="also require every message to be for this chain id")
    p.add_argument(
        "--seq",
        action="store_true",
        help="also require seq to increase per sender and stream (exact re-sends allowed)",
    )
    p.add_argument("--json", action="store_true", help="print bad lines as JSON objects")
    p.set_defaults(func=run_verify)
