"""Settlement of a closed delivery interval from the sellers' and buyers' meter reads.

Runs at the first block whose time is at least `interval end + grace_s`. Per seller pool
(party, zone, source; the meters are those of the gateways behind the pool's offers):

* measured = the export the pool's devices of that source registered over the interval
  (reads at both boundaries needed; a missing read or a suspended gateway counts 0 Wh);
* delivered = min(measured, sold), shared over the pool's trades pro rata, rounding down,
  the leftover Wh one by one in trade order; shortfall = traded - delivered per trade.

Per trade, with d delivered and s short Wh:

* the buyer pays cost = floor(d x (price + wheeling) / 1000) out of the trade's escrow and
  gets the rest of that escrow back (the shortfall refund);
* the seller gets floor(d x price / 1000), the grid operator of the buyer's zone
  floor(d x wheeling / 1000), and `pool:rounding` what is left of cost (0 or 1 satang);
* the seller pays floor(s x imbalance_price / 1000) to that grid operator.

So for every interval: traded Wh = delivered + shortfall, and the satang moved sum to zero.
Both are checked and a violation raises `HubError` (a bug, never an input error). The
interval's `Statement` (totals per account and zone) has a hash validators sign.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from hub.errors import HubError
from hub.state.accounts import ROUNDING, add_traded, credit, move, release
from hub.state.book import Order
from hub.state.certificates import mint
from hub.state.market import Trade, interval_info
from hub.state.meters import interval_delta
from hub.state.record import Record, encode
from hub.state.registry import RENEWABLE, gateway
from hub.state.zones import operator_account
from wire.consensus import EnergySummary

if TYPE_CHECKING:
    from hub.state.state import State

__all__ = [
    "AccountLine",
    "Settlement",
    "Statement",
    "ZoneLine",
    "energy_summary",
    "settle_due",
    "settle_interval",
    "sign_statement",
    "statement_signing_bytes",
    "verify_statement",
]


@dataclass(frozen=True, slots=True)
class Settlement(Record):
    """How one trade settled (table `settlements`, key: the trade id)."""

    trade: str
    """Trade id."""
    delivered_wh: int
    """Energy delivered, Wh."""
    shortfall_wh: int
    """Energy not delivered, Wh."""
    paid: int
    """Satang the buyer paid."""
    refund: int
    """Satang of the trade's escrow returned to the buyer."""
    seller_received: int
    """Satang paid to the seller."""
    wheeling_fee: int
    """Satang paid to the grid operator for wheeling."""
    imbalance_charge: int
    """Satang the seller paid for the shortfall."""
    rounding: int
    """Satang to `pool:rounding`."""
    operator: str
    """Grid operator account paid."""
    certificate: str
    """Id of the certificate minted ("" when none)."""
    co2_avoided_g: int
    """CO2 avoided by the delivered renewable energy, g."""


@dataclass(frozen=True, slots=True)
class AccountLine(Record):
    """One account's totals in a statement."""

    account: str
    """Account key."""
    bought_wh: int
    """Energy bought, Wh."""
    received_wh: int
    """Energy bought and delivered, Wh."""
    sold_wh: int
    """Energy sold, Wh."""
    delivered_wh: int
    """Energy sold and delivered, Wh."""
    paid: int
    """Satang paid for energy (including wheeling)."""
    earned: int
    """Satang earned from energy sold."""
    imbalance: int
    """Satang charged for shortfall."""


@dataclass(frozen=True, slots=True)
class ZoneLine(Record):
    """One zone's totals in a statement."""

    zone: str
    """Zone path."""
    sold_wh: int
    """Energy sold by sellers in the zone, Wh."""
    delivered_wh: int
    """Of it delivered, Wh."""
    bought_wh: int
    """Energy bought by buyers in the zone, Wh."""
    measured_import_wh: int
    """Import the zone's buyers' meters registered over the interval, Wh."""
    reference_price: int
    """Volume-weighted trade price of the zone's sellers, satang/kWh (0 if none)."""
    co2_avoided_g: int
    """CO2 avoided by renewable delivery from the zone, g."""


@dataclass(frozen=True, slots=True)
class Statement(Record):
    """The statement of one settled interval (table `statements`, key: its start ms)."""

    chain: str
    """Chain id."""
    interval: int
    """Interval start, unix ms."""
    height: int
    """Height of the block that settled it."""
    trades: int
    """Number of trades."""
    traded_wh: int
    """Energy traded, Wh."""
    delivered_wh: int
    """Energy delivered, Wh."""
    shortfall_wh: int
    """Energy short, Wh."""
    paid: int
    """Satang buyers paid."""
    wheeling: int
    """Satang of wheeling fees."""
    imbalance: int
    """Satang of imbalance charges."""
    rounding: int
    """Satang to `pool:rounding`."""
    accounts: tuple[AccountLine, ...]
    """Totals per account, sorted by key."""
    zones: tuple[ZoneLine, ...]
    """Totals per zone, sorted by path."""
    validators: tuple[str, ...] = ()
    """The validator set of the settling block: 2f+1 of these certify the statement, even
    after the set changes."""

    def digest(self) -> str:
        """SHA-256 hex of the statement's canonical JSON: what validators sign."""
        return hashlib.sha256(b"gridtokenx/statement/v1\n" + encode(self)).hexdigest()


def settle_due(st: State) -> None:
    """Settle every interval whose end plus grace has passed (oldest first)."""
    p = st.params
    meta = st.meta()
    done = []
    for interval in meta.open_intervals:
        if st.time_ms < interval + p.interval_ms + p.grace_s * 1000:
            break
        settle_interval(st, interval)
        done.append(interval)
    if done:
        meta = st.meta()
        left = tuple(i for i in meta.open_intervals if i not in done)
        st.set_meta(dataclasses.replace(meta, open_intervals=left))


def _measured(st: State, gateways: set[str], interval: int, source: str | None) -> int:
    """Export (source given: of that source) or import (None) of gateways' devices, Wh."""
    total = 0
    for key in sorted(gateways):
        gw = gateway(st, key)
        if gw is None or gw.suspended:
            continue
        for d in gw.devices:
            if source is not None and d.source != source:
                continue
            delta = interval_delta(st, key, d.name, interval)
            if delta is not None:
                total += delta[1] if source is not None else delta[0]
    return total


def _allocate(trades: list[Trade], available: int) -> list[int]:
    sold = sum(t.energy_wh for t in trades)
    if available >= sold:
        return [t.energy_wh for t in trades]
    shares = [available * t.energy_wh // sold for t in trades]
    left = available - sum(shares)
    for i, t in enumerate(trades):
        if not left:
            break
        if shares[i] < t.energy_wh:
            shares[i] += 1
            left -= 1
    return shares


def settle_interval(st: State, interval: int) -> Statement:
    """Settle every trade of `interval`, mint certificates, write the statement.

    Raises:
        HubError: (a bug) energy or money would not be conserved.
    """
    p = st.params
    info = interval_info(st, interval)
    trades: list[Trade] = [st.get("trades", f"{interval}:{n:08d}") for n in range(info.trades)]
    orders: dict[str, Order] = {}
    for t in trades:
        orders[t.offer] = st.get("orders", t.offer)
        orders[t.bid] = st.get("orders", t.bid)
    pools: dict[tuple[str, str, str], list[Trade]] = {}
    for t in trades:
        o = orders[t.offer]
        pools.setdefault((o.party, t.seller_zone, t.source), []).append(t)
    delivered: dict[str, int] = {}
    for (_party, _zone, source), group in sorted(pools.items()):
        meters = {g for t in group for g in orders[t.offer].gateways}
        shares = _allocate(group, _measured(st, meters, interval, source))
        for t, d in zip(group, shares, strict=True):
            delivered[t.id] = d
    lines: dict[str, dict[str, int]] = {}
    zones: dict[str, dict[str, int]] = {}
    buyers: dict[str, set[str]] = {}
    totals = dict.fromkeys(("traded", "delivered", "short", "paid", "wheel", "imb", "round"), 0)
    net = 0
    for t in trades:
        d = delivered[t.id]
        s = t.energy_wh - d
        cost = d * (t.price + t.wheeling) // 1000
        seller_gets = d * t.price // 1000
        wheel_fee = d * t.wheeling // 1000
        rounding = cost - seller_gets - wheel_fee
        penalty = s * p.imbalance_price // 1000
        if cost > t.escrow or rounding < 0:
            raise HubError(f"trade {t.id} costs {cost} but escrowed {t.escrow}: a bug")
        operator = operator_account(t.buyer_zone)
        release(st, t.buyer, t.escrow, None, cost)
        credit(st, t.seller, seller_gets)
        credit(st, operator, wheel_fee)
        credit(st, ROUNDING, rounding)
        move(st, t.seller, operator, penalty)
        net += -cost + seller_gets + wheel_fee + rounding
        add_traded(st, t.buyer, d)
        add_traded(st, t.seller, d)
        co2 = d * p.emission_factor_g_per_kwh // 1000 if t.source in RENEWABLE else 0
        cert = mint(st, t, d, co2) if t.source in RENEWABLE and d else ""
        st.put(
            "settlements",
            t.id,
            Settlement(
                t.id,
                d,
                s,
                cost,
                t.escrow - cost,
                seller_gets,
                wheel_fee,
                penalty,
                rounding,
                operator,
                cert,
                co2,
            ),
        )
        for key, row in (
            (t.buyer, {"bought_wh": t.energy_wh, "received_wh": d, "paid": cost}),
            (
                t.seller,
                {
                    "sold_wh": t.energy_wh,
                    "delivered_wh": d,
                    "earned": seller_gets,
                    "imbalance": penalty,
                },
            ),
        ):
            line = lines.setdefault(key, {})
            for k, v in row.items():
                line[k] = line.get(k, 0) + v
        sz = zones.setdefault(t.seller_zone, {})
        for k, v in (
            ("sold_wh", t.energy_wh),
            ("delivered_wh", d),
            ("co2", co2),
            ("value", t.energy_wh * t.price),
        ):
            sz[k] = sz.get(k, 0) + v
        bz = zones.setdefault(t.buyer_zone, {})
        bz["bought_wh"] = bz.get("bought_wh", 0) + t.energy_wh
        buyers.setdefault(t.buyer_zone, set()).update(orders[t.bid].gateways)
        for k, v in (
            ("traded", t.energy_wh),
            ("delivered", d),
            ("short", s),
            ("paid", cost),
            ("wheel", wheel_fee),
            ("imb", penalty),
            ("round", rounding),
        ):
            totals[k] += v
    if net != 0 or totals["traded"] != totals["delivered"] + totals["short"]:
        raise HubError(f"settlement of {interval} does not conserve (net {net} satang): a bug")
    statement = Statement(
        validators=st.meta().validators,
        chain=st.meta().chain,
        interval=interval,
        height=st.height,
        trades=len(trades),
        traded_wh=totals["traded"],
        delivered_wh=totals["delivered"],
        shortfall_wh=totals["short"],
        paid=totals["paid"],
        wheeling=totals["wheel"],
        imbalance=totals["imb"],
        rounding=totals["round"],
        accounts=tuple(
            AccountLine(
                account=key,
                bought_wh=v.get("bought_wh", 0),
                received_wh=v.get("received_wh", 0),
                sold_wh=v.get("sold_wh", 0),
                delivered_wh=v.get("delivered_wh", 0),
                paid=v.get("paid", 0),
                earned=v.get("earned", 0),
                imbalance=v.get("imbalance", 0),
            )
            for key, v in sorted(lines.items())
        ),
        zones=tuple(
            ZoneLine(
                zone=zone,
                sold_wh=v.get("sold_wh", 0),
                delivered_wh=v.get("delivered_wh", 0),
                bought_wh=v.get("bought_wh", 0),
                measured_import_wh=_measured(st, buyers.get(zone, set()), interval, None),
                reference_price=v["value"] // v["sold_wh"] if v.get("sold_wh") else 0,
                co2_avoided_g=v.get("co2", 0),
            )
            for zone, v in sorted(zones.items())
        ),
    )
    st.put("statements", str(interval), statement)
    st.put("intervals", str(interval), dataclasses.replace(info, settled=True))
    return statement


def energy_summary(st: State) -> EnergySummary:
    """The block header's energy summary: totals of the statements this block wrote.

    Reads the block's journal (`st.ov`), so it must run after the block's settlement and
    before the journal is applied. Deterministic: intervals in ascending order.
    """
    written: list[Statement] = sorted(
        (s for s in st.ov.changes["statements"].values() if s is not None),
        key=lambda s: s.interval,
    )
    if not written:
        return EnergySummary()
    digests = [s.digest() for s in written]
    if len(digests) == 1:
        root = digests[0]
    else:
        root = hashlib.sha256(
            ("gridtokenx/statements/v1\n" + "\n".join(digests)).encode()
        ).hexdigest()
    return EnergySummary(
        settled=len(written),
        interval=written[-1].interval,
        trades=sum(s.trades for s in written),
        traded_wh=sum(s.traded_wh for s in written),
        delivered_wh=sum(s.delivered_wh for s in written),
        shortfall_wh=sum(s.shortfall_wh for s in written),
        statement=root,
    )


def statement_signing_bytes(chain: str, interval: int, digest: str) -> bytes:
    """What a validator signs to vouch for the statement of `interval` (own domain tag).

    The tag differs from the message domain, so a statement signature never verifies as a
    signed message and vice versa.
    """
    return f"gridtokenx/statement-sig/v1\n{chain}\n{interval}\n{digest}".encode()


def sign_statement(key: SigningKey, chain: str, interval: int, digest: str) -> str:
    """A validator's Ed25519 signature (128 hex) over a statement hash."""
    return key.sign(statement_signing_bytes(chain, interval, digest)).signature.hex()


def verify_statement(validator: str, chain: str, interval: int, digest: str, sig: str) -> bool:
    """Whether `sig` is `validator`'s signature over the statement hash."""
    try:
        VerifyKey(bytes.fromhex(validator)).verify(
            statement_signing_bytes(chain, interval, digest), bytes.fromhex(sig)
        )
    except (BadSignatureError, ValueError):
        return False
    return True
