"""Market benchmarks: the matching core alone, and whole-block execution of a realistic mix.

    .venv/bin/python bench/market_bench.py [--orders 20000] [--blocks 20] [--block-txs 500]

1. Matching core (`hub.state.matching.match` + `Book.add`): orders matched per second and
   p50/p99 latency per order, for a stream of alternating bids and offers in one interval
   across 16 zones and 2 sources, resting depth growing to a few thousand orders.
2. Block execution (`EnergyApp.execute` + `commit`): tx/s for blocks of meter reads (40 %),
   offers (25 %), bids (25 %), cancels (5 %) and transfers (5 %) from 200 gateways.
   Envelopes are signed beforehand: signature checks are consensus' cost, not the app's.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time

from nacl.signing import SigningKey

from hub.application import BlockContext
from hub.genesis import Genesis
from hub.state.app import EnergyApp
from hub.state.book import Book, Order
from hub.state.matching import Network, match
from wire.envelope import Envelope, sign
from wire.keys import public_hex
from wire.kinds import Bid, Cancel, DeviceEntry, MeterRead, Offer, Register, Transfer

ZONES = [f"pea/r{a}/s{b}/f{c}" for a in range(2) for b in range(2) for c in range(4)]


def bench_matching(n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    book = Book()
    orders: dict[str, Order] = {}
    flows: dict[str, int] = {}
    net = Network(lambda f: flows.get(f, 0), lambda _f: 10**12, 10, 80)
    lat: list[float] = []
    fills = 0
    for i in range(n):
        side = "bid" if i % 2 else "offer"
        price = rng.randint(250, 450) if side == "bid" else rng.randint(220, 420)
        src = rng.choice(("solar", "wind"))
        o = Order(
            id=f"{i:064x}",
            side=side,
            sender=f"p{i % 500}",
            party=f"p{i % 500}",
            gateways=(),  # type: ignore[arg-type]
            interval=0,
            zone=rng.choice(ZONES),
            price=price,
            sources=(src,) if side == "offer" else ("solar", "wind"),
            energy_wh=rng.randint(100, 5_000),
            remaining_wh=0,
            expires=2**53,
            seq=i + 1,
            wheel_cap=80 if side == "bid" else 0,
            escrow=0,
            status="open",
            height=1,
        )
        o = Order(
            **{**{f: getattr(o, f) for f in o.__dataclass_fields__}, "remaining_wh": o.energy_wh}
        )
        t0 = time.perf_counter()
        result = match(book, o, orders.__getitem__, net, 0)
        left = o.remaining_wh
        for f in result.fills:
            m = orders[f.maker]
            rest = m.remaining_wh - f.energy_wh
            orders[f.maker] = Order(
                **{
                    **{k: getattr(m, k) for k in m.__dataclass_fields__},
                    "remaining_wh": rest,
                    "status": "filled" if rest == 0 else "open",
                }
            )
            left -= f.energy_wh
        if left:
            o = Order(
                **{**{k: getattr(o, k) for k in o.__dataclass_fields__}, "remaining_wh": left}
            )
            orders[o.id] = o
            book.add(o)
        lat.append(time.perf_counter() - t0)
        fills += len(result.fills)
    total = sum(lat)
    lat.sort()
    print(f"matching core: {n} orders, {fills} fills, resting entries at end {book.size()}")
    print(
        f"  {n / total:,.0f} orders/s; latency p50 {lat[n // 2] * 1e6:.0f} us, "
        f"p99 {lat[int(n * 0.99)] * 1e6:.0f} us, max {lat[-1] * 1e6:.0f} us"
    )


def _key(name: str) -> SigningKey:
    return SigningKey(hashlib.sha256(name.encode()).digest())


def bench_blocks(blocks: int, per_block: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    step = 60_000  # 1-min intervals: every gateway reads once per block
    t0 = 1_800_000_000_000 - 1_800_000_000_000 % step
    auth, val = _key("auth"), _key("val")
    gws = [_key(f"gw{i}") for i in range(200)]
    buyers = [_key(f"buyer{i}") for i in range(200)]
    genesis = Genesis(
        chain="gtx-bench",
        time_ms=t0,
        validators=(public_hex(val),),
        authorities=(public_hex(auth),),
        balances={public_hex(b): 10**9 for b in buyers} | {public_hex(g): 10**6 for g in gws},
        params={
            "price_ceiling_offpeak": 580,
            "horizon_s": 86_400,
            "tx_fee": 1,
            "interval_s": 60,
            "gate_closure_s": 60,
            "grace_s": 30,
        },
    )
    app = EnergyApp(genesis)
    seqs: dict[str, int] = {}

    def tx(k: SigningKey, body: object, ts: int) -> Envelope:
        who = public_hex(k)
        seqs[who] = seqs.get(who, 0) + 1
        return sign(k, "gtx-bench", body, seqs[who], ts)  # type: ignore[arg-type]

    zone_of = {public_hex(g): ZONES[i % len(ZONES)] for i, g in enumerate(gws)}
    regs = [
        tx(
            auth,
            Register(
                gateway=public_hex(g),
                owner=public_hex(buyers[i]),
                zone=zone_of[public_hex(g)],
                devices=(DeviceEntry(name="pv", source="solar", capacity_w=50_000),),
            ),
            t0,
        )
        for i, g in enumerate(gws)
    ]
    height, now = 1, t0 + 1
    app.commit(
        app.execute(
            BlockContext("gtx-bench", height, now, public_hex(val), app.validators(), ()), regs
        )
    )
    prev = {public_hex(g): "0" * 64 for g in gws}
    export = dict.fromkeys(prev, 0)
    open_orders: list[Envelope] = []
    total_txs, total_s = 0, 0.0
    snap_bytes, row_bytes, rows_s, snap_s = 0, 0, 0.0, 0.0
    for b in range(blocks):
        now += step
        height += 1
        boundary = now - now % step
        interval = boundary + step * (2 + b % 4)
        txs: list[Envelope] = []
        readers = rng.sample(gws, min(len(gws), int(per_block * 0.4)))
        for g in readers:
            k = public_hex(g)
            export[k] += rng.randint(0, 800)
            env = tx(
                g,
                MeterRead(
                    device="pv",
                    interval=boundary,
                    import_wh=0,
                    export_wh=export[k],
                    source="solar",
                    prev=prev[k],
                ),
                now,
            )
            txs.append(env)
        for _ in range(int(per_block * 0.25)):
            g = rng.choice(gws)
            env = tx(
                g,
                Offer(
                    interval=interval,
                    energy_wh=rng.randint(10, 500),
                    price=rng.randint(220, 400),
                    source="solar",
                    zone=zone_of[public_hex(g)],
                    expires=interval,
                ),
                now,
            )
            txs.append(env)
            open_orders.append(env)
        for _ in range(int(per_block * 0.25)):
            i = rng.randrange(len(buyers))
            env = tx(
                buyers[i],
                Bid(
                    interval=interval,
                    energy_wh=rng.randint(10, 500),
                    price=rng.randint(220, 500),
                    sources=("solar",),
                    zone=zone_of[public_hex(gws[i])],
                    expires=interval,
                ),
                now,
            )
            txs.append(env)
            open_orders.append(env)
        for _ in range(int(per_block * 0.05)):
            victim = rng.choice(open_orders)
            owner = next(k for k in (*gws, *buyers) if public_hex(k) == victim.sender)
            txs.append(tx(owner, Cancel(order=victim.message_id()), now))
        for _ in range(int(per_block * 0.05)):
            a, c = rng.sample(buyers, 2)
            txs.append(tx(a, Transfer(to=public_hex(c), amount=rng.randint(1, 1000)), now))
        ctx = BlockContext("gtx-bench", height, now, public_hex(val), app.validators(), ())
        start = time.perf_counter()
        ex = app.execute(ctx, txs)
        app.commit(ex)
        total_s += time.perf_counter() - start
        total_txs += len(txs)
        # What the chain store writes per block: before, the whole snapshot; now, the rows
        # the block changed (`state_changes`).
        start = time.perf_counter()
        changes = app.state_changes(ex)
        row_bytes += sum(len(k) + len(v or b"") for k, v in changes.items())
        rows_s += time.perf_counter() - start
        start = time.perf_counter()
        snap_bytes += len(app.snapshot())
        snap_s += time.perf_counter() - start
        for env, res in zip(txs, ex.results, strict=True):
            if isinstance(env.body, MeterRead) and (res.ok or "over capacity" in res.reason):
                prev[env.sender] = env.message_id()
        if b == 0:
            failed = [r.reason[:60] for r in ex.results if not r.ok]
            print(f"  (block 1: {len(failed)} of {len(txs)} failed, e.g. {failed[:2]})")
    trades = sum(1 for _ in app._store.tables["trades"])
    print(f"block execution: {blocks} blocks x {per_block} txs, {trades} trades")
    print(
        f"  {total_txs / total_s:,.0f} tx/s ({total_s / blocks * 1000:.1f} ms per block); "
        f"snapshot {len(app.snapshot()) / 1e6:.1f} MB"
    )
    print(
        f"  persisted per block: whole snapshot {snap_bytes / blocks / 1e3:,.0f} kB "
        f"({snap_s / blocks * 1000:.1f} ms to encode) vs changed rows "
        f"{row_bytes / blocks / 1e3:,.0f} kB ({rows_s / blocks * 1000:.1f} ms)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--block-txs", type=int, default=500)
    args = ap.parse_args()
    bench_matching(args.orders)
    bench_blocks(args.blocks, args.block_txs)
    print("(figures vary with load: this machine is shared; median of 3 runs recommended)")
    _ = statistics


if __name__ == "__main__":
    main()
