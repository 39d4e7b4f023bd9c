"""Read-only queries over a `State` for the REST API, as plain JSON-able dicts. Pure.

Each function takes the committed view (`EnergyApp.view()`) and never writes. Lists come
in a deterministic order (priority for books, trade order for trades, key order otherwise).
"""

from __future__ import annotations

from typing import Any

from hub.consensus.block import quorum
from hub.state.accounts import account, roles
from hub.state.book import Order
from hub.state.governance import Proposal, weight
from hub.state.market import interval_info
from hub.state.record import to_json
from hub.state.registry import gateway, owned
from hub.state.settlement import Statement
from hub.state.state import State

__all__ = [
    "account_info",
    "book_view",
    "certificates_of",
    "device_info",
    "order_info",
    "params_view",
    "proposals_view",
    "reference_price",
    "settlements_of",
    "statement_certificate",
    "statement_of",
    "trades_of",
]


def account_info(st: State, key: str) -> dict[str, Any]:
    """Balance, escrow, committed seq, roles, voting weight and gateways of an account.

    `registered` says whether the key is a registered gateway: a gateway installed before
    its registration re-sends its refused reads as soon as it sees this turn true.

    `seq` is the last committed seq of the key's `tx` stream (every kind the chain executes,
    meter reads included, counts on it); `seqs` gives it per stream (`{"tx": n}`) so a
    gateway that lost its outbox learns where to resume (DESIGN: "it learns the committed
    seq from its inbox or GET /v1/accounts/{id}"). 0 means nothing committed yet.
    """
    acct = account(st, key)
    return {
        "account": key,
        "balance": acct.balance,
        "escrow": acct.escrow,
        "seq": acct.seq,
        "seqs": {"tx": acct.seq},
        "traded_wh": acct.traded_wh,
        "roles": list(roles(st, key)),
        "voting_weight": weight(st, key),
        "gateways": list(owned(st, key)),
        "registered": gateway(st, key) is not None,
    }


def device_info(st: State, key: str) -> dict[str, Any] | None:
    """A gateway's registration and the last accepted reads of its devices, or None."""
    gw = gateway(st, key)
    if gw is None:
        return None
    out: dict[str, Any] = to_json(gw)
    out["gateway"] = key
    reads = {}
    for d in gw.devices:
        ms = st.get("meters", f"{key}/{d.name}")
        reads[d.name] = to_json(ms.points[-1]) if ms is not None and ms.points else None
    out["last_reads"] = reads
    return out


def _orders(st: State, interval: int) -> list[Order]:
    info = interval_info(st, interval)
    return [st.get("orders", st.get("iorders", f"{interval}:{n:08d}")) for n in range(info.orders)]


def book_view(st: State, interval: int, zone: str | None) -> dict[str, Any]:
    """Open orders of an interval (optionally of a zone and its sub-zones), best first."""
    orders = [o for o in _orders(st, interval) if o.status == "open" and _in(o.zone, zone)]
    offers = sorted((o for o in orders if o.side == "offer"), key=lambda o: (o.price, o.seq))
    bids = sorted((o for o in orders if o.side == "bid"), key=lambda o: (-o.price, o.seq))
    return {
        "interval": interval,
        "closed": interval_info(st, interval).closed,
        "offers": [to_json(o) for o in offers],
        "bids": [to_json(o) for o in bids],
    }


def order_info(st: State, order_id: str) -> dict[str, Any] | None:
    """One order by id, or None."""
    o = st.get("orders", order_id)
    if o is None:
        return None
    out: dict[str, Any] = to_json(o)
    return out


def _in(zone: str, within: str | None) -> bool:
    return within is None or zone == within or zone.startswith(within + "/")


def trades_of(st: State, interval: int) -> list[dict[str, Any]]:
    """Trades of an interval, in the order they were made."""
    info = interval_info(st, interval)
    return [to_json(st.get("trades", f"{interval}:{n:08d}")) for n in range(info.trades)]


def reference_price(st: State, interval: int, zone: str) -> dict[str, Any]:
    """Volume-weighted price of the trades of an interval touching `zone` (or a sub-zone).

    `price` is 0 satang/kWh when nothing traded there (floor of the weighted mean).
    """
    energy = value = 0
    for t in trades_of(st, interval):
        if _in(t["seller_zone"], zone) or _in(t["buyer_zone"], zone):
            energy += t["energy_wh"]
            value += t["energy_wh"] * t["price"]
    return {
        "interval": interval,
        "zone": zone,
        "price": value // energy if energy else 0,
        "energy_wh": energy,
    }


def settlements_of(st: State, interval: int) -> list[dict[str, Any]]:
    """Settlement records of an interval's trades (empty until it is settled)."""
    info = interval_info(st, interval)
    out = []
    for n in range(info.trades):
        s = st.get("settlements", f"{interval}:{n:08d}")
        if s is not None:
            out.append(to_json(s))
    return out


def statement_of(st: State, interval: int) -> dict[str, Any] | None:
    """The statement of a settled interval with its hash (what validators sign), or None."""
    s: Statement | None = st.get("statements", str(interval))
    if s is None:
        return None
    out: dict[str, Any] = to_json(s)
    out["hash"] = s.digest()
    return out


def statement_certificate(
    statement: dict[str, Any], sigs: list[tuple[str, str, int, str]]
) -> dict[str, Any]:
    """What validators signed of a statement: signatures over its hash, and whether 2f+1.

    Args:
        statement: `statement_of`'s answer (its `hash` is what counts).
        sigs: (validator, statement hash, height, sig) as the node kept them (verified).

    Returns:
        `signatures` (validators of the statement's set who signed this very hash),
        `quorum` (2f+1 of that set), `certified`, and `conflicting` (validators who signed
        another hash for the interval: a sign of a diverged or faulty validator).
    """
    validators = tuple(statement["validators"])
    good = [
        {"validator": v, "sig": sig, "height": h}
        for v, digest, h, sig in sigs
        if digest == statement["hash"] and v in validators
    ]
    others = sorted({v for v, digest, _h, _s in sigs if digest != statement["hash"]})
    need = quorum(len(validators))
    return {
        "signatures": good,
        "signed": len(good),
        "quorum": need,
        "certified": len(good) >= need,
        "conflicting": others,
    }


CERTIFICATE_PAGE = 1_000
"""Most certificates one answer holds; ask again from the last id for more."""


def certificates_of(
    st: State, owner: str | None, after: str = "", limit: int = CERTIFICATE_PAGE
) -> list[dict[str, Any]]:
    """Certificates (of one owner, or all) with ids above `after`, in id order, at most `limit`.

    An owner's come from the owner index: the answer costs its own size, not the number of
    certificates on chain (which grows by one per renewable trade).
    """
    if owner is None:
        ids = st.ov.first_keys("certs", after, limit)
    else:
        ids = [k for k in st.ov.lookup("certs", owner) if k > after][:limit]
    return [to_json(st.get("certs", k)) for k in ids]


def proposals_view(st: State) -> list[dict[str, Any]]:
    """All proposals with their votes, in id order."""
    out = []
    for pid, prop in st.ov.items("proposals"):
        assert isinstance(prop, Proposal)
        row = to_json(prop)
        prefix = pid + "/"
        row["votes"] = {
            k[len(prefix) :]: to_json(st.get("votes", k)) for k in st.ov.lookup("votes", pid)
        }
        out.append(row)
    return out


def params_view(st: State) -> dict[str, Any]:
    """Current parameters, per-zone feeder capacities and the validator set."""
    meta = st.meta()
    return {
        "params": to_json(st.params),
        "feeders": dict(st.ov.items("feeders")),
        "validators": list(meta.validators),
        "pending_validator_changes": [to_json(c) for c in meta.pending],
        "height": meta.height,
        "time_ms": meta.time_ms,
    }
