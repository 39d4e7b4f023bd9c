"""What `gtx demo` prints after settlement: money moved, conservation, agreement."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gridtokenx.network import Api, StageError

BUYER_FUNDS = 100_000
"""Satang the shop starts with (1,000 THB); the only money in the demo's chain."""


def thb(satang: int) -> str:
    """Satang as THB text."""
    sign = "-" if satang < 0 else ""
    return f"{sign}{abs(satang) // 100}.{abs(satang) % 100:02d} THB"


def owner_name(key: str, owners: dict[str, Any]) -> str:
    """The demo's name of an account."""
    from wire.keys import public_hex

    for name, k in owners.items():
        if public_hex(k) == key:
            return str(name)
    return key[:12] + "…"


async def report_settlement(
    api: Api,
    interval: int,
    trades: list[Any],
    settlements: list[Any],
    owners: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    """Per trade: delivered, shortfall, money moved; conservation checks; certificates."""
    from wire.keys import public_hex

    by_trade = {t["id"]: t for t in trades}
    ok = True
    for s in settlements:
        t = by_trade[s["trade"]]
        seller = owner_name(t["seller"], owners)
        say(
            f"{seller} -> shop: sold {t['energy_wh']} Wh, delivered {s['delivered_wh']} Wh, "
            f"short {s['shortfall_wh']} Wh"
        )
        say(
            f"   shop paid {s['paid']} satang of {t['escrow']} escrowed "
            f"(refund {s['refund']}); "
            f"{seller} got {s['seller_received']}, grid operator wheeling {s['wheeling_fee']}, "
            f"rounding {s['rounding']}, imbalance charge {s['imbalance_charge']}"
        )
        ok &= s["delivered_wh"] + s["shortfall_wh"] == t["energy_wh"]
        ok &= s["paid"] == s["seller_received"] + s["wheeling_fee"] + s["rounding"]
        ok &= s["paid"] + s["refund"] == t["escrow"]
    accounts = [public_hex(k) for k in owners.values()] + [
        "grid:pea",
        "pool:rounding",
        "pool:fees",
    ]
    total = 0
    for a in accounts:
        info = await api.get(f"/v1/accounts/{a}")
        total += info["balance"] + info["escrow"]
    traded = sum(t["energy_wh"] for t in trades)
    delivered = sum(s["delivered_wh"] for s in settlements)
    short = sum(s["shortfall_wh"] for s in settlements)
    say(
        f"conservation: energy {traded} Wh traded = {delivered} delivered + {short} short; "
        f"money: all balances + escrow = {total} satang = {BUYER_FUNDS} at genesis"
    )
    if not ok or total != BUYER_FUNDS or traded != delivered + short:
        raise StageError("settlement does not conserve energy or money")
    say("conservation holds: every Wh and every satang accounted for")
    certs = await api.get("/v1/certificates", owner=public_hex(owners["shop"]))
    for c in certs:
        say(
            f"certificate {c['id']}: {c['energy_wh']} Wh {c['source']} from "
            f"{c['zone']}, {c['co2_avoided_g']} g CO2 avoided, owner shop"
        )
    # Each validator signs the statement after committing the settling block and gossips the
    # signature; give them a few seconds to reach 2f+1 before reporting.
    statement = await api.get(f"/v1/statements/{interval}")
    for _ in range(50):
        if statement.get("certified"):
            break
        await asyncio.sleep(0.1)
        statement = await api.get(f"/v1/statements/{interval}")
    signed = statement.get("signed", len(statement.get("signatures") or ()))
    verdict = (
        f"certified by {signed} of the validators (2f+1 = {statement.get('quorum')})"
        if statement.get("certified")
        else f"only {signed} signatures so far, short of 2f+1 = {statement.get('quorum')}"
    )
    say(f"statement of the interval: hash {statement['hash'][:16]}…, {verdict}")
    if not statement.get("certified"):
        raise StageError("the interval statement did not reach 2f+1 signatures in 5 s")
    for name in ("coldstore", "school", "shop"):
        a = await api.get(f"/v1/accounts/{public_hex(owners[name])}")
        say(f"balance {name:<8} {thb(a['balance'])}")


async def report_agreement(api: Api, say: Callable[[str], None]) -> None:
    """State hashes of all validators at a common height.

    Raises:
        StageError: they differ.
    """
    heights = [(await api.get("/v1/status", i))["height"] for i in range(4)]
    h = min(heights)
    hashes = []
    for i in range(4):
        block = await api.get(f"/v1/blocks/{h}", i)
        hashes.append(block["header"]["state_hash"])
    for i, sh in enumerate(hashes):
        say(f"validator {i}: height {h} state hash {sh}")
    if len(set(hashes)) != 1:
        raise StageError(f"the validators disagree on the state at height {h}")
    say(f"all 4 validators agree on the state at height {h}")
