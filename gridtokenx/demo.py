"""`gtx demo`: a whole GridTokenX network on this machine, one trading cycle, then stop.

It starts mosquitto on a free loopback port, simulated meters and inverters (Modbus TCP,
Modbus RTU on a pseudo-terminal, IEC 61850), a network of 4 validators (`gtx hub run`) and
3 gateways (`gtx edge run`) whose signed telemetry and meter reads flow over MQTT to the
validators. It registers the gateways, places two offers of solar surplus and one bid for
the next delivery interval, waits for matching, delivery and settlement, and prints what
happened: trades, settlement and the money moved, certificates, and the state hashes of the
4 validators. Then it stops everything it started (also on Ctrl-C or failure).
Needs mosquitto (`apt-get install mosquitto`). Everything lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gridtokenx.demo_devices import PV2_W, check_devices, simulated_devices
from gridtokenx.demo_report import BUYER_FUNDS, owner_name, report_agreement, report_settlement
from gridtokenx.network import (
    Api,
    DeviceSpec,
    Observer,
    Processes,
    StageError,
    background,
    free_port,
    gtx,
    mosquitto_path,
    noon_clock,
    now_ms,
    start_broker,
    wait_port,
    write_edge_config,
    write_key,
)

CHAIN = "gtx-demo"
FEEDER_3 = "pea/ayutthaya/sub-01/feeder-3"
FEEDER_4 = "pea/ayutthaya/sub-01/feeder-4"


def say(text: str = "") -> None:
    """Print one line of the narrative now."""
    print(text, flush=True)


def hms(ms: int) -> str:
    """Local wall-clock time of a unix ms instant."""
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


class Demo:
    """One run of the demo: the stages and what they learned."""

    def __init__(self, workdir: Path, interval_s: int) -> None:
        """Prepare a run in `workdir` with delivery intervals of `interval_s`."""
        self.workdir = workdir
        self.interval_s = interval_s
        self.gate_s = max(2, interval_s // 4)
        self.grace_s = max(3, interval_s // 4)
        self.procs = Processes(workdir)
        self.api: Api | None = None
        self.mqtt_port = 0
        self.clock = noon_clock()
        self.gateways: dict[str, dict[str, Any]] = {}
        self.kept = False
        """Whether the cycle completed and --keep is holding the network up."""

    @contextlib.asynccontextmanager
    async def stage(self, title: str, timeout_s: float) -> AsyncIterator[None]:
        """One stage: a header, a time limit and child-process health checks."""
        say(f"\n== {title}")
        self.procs.check()
        try:
            async with asyncio.timeout(timeout_s):
                yield
        except TimeoutError as exc:
            raise StageError(f"stage '{title}' did not finish within {timeout_s:.0f} s") from exc
        self.procs.check()

    async def wait_for(self, what: str, predicate: Any, timeout_s: float) -> Any:
        """Poll the async `predicate` until it returns something truthy.

        Raises:
            StageError: not within `timeout_s`, or a child process died meanwhile.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.procs.check()
            result = await predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise StageError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            await asyncio.sleep(0.3)

    # ------------------------------------------------------------------ hub

    async def start_hub(self, buyer: str) -> list[str]:
        """`gtx hub init` (4 validators) and `gtx hub run` each; returns the API URLs."""
        from hub.localnet import init_network, write_config

        L = self.interval_s
        net = init_network(
            self.workdir / "hub",
            validators=4,
            chain=CHAIN,
            mqtt_url=f"mqtt://127.0.0.1:{self.mqtt_port}",
            fund={buyer: BUYER_FUNDS},
            interval_s=L,
            params={
                "interval_s": L,
                "gate_closure_s": self.gate_s,
                "grace_s": self.grace_s,
                "bft_heartbeat_ms": 1000,
            },
            time_ms=now_ms(),
        )
        ports = [free_port() for _ in net.configs]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for i, cfg in enumerate(net.configs):
            write_config(
                cfg,
                mqtt_url=f"mqtt://127.0.0.1:{self.mqtt_port}",
                api_port=ports[i],
                peers=[u for j, u in enumerate(urls) if j != i],
            )
            self.procs.spawn(f"validator-{i}", gtx("hub", "run", "--config", str(cfg)))
        self.validator_keys = list(net.keys)
        return urls

    # ------------------------------------------------------------------ the run

    async def run(self, keep: bool) -> None:
        """Every stage in order.

        Raises:
            StageError: a stage failed.
        """
        L = self.interval_s
        exe = mosquitto_path()
        if exe is None:
            raise StageError(
                "mosquitto is not installed; install it (apt-get install mosquitto, or run "
                "`bash .ci/setup`) and run `gtx demo` again"
            )
        async with self.stage("broker", 15):
            self.mqtt_port = start_broker(self.procs, exe, self.workdir)
            if not await wait_port(self.mqtt_port, 10):
                raise StageError(f"mosquitto did not listen on 127.0.0.1:{self.mqtt_port}")
            say(
                f"mosquitto {exe} on mqtt://127.0.0.1:{self.mqtt_port} "
                f"(pid {self.procs.children[0].proc.pid})"
            )

        owners = {
            n: write_key(self.workdir / "owners" / f"{n}.key")
            for n in ("coldstore", "school", "shop")
        }
        from wire.keys import public_hex

        buyer = public_hex(owners["shop"])
        async with simulated_devices(self.workdir, self.clock) as specs:
            async with self.stage("1. simulated devices, each read once like a gateway does", 30):
                say("physics clock: Bangkok 12:30 (shifted so the panels produce at any hour)")
                await check_devices(specs, say)

            async with self.stage("2. hub: 4 validators, BFT consensus over MQTT", 60):
                urls = await self.start_hub(buyer)
                self.api = api = Api(urls, CHAIN)

                async def all_up() -> list[Any] | None:
                    st = [await api.try_get("/v1/status", i) for i in range(4)]
                    return st if all(s and s["height"] >= 1 for s in st) else None

                statuses = await self.wait_for("4 validators to commit a block", all_up, 50)
                params = await api.get("/v1/params")
                p = params.get("params", params)
                for i, s in enumerate(statuses):
                    say(f"validator {i} {s['node'][:16]}…  {urls[i]}  height {s['height']}")
                say(
                    f"chain {CHAIN}: delivery interval {p['interval_s']} s, gate closure "
                    f"{p['gate_closure_s']} s, settlement grace {p['grace_s']} s (GET /v1/params)"
                )
                if p["interval_s"] != L:
                    raise StageError(f"the chain runs {p['interval_s']} s intervals, not {L} s")

            observer = Observer(CHAIN, self.mqtt_port)
            async with background(observer.run()):
                await self.trading_cycle(specs, owners, observer, keep)

    def awaiting_commit(self, gateway: str) -> str:
        """What the gateway's own status says of its meter reads' way to the chain."""
        try:
            status = json.loads((self.workdir / gateway / "status.json").read_text())
        except (OSError, ValueError):
            return "no gateway status yet"
        commits = status.get("commits") or {}
        return (
            f"its outbox keeps {commits.get('awaiting', '?')} read(s) until committed "
            f"(chain has its tx seq {commits.get('committed_seq')})"
        )

    async def trading_cycle(
        self, specs: dict[str, DeviceSpec], owners: dict[str, Any], observer: Observer, keep: bool
    ) -> None:
        """Gateways, registration, orders, delivery, settlement, agreement."""
        from wire.keys import load_key, public_hex
        from wire.kinds import DeviceEntry, Register

        assert self.api is not None
        api = self.api
        L = self.interval_s
        plan = [
            ("gw-coldstore", "coldstore", FEEDER_3, ["pv-roof", "main-meter"]),
            ("gw-school", "school", FEEDER_4, ["huawei-pv", "ied-meter"]),
            ("gw-shop", "shop", FEEDER_3, ["shop-meter"]),
        ]
        async with self.stage("3. gateways: sign readings, publish over MQTT", 45):
            await asyncio.wait_for(observer.connected.wait(), 10)
            for index, (name, owner, zone, devs) in enumerate(plan):
                gdir = self.workdir / name
                key = write_key(gdir / "gateway.key")
                cfg = gdir / "edge.toml"
                write_edge_config(
                    cfg,
                    key=gdir / "gateway.key",
                    chain=CHAIN,
                    zone=zone,
                    interval_s=L,
                    mqtt_port=self.mqtt_port,
                    devices=[specs[d] for d in devs],
                    hub_url=api.urls[index % len(api.urls)],
                )
                child = self.procs.spawn(name, gtx("edge", "run", "--config", str(cfg)))
                self.gateways[name] = {
                    "key": public_hex(key),
                    "owner": owner,
                    "zone": zone,
                    "devices": devs,
                }
                say(
                    f"{name} {public_hex(key)[:16]}… pid {child.proc.pid} zone {zone} "
                    f"owner {owner}: "
                    + ", ".join(
                        f"{d} ({specs[d].profile}, {specs[d].transport.split(':')[0]})"
                        for d in devs
                    )
                )

            async def all_reporting() -> bool:
                return all(
                    (g["key"], d) in observer.latest
                    for g in self.gateways.values()
                    for d in g["devices"]
                )

            await self.wait_for("telemetry from every device", all_reporting, 40)
            say("telemetry from all 5 devices verified on the broker (Ed25519, canonical JSON)")

        async with self.stage(
            "4. register the gateways (an installer key of the local network)", 30
        ):
            installer = load_key(self.workdir / "hub" / "v0" / "validator.key")
            base = max(
                (await api.get(f"/v1/accounts/{public_hex(installer)}"))["seq"] + 1, now_ms()
            )
            txs = []
            for n, g in enumerate(self.gateways.values()):
                body = Register(
                    gateway=g["key"],
                    owner=public_hex(owners[g["owner"]]),
                    zone=g["zone"],
                    devices=tuple(
                        DeviceEntry(name=d, source=specs[d].source, capacity_w=specs[d].capacity_w)  # type: ignore[arg-type]
                        for d in g["devices"]
                    ),
                )
                txs.append(await api.submit(installer, body, seq=base + n))
            done = await api.committed(txs, 25)
            say(f"3 gateways registered at height {max(d['height'] for d in done)}")

        interval = self.next_interval()
        async with self.stage(
            f"5. market: orders for the interval {hms(interval)}-{hms(interval + L * 1000)}", 40
        ):
            trades = await self.place_orders(interval, owners, observer)

        async with self.stage("6. delivery: meters read at both interval boundaries", L * 3 + 30):
            end = interval + L * 1000
            say(f"waiting for the interval to end at {hms(end)} and {self.grace_s} s of grace ...")
            while now_ms() < end + self.grace_s * 1000:
                self.procs.check()
                await asyncio.sleep(0.5)

            async def settled() -> list[Any] | None:
                found = await api.try_get("/v1/settlements", interval=interval)
                return found or None

            settlements = await self.wait_for("settlement", settled, L + 20)
            for name, g in self.gateways.items():
                dev = await api.get(f"/v1/devices/{g['key']}")
                tel = observer.counts[(g["key"], "telemetry")]
                reads = observer.counts[(g["key"], "meter_read")]
                last = {d: r for d, r in dev["last_reads"].items() if r}
                say(
                    f"{name}: {tel} telemetry and {reads} meter_read messages verified on MQTT; "
                    "on chain: "
                    + ", ".join(
                        f"{d} {r['export_wh']} Wh export at {hms(r['interval'])}"
                        for d, r in last.items()
                    )
                    + f"; {self.awaiting_commit(name)}"
                )

        async with self.stage("7. settlement", 20):
            await report_settlement(self.api_(), interval, trades, settlements, owners, say)

        async with self.stage("8. the 4 validators agree", 20):
            await report_agreement(self.api_(), say)

        say("\n== where to look")
        for i, u in enumerate(api.urls):
            say(f"validator {i}: {u}/v1/status   {u}/docs")
        u = api.urls[0]
        say(f"trades:      {u}/v1/market/trades?interval={interval}")
        say(f"settlements: {u}/v1/settlements?interval={interval}")
        say(f"statement:   {u}/v1/statements/{interval}")
        say(f"certificates:{u}/v1/certificates?owner={public_hex(owners['shop'])}")
        say(f"logs:        {self.workdir} (removed when the demo stops)")
        if keep:
            say("\n--keep: the network keeps running; press Ctrl-C to stop it")
            self.kept = True
            while True:
                self.procs.check()
                await asyncio.sleep(1)

    async def place_orders(
        self, interval: int, owners: dict[str, Any], observer: Observer
    ) -> list[Any]:
        """Two offers sized from the inverters' latest telemetry, then one bid; the trades.

        Raises:
            StageError: an order was refused or nothing matched.
        """
        from wire.kinds import Bid, Offer

        assert self.api is not None
        api, L = self.api, self.interval_s
        power = {d: t.power_w for (_gw, d), t in observer.latest.items()}
        cap2 = PV2_W * 6 // 5 * L // 3600
        e1 = max(1, power["pv-roof"] * L // 3600 * 9 // 10)
        e2 = max(2, min(cap2, power["huawei-pv"] * L // 3600 * 13 // 10))
        want = e1 + e2 * 9 // 10
        say(
            f"coldstore offers {e1} Wh of solar at 2.35 THB/kWh: 90 % of what pv-roof "
            f"makes in {L} s at its {power['pv-roof']} W now"
        )
        say(
            f"school    offers {e2} Wh of solar at 2.25 THB/kWh: 130 % of huawei-pv's "
            f"{power['huawei-pv']} W (betting the sun gets stronger), one feeder away"
        )
        offers = [
            (
                owners["coldstore"],
                Offer(
                    interval=interval,
                    energy_wh=e1,
                    price=235,
                    source="solar",
                    zone=FEEDER_3,
                    expires=interval,
                ),
            ),
            (
                owners["school"],
                Offer(
                    interval=interval,
                    energy_wh=e2,
                    price=225,
                    source="solar",
                    zone=FEEDER_4,
                    expires=interval,
                ),
            ),
        ]
        await api.committed([await api.submit(k, b) for k, b in offers], 20)
        say(
            f"shop      bids   {want} Wh of solar at up to 2.60 THB/kWh "
            "(its maximum cost is escrowed)"
        )
        bid = Bid(
            interval=interval,
            energy_wh=want,
            price=260,
            sources=("solar",),
            zone=FEEDER_3,
            expires=interval,
        )
        await api.committed([await api.submit(owners["shop"], bid)], 20)
        trades: list[Any] = await api.get("/v1/market/trades", interval=interval)
        if not trades:
            raise StageError("the orders did not match")
        for t in trades:
            seller = owner_name(t["seller"], owners)
            route = f"{t['seller_zone'].rsplit('/', 1)[1]} -> {t['buyer_zone'].rsplit('/', 1)[1]}"
            say(
                f"trade {seller} -> shop: {t['energy_wh']} Wh at {t['price'] / 100:.2f} THB/kWh"
                f" + wheeling {t['wheeling']} satang/kWh ({route}), {t['escrow']} satang escrowed"
            )
        say(
            "matching took the cheapest effective price first (offer + wheeling over the zone "
            "tree): 2.35 + 0 on the same feeder before 2.25 + 0.20 from the next one"
        )
        return trades

    def api_(self) -> Api:
        """The validators' API client (once the hub is up)."""
        assert self.api is not None
        return self.api

    def next_interval(self) -> int:
        """The first interval whose gate closes far enough ahead to place orders."""
        L = self.interval_s * 1000
        earliest = now_ms() + self.gate_s * 1000 + 6000
        return -(-earliest // L) * L


async def _main(interval_s: int, keep: bool) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    started = time.monotonic()
    code = 0
    with tempfile.TemporaryDirectory(prefix="gtx-demo-") as tmp:
        demo = Demo(Path(tmp), interval_s)
        try:
            await demo.run(keep)
        except StageError as exc:
            say("")
            print(f"gtx demo FAILED: {exc}", file=sys.stderr, flush=True)
            code = 1
        except asyncio.CancelledError:
            say("\nCtrl-C: stopping" if demo.kept else "\ninterrupted")
            code = 0 if demo.kept else 130
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if demo.api is not None:
                await demo.api.close()
            pids = demo.procs.stop_all()
            stopped = f"{len(pids)} processes (pids {' '.join(map(str, pids))})" if pids else ""
            stopped += " and " if stopped else ""
            say(f"\nstopped {stopped}the simulated devices; removed {tmp}")
    say(f"demo {'finished' if code == 0 else 'ended'} in {time.monotonic() - started:.0f} s")
    return code


def run_demo(args: argparse.Namespace) -> int:
    """Handler of `gtx demo`."""
    if not 5 <= args.interval_s <= 900:
        print("gtx demo: --interval-s must be 5..900", file=sys.stderr)
        return 2
    return asyncio.run(_main(args.interval_s, args.keep))


def add_demo_parser(sub: Any) -> None:
    """Register `gtx demo`."""
    p = sub.add_parser(
        "demo",
        help="run a whole network on this machine: devices, gateways, 4 validators, a market",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--interval-s",
        type=int,
        default=20,
        metavar="S",
        help="delivery interval in seconds (default 20; a cycle takes about 3-4 intervals)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the network running after the cycle until Ctrl-C",
    )
    p.set_defaults(func=run_demo)
