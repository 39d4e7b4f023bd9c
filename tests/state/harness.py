"""A tiny chain around `EnergyApp` for tests: named keys, signed txs, blocks at chosen times."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from nacl.signing import SigningKey

from hub.application import BlockContext, TxResult
from hub.genesis import Genesis
from hub.state.app import EnergyApp
from wire.envelope import Envelope, sign
from wire.keys import public_hex
from wire.kinds import Bid, DeviceEntry, MeterRead, Offer, Register
from wire.struct import Body

CHAIN = "gtx-test"
MIN = 60_000
T0 = 28_333_334 * MIN  # an interval boundary (1_700_000_040_000)
ZERO = "0" * 64

TEST_PARAMS: dict[str, int] = {
    "interval_s": 60,
    "gate_closure_s": 60,
    "grace_s": 30,
    "price_floor": 200,
    "price_ceiling_peak": 600,
    "price_ceiling_offpeak": 600,
    "imbalance_price": 600,
    "wheeling_per_hop": 10,
    "wheeling_cap": 40,
    "gov_voting_s": 600,
    "gov_timelock_s": 60,
}


def key(name: str) -> SigningKey:
    """A deterministic key per name."""
    return SigningKey(hashlib.sha256(name.encode()).digest())


def pub(name: str) -> str:
    """Public key hex of a named key."""
    return public_hex(key(name))


class Net:
    """One state machine fed blocks the way consensus would."""

    def __init__(
        self,
        params: Mapping[str, int] | None = None,
        balances: Mapping[str, int] | None = None,
        validators: tuple[str, ...] = ("val1",),
        authorities: tuple[str, ...] = ("auth",),
    ) -> None:
        merged = dict(TEST_PARAMS)
        merged.update(params or {})
        self.validator_names = validators
        self.genesis = Genesis(
            chain=CHAIN,
            time_ms=T0,
            validators=tuple(sorted(pub(v) for v in validators)),
            authorities=tuple(sorted(pub(a) for a in authorities)),
            balances={pub(k): v for k, v in (balances or {}).items()},
            params=merged,
        )
        self.app = EnergyApp(self.genesis)
        self.height = 0
        self.time_ms = T0
        self.seqs: dict[str, int] = {}
        self.read_ids: dict[tuple[str, str], str] = {}
        self.blocks: list[tuple[BlockContext, list[Envelope]]] = []

    def tx(self, who: str, body: Body, seq: int | None = None) -> Envelope:
        """Sign `body` as the next tx of `who`."""
        if seq is None:
            seq = self.seqs.get(who, 0) + 1
        self.seqs[who] = max(seq, self.seqs.get(who, 0))
        return sign(key(who), CHAIN, body, seq, self.time_ms)

    def block(self, *txs: Envelope, at: int | None = None) -> tuple[TxResult, ...]:
        """Execute and commit a block at time `at` (default: 1 ms after the last)."""
        self.time_ms = at if at is not None else self.time_ms + 1
        self.height += 1
        ctx = BlockContext(
            chain=CHAIN,
            height=self.height,
            time_ms=self.time_ms,
            proposer=self.genesis.validators[0],
            validators=self.app.validators(),
            evidence=(),
        )
        ex = self.app.execute(ctx, list(txs))
        self.app.commit(ex)
        self.blocks.append((ctx, list(txs)))
        return ex.results

    def ok(self, *txs: Envelope, at: int | None = None) -> None:
        """A block whose transactions must all succeed."""
        results = self.block(*txs, at=at)
        bad = [r.reason for r in results if not r.ok]
        assert not bad, bad

    def fail(self, tx: Envelope, at: int | None = None) -> str:
        """A block with one transaction that must fail; returns its reason."""
        (result,) = self.block(tx, at=at)
        assert not result.ok, "expected a failure"
        return result.reason

    def read(
        self, who: str, device: str, interval: int, imp: int, exp: int, source: str
    ) -> Envelope:
        """A meter_read continuing the device's chain."""
        prev = self.read_ids.get((who, device), ZERO)
        body = MeterRead(
            device=device, interval=interval, import_wh=imp, export_wh=exp, source=source, prev=prev
        )  # type: ignore[arg-type]
        env = self.tx(who, body)
        self.read_ids[(who, device)] = env.message_id()
        return env

    def register(self, gw: str, owner: str, zone: str, *devices: tuple[str, str, int]) -> Envelope:
        """A register tx from the authority."""
        entries = tuple(DeviceEntry(name=n, source=s, capacity_w=c) for n, s, c in devices)  # type: ignore[arg-type]
        return self.tx(
            "auth", Register(gateway=pub(gw), owner=pub(owner), zone=zone, devices=entries)
        )

    def offer(
        self,
        who: str,
        interval: int,
        wh: int,
        price: int,
        zone: str,
        source: str = "solar",
        expires: int | None = None,
    ) -> Envelope:
        """An offer tx."""
        body = Offer(
            interval=interval,
            energy_wh=wh,
            price=price,
            source=source,
            zone=zone,  # type: ignore[arg-type]
            expires=expires or interval,
        )
        return self.tx(who, body)

    def bid(
        self,
        who: str,
        interval: int,
        wh: int,
        price: int,
        zone: str,
        sources: tuple[str, ...] = ("solar",),
        expires: int | None = None,
    ) -> Envelope:
        """A bid tx."""
        body = Bid(
            interval=interval,
            energy_wh=wh,
            price=price,
            sources=sources,
            zone=zone,  # type: ignore[arg-type]
            expires=expires or interval,
        )
        return self.tx(who, body)

    def q(self, table: str, k: str) -> Any:
        """A committed state entry."""
        return self.app.view().get(table, k)

    def balance(self, name_or_key: str) -> tuple[int, int]:
        """(balance, escrow) of a named key or raw account id."""
        k = name_or_key if (":" in name_or_key or len(name_or_key) == 64) else pub(name_or_key)
        acct = self.q("accounts", k)
        return (acct.balance, acct.escrow) if acct is not None else (0, 0)


def replay(genesis: Genesis, blocks: list[tuple[BlockContext, list[Envelope]]]) -> EnergyApp:
    """A fresh app fed the same blocks."""
    app = EnergyApp(genesis)
    for ctx, txs in blocks:
        app.commit(app.execute(ctx, txs))
    return app
