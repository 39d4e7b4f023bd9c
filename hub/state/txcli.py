"""`gtx tx register|offer|bid|cancel|transfer|propose|vote|claim|cert-transfer`.

Signs one transaction with `--key`, posts it to `--hub` (`POST /v1/tx`) and prints
`{"id": ..., "status": "pending"}`. With `--wait` it polls `GET /v1/tx/{id}` until the
transaction is committed or rejected and prints that outcome; the exit code is 1 when the
hub refuses or the chain rejects it, 2 on usage or connection errors.

The seq is `max(committed seq + 1, now in ms)` unless `--seq` is given, so several commands
in a row never collide in the mempool. Do not use a gateway's own key here: its outbox owns
that key's seq. `gridtokenx/cli.py` mounts it (`_AREAS`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from wire.envelope import sign
from wire.errors import InvalidMessage, KeyFileError
from wire.keys import load_key, public_hex
from wire.kinds import (
    PROPOSAL_ACTIONS,
    SOURCES,
    Bid,
    Cancel,
    CertTransfer,
    Claim,
    DeviceEntry,
    Offer,
    Proposal,
    Register,
    Transfer,
    Vote,
)
from wire.struct import Body

__all__ = ["add_tx_parser", "body_from_args", "run_tx"]


def _device(text: str) -> DeviceEntry:
    try:
        name, source, cap = text.split(":")
        return DeviceEntry(name=name, source=source, capacity_w=int(cap))  # type: ignore[arg-type]
    except (ValueError, InvalidMessage) as exc:
        raise argparse.ArgumentTypeError(
            f"--device wants NAME:SOURCE:CAPACITY_W (source one of {', '.join(SOURCES)}), "
            f"got {text!r}: {exc}"
        ) from exc


def body_from_args(args: argparse.Namespace) -> Body:
    """The transaction body the parsed arguments describe.

    Raises:
        InvalidMessage: a field is out of range (the text names it).
    """
    a = args
    if a.action == "register":
        return Register(gateway=a.gateway, owner=a.owner, zone=a.zone, devices=tuple(a.device))
    if a.action == "offer":
        return Offer(
            interval=a.interval,
            energy_wh=a.energy_wh,
            price=a.price,
            source=a.source,
            zone=a.zone,
            expires=a.expires or a.interval,
        )
    if a.action == "bid":
        sources = tuple(s.strip() for s in a.sources.split(",") if s.strip())
        return Bid(
            interval=a.interval,
            energy_wh=a.energy_wh,
            price=a.price,
            sources=sources,
            zone=a.zone,
            expires=a.expires or a.interval,
        )
    if a.action == "cancel":
        return Cancel(order=a.order)
    if a.action == "transfer":
        return Transfer(to=a.to, amount=a.amount)
    if a.action == "propose":
        return Proposal(
            action=a.proposal_action,
            target=a.target,
            value=a.value,
            roles=tuple(a.role),
            note=a.note,
        )
    if a.action == "vote":
        return Vote(proposal=a.proposal, yes=a.yes)
    if a.action == "claim":
        return Claim(cert=a.cert, energy_wh=a.energy_wh, beneficiary=a.beneficiary)
    return CertTransfer(cert=a.cert, to=a.to, energy_wh=a.energy_wh)


def _fail(message: str, code: int) -> int:
    print(f"gtx tx: {message}", file=sys.stderr)
    return code


def run_tx(args: argparse.Namespace) -> int:
    """Sign, post and (with --wait) follow one transaction; returns the exit code."""
    try:
        key = load_key(Path(args.key))
        body = body_from_args(args)
    except (KeyFileError, InvalidMessage) as exc:
        return _fail(str(exc), 2)
    hub = args.hub.rstrip("/")
    me = public_hex(key)
    try:
        with httpx.Client(timeout=args.http_timeout) as http:
            chain = http.get(f"{hub}/v1/status").raise_for_status().json()["chain"]
            now = time.time_ns() // 1_000_000
            seq = args.seq
            if seq is None:
                committed = http.get(f"{hub}/v1/accounts/{me}").raise_for_status().json()["seq"]
                seq = max(committed + 1, now)
            env = sign(key, chain, body, seq, now)
            resp = http.post(
                f"{hub}/v1/tx", content=env.to_bytes(), headers={"content-type": "application/json"}
            )
            if resp.status_code != 202:
                print(
                    json.dumps(
                        {
                            "id": env.message_id(),
                            "status": "refused",
                            "reason": resp.json().get("reason", resp.text),
                        }
                    )
                )
                return 1
            out: dict[str, Any] = resp.json()
            if args.wait:
                deadline = time.monotonic() + args.wait_timeout
                while out.get("status") == "pending" and time.monotonic() < deadline:
                    time.sleep(0.25)
                    r = http.get(f"{hub}/v1/tx/{out['id']}")
                    if r.status_code == 200:
                        out = r.json()
                if out.get("status") == "pending":
                    print(json.dumps(out))
                    return _fail(f"not committed within {args.wait_timeout} s", 1)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return _fail(f"hub {hub} did not answer properly: {exc}; is `gtx hub run` up?", 2)
    print(json.dumps(out))
    return 1 if out.get("status") == "rejected" else 0


def add_tx_parser(subparsers: Any) -> None:
    """Register `gtx tx ACTION` on the top-level subparsers."""
    tx = subparsers.add_parser(
        "tx",
        help="sign and submit a transaction to a hub",
        description="Sign one transaction with your key and submit it to a hub node.",
    )
    sub = tx.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--key", required=True, help="key file (64 hex seed, mode 0600)")
        p.add_argument("--hub", default="http://127.0.0.1:8080", help="hub API base URL")
        p.add_argument("--wait", action="store_true", help="wait for commit; exit 1 if rejected")
        p.add_argument("--wait-timeout", type=float, default=30.0, help="seconds (--wait)")
        p.add_argument("--http-timeout", type=float, default=5.0, help="seconds per request")
        p.add_argument("--seq", type=int, help="seq to sign with (default: see gtx tx --help)")
        p.set_defaults(func=run_tx)

    p = sub.add_parser("register", help="bind a gateway to an owner, zone and devices")
    p.add_argument("--gateway", required=True, help="gateway public key (64 hex)")
    p.add_argument("--owner", required=True, help="owner account (64 hex)")
    p.add_argument("--zone", required=True, help="zone path, e.g. pea/ayutthaya/sub-01/feeder-3")
    p.add_argument(
        "--device",
        type=_device,
        action="append",
        required=True,
        help="NAME:SOURCE:CAPACITY_W (repeatable)",
    )
    common(p)
    for side in ("offer", "bid"):
        p = sub.add_parser(side, help=f"{'sell' if side == 'offer' else 'buy'} energy")
        p.add_argument("--interval", type=int, required=True, help="interval start, unix ms")
        p.add_argument("--energy-wh", type=int, required=True, help="energy, Wh")
        p.add_argument("--price", type=int, required=True, help="limit price, satang/kWh")
        p.add_argument("--zone", required=True, help="your zone path")
        p.add_argument("--expires", type=int, default=0, help="unix ms (default: interval)")
        if side == "offer":
            p.add_argument("--source", required=True, choices=SOURCES, help="source sold")
        else:
            p.add_argument("--sources", required=True, help="accepted sources, e.g. solar,wind")
        common(p)
    p = sub.add_parser("cancel", help="cancel the unfilled part of your order")
    p.add_argument("--order", required=True, help="order id (64 hex)")
    common(p)
    p = sub.add_parser("transfer", help="send satang")
    p.add_argument("--to", required=True, help="recipient (64 hex)")
    p.add_argument("--amount", type=int, required=True, help="satang")
    common(p)
    p = sub.add_parser("propose", help="submit a governance proposal")
    p.add_argument(
        "--action",
        dest="proposal_action",
        required=True,
        choices=PROPOSAL_ACTIONS,
    )
    p.add_argument("--target", required=True, help="parameter name, account key or zone")
    p.add_argument("--value", type=int, default=0, help="new value or argument")
    p.add_argument("--role", action="append", default=[], help="role granted (repeatable)")
    p.add_argument("--note", default="", help="reason, for people")
    common(p)
    p = sub.add_parser("vote", help="vote on a proposal")
    p.add_argument("--proposal", required=True, help="proposal id (64 hex)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--yes", dest="yes", action="store_true")
    g.add_argument("--no", dest="yes", action="store_false")
    common(p)
    p = sub.add_parser("claim", help="claim (retire) certificate energy, once")
    p.add_argument("--cert", required=True, help="certificate id")
    p.add_argument("--energy-wh", type=int, required=True, help="Wh to claim")
    p.add_argument("--beneficiary", default="", help="for whom")
    common(p)
    p = sub.add_parser("cert-transfer", help="give certificate energy to another account")
    p.add_argument("--cert", required=True, help="certificate id")
    p.add_argument("--to", required=True, help="recipient (64 hex)")
    p.add_argument("--energy-wh", type=int, required=True, help="Wh to transfer")
    common(p)
