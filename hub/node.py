"""`Node`: the asyncio shell around a consensus core (validator `Replica` or `Follower`).

It reads MQTT messages, timer events, HTTP submissions and synced blocks, calls the core,
and performs the returned actions in order: write-ahead record to SQLite before a message
leaves, messages to the MQTT outbox, timers on the event loop, finalized blocks to SQLite,
sync requests to the sync task. Everything runs on one event loop, so the core is only ever
called from one place at a time; calls into the core and the actions they return are
performed synchronously, without awaiting in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import uvicorn

from hub.api import create_app
from hub.application import Application
from hub.config import Settings, consensus_params
from hub.consensus.action import Action, Broadcast, Committed, Persist, SetTimer, Sync
from hub.consensus.block import tx_id
from hub.consensus.chain import Chain
from hub.consensus.follower import Follower
from hub.consensus.replica import GUARD_ROUNDS, Replica
from hub.errors import ConfigError, HubError, InvalidBlock, StoreError, SyncError, TxRejected
from hub.genesis import Genesis
from hub.mempool import Mempool
from hub.state import EnergyApp
from hub.state.prices import SEQ_PER_BLOCK, zone_prices
from hub.state.settlement import Statement, sign_statement, verify_statement
from hub.store import ChainStore
from hub.sync import fetch_blocks, peer_heights
from hub.transport import Topics, Transport
from wire import canonical
from wire.consensus import BftBlock, BftStatementSig, Block, Commit
from wire.envelope import Envelope, from_obj, sign
from wire.errors import InvalidMessage
from wire.keys import generate_key, load_key, public_hex

__all__ = ["Node", "now_ms"]

log = logging.getLogger("gtx.hub")

MAX_CONSENSUS_BYTES = 32 * 1024 * 1024
"""Largest consensus message accepted (a proposal carries a whole block)."""
MAX_TX_BYTES = 65_536
SYNC_BATCH = 200
MAX_STATEMENT_SIGS = 10_000_000
"""Most statement signatures kept (validators only can add them; a bound all the same)."""
STATEMENT_TRIES = 8
"""Rounds of statement signature repair per settled interval (re-gossip own, fetch missing)."""
STATEMENT_FIRST_S = 1.0
"""Delay before the first repair round; it doubles each round, up to `STATEMENT_MAX_GAP_S`."""
STATEMENT_MAX_GAP_S = 60.0
STATEMENT_LOOKBACK = 32
"""Delivery intervals before the head whose statements are repaired after a (re)start."""
PRICE_MEMORY = 10_000
"""How many (zone, interval) reference prices a node remembers having published."""

AppFactory = Callable[[Genesis], Application]


def now_ms() -> int:
    """Wall clock, unix ms."""
    return time.time_ns() // 1_000_000


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the node owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Node:
    """One hub node: validator (votes) or follower (verifies only)."""

    def __init__(
        self,
        settings: Settings,
        *,
        follower: bool = False,
        app_factory: AppFactory = EnergyApp,
    ) -> None:
        """Open the store, restore the application and the consensus state.

        Raises:
            ConfigError: the key is not a validator's (and `follower` is off).
            StoreError: the store is unusable or disagrees with the application.
        """
        self.settings = settings
        genesis = settings.genesis
        self.chain_id = genesis.chain
        self.params = consensus_params(genesis)
        self.follower = follower
        if follower and not settings.key_path.exists():
            key = generate_key()  # a follower signs nothing; it only needs an MQTT identity
        else:
            key = load_key(settings.key_path)
        self.me = public_hex(key)
        self._key = key
        if not follower and self.me not in genesis.validators:
            raise ConfigError(
                "node.key",
                f"{settings.key_path} ({self.me[:12]}…) is not in the genesis validator set; "
                "use a validator's key or run with --follower",
            )
        app = app_factory(genesis)
        genesis_state = app.state_hash()
        self.store = ChainStore(settings.db_path, genesis)
        rows = self.store.app_rows()
        if rows:
            app.restore_rows(rows)
        head = self.store.head(genesis_state)
        if head.state_hash != app.state_hash():
            raise StoreError(
                f"{settings.db_path}: application state {app.state_hash()[:12]}… does not "
                f"match the stored head's {head.state_hash[:12]}…; the store is corrupt"
            )
        self.app = app
        # (zone, interval) -> (price, energy_wh) last published, to send only changes.
        self._published_prices: dict[tuple[str, int], tuple[int, int]] = {}
        self.mempool = Mempool(app, settings.mempool_max_txs, settings.mempool_gap_hold_ms)
        self.chain = Chain(
            genesis.chain,
            app,
            head,
            max_future_ms=self.params.max_future_ms,
            tx_lookup=self.mempool.get,
        )
        self.core: Replica | Follower
        if follower:
            self.core = Follower(self.chain, self.mempool, self.params)
        else:
            wal = self.store.wal()
            self.core = Replica(
                key, self.chain, self.mempool, self.params, wal=wal, seq=now_ms() * 1000
            )
        self.topics = Topics(genesis.chain)
        client_id = f"gtx-hub-{genesis.chain}-{self.me[:16]}"[:64]
        self.transport = Transport(
            settings.mqtt, client_id, self.topics, self._on_mqtt, str(settings.config_path)
        )
        self.syncing = False
        self.fatal: BaseException | None = None
        self._sync_wanted = asyncio.Event()
        self._stop = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()
        self.commits = 0
        self.txs_committed = 0
        """Transactions executed with ok since start."""
        self.txs_failed = 0
        """Transactions in blocks that failed (their seq consumed) since start."""
        self._started = False
        self._statement_repair: dict[int, tuple[int, float]] = {}
        """Settled intervals whose signatures are being repaired: (rounds done, next due)."""

    # ------------------------------------------------------------------ core driving

    def _drive(self, call: Callable[[int], list[Action]]) -> None:
        if self.fatal is not None:
            return
        try:
            actions = call(now_ms())
            self._perform(actions)
        except (InvalidBlock, StoreError) as exc:
            log.critical("stopping: %s", exc)
            self.fatal = exc
            self._stop.set()

    def _perform(self, actions: list[Action]) -> None:
        loop = asyncio.get_running_loop()
        for action in actions:
            if isinstance(action, Persist):
                self.store.save_wal(action.record)
            elif isinstance(action, Broadcast):
                topic = (
                    self.topics.blocks
                    if action.channel == "blocks"
                    else self.topics.consensus(self.me)
                )
                self.transport.publish(topic, action.message.to_bytes())
            elif isinstance(action, SetTimer):
                timeout = action.timeout
                delay = max(0, action.at_ms - now_ms()) / 1000

                def fire(t: Any = timeout) -> None:
                    self._drive(lambda now: self.core.on_timeout(t, now))

                handle = loop.call_later(delay, fire)
                self._timers.add(handle)
                if len(self._timers) > 1000:
                    self._timers = {
                        h for h in self._timers if not h.cancelled() and h.when() > loop.time()
                    }
            elif isinstance(action, Committed):
                self.store.commit_block(
                    action.block, action.commit, action.execution, action.head, action.changes
                )
                self.commits += 1
                self.txs_committed += sum(1 for r in action.execution.results if r.ok)
                self.txs_failed += sum(1 for r in action.execution.results if not r.ok)
                h = action.block.header
                log.info(
                    "committed block %d %s… (%d txs, round %d)",
                    h.height,
                    action.head.hash[:12],
                    len(action.block.txs),
                    action.commit.round,
                )
                self._publish_prices(action)
                if h.energy.settled:
                    for statement in EnergyApp.settled_statements(action.execution):
                        self._repair_later(statement.interval)
                    if not self.follower:
                        self._sign_statements(action)
            elif isinstance(action, Sync):
                self._sync_wanted.set()

    def _publish_prices(self, action: Committed) -> None:
        """Publish, signed and retained, the zone reference prices this block changed.

        Only at the chain's head: while catching up, the state already holds later blocks,
        and the last block of the catch-up publishes the current figures.
        """
        app = self.app
        height = action.block.header.height
        if self.follower or not isinstance(app, EnergyApp) or height != self.chain.head.height:
            return
        intervals: set[int] = set()
        for raw, result in zip(action.block.txs, action.execution.results, strict=True):
            if not result.ok:
                continue
            obj = canonical.decode(raw.encode())  # verified when the block was checked
            if isinstance(obj, dict) and obj.get("kind") in ("offer", "bid"):
                body = obj.get("body")
                interval = body.get("interval") if isinstance(body, dict) else None
                if isinstance(interval, int):
                    intervals.add(interval)
        if not intervals:
            return
        for n, price in enumerate(zone_prices(app.view(), height, intervals)):
            key, figures = (price.zone, price.interval), (price.price, price.energy_wh)
            if self._published_prices.get(key) == figures:
                continue
            self._published_prices[key] = figures
            env = sign(
                self._key, self.chain_id, price, height * SEQ_PER_BLOCK + n, action.head.time_ms
            )
            self.transport.publish(self.topics.grid(price.zone), env.to_bytes(), retain=True)
        while len(self._published_prices) > PRICE_MEMORY:
            del self._published_prices[next(iter(self._published_prices))]

    def _sign_statements(self, action: Committed) -> None:
        """Vouch for the statements of the intervals a committed block settled, and gossip."""
        height = action.block.header.height
        for statement in EnergyApp.settled_statements(action.execution):
            digest = statement.digest()
            sig = sign_statement(self._key, self.chain_id, statement.interval, digest)
            self.store.save_statement_sig(statement.interval, self.me, digest, height, sig)
            self._gossip_statement_sig(statement.interval, height, digest, sig)
            log.info("signed the statement of interval %d (%s…)", statement.interval, digest[:12])

    def _gossip_statement_sig(self, interval: int, height: int, digest: str, sig: str) -> None:
        body = BftStatementSig(interval=interval, height=height, statement=digest, sig=sig)
        if isinstance(self.core, Replica):
            self.core.seq += 1  # the consensus stream's seq, shared with the replica
            seq = self.core.seq
        else:  # pragma: no cover - followers do not sign
            seq = now_ms() * 1000
        env = sign(self._key, self.chain_id, body, seq, now_ms())
        self.transport.publish(self.topics.consensus(self.me), env.to_bytes())

    # ------------------------------------------------------------------ statement repair
    # Gossip is fire and forget: a validator that was away (and whose broker session was
    # lost) never hears the others' signatures, and one that died before its own left never
    # sends it. For a bounded time after an interval settles (and after a restart, for the
    # last STATEMENT_LOOKBACK intervals), each node re-gossips its own signature while its
    # view lacks some validator's, and fetches the missing ones from its peers' APIs.

    def _repair_later(self, interval: int) -> None:
        if interval not in self._statement_repair:
            self._statement_repair[interval] = (0, time.monotonic() + STATEMENT_FIRST_S)

    def _statement_record(self, interval: int) -> Statement | None:
        """The stored statement of `interval`, None before it settled here."""
        if not isinstance(self.app, EnergyApp):
            return None
        found: Statement | None = self.app.view().get("statements", str(interval))
        return found

    def _own_statement_sig(self, interval: int, digest: str) -> tuple[int, str] | None:
        for v, d, height, sig in self.store.statement_sigs(interval):
            if v == self.me and d == digest:
                return height, sig
        return None

    def _repair_recent(self) -> None:
        """After a (re)start: re-gossip our signatures of recent statements once, then repair."""
        if not isinstance(self.app, EnergyApp):
            return
        st = self.app.view()
        step = st.params.interval_ms
        last = (self.chain.head.time_ms - step - st.params.grace_s * 1000) // step * step
        resent = 0
        for k in range(STATEMENT_LOOKBACK):
            interval = last - k * step
            found = self._statement_record(interval) if interval >= 0 else None
            if found is None:
                continue
            digest = found.digest()
            own = None if self.follower else self._own_statement_sig(interval, digest)
            if own is not None:
                self._gossip_statement_sig(interval, own[0], digest, own[1])
                resent += 1
            self._repair_later(interval)
        if resent:
            log.info("re-sent own signatures of %d recent statements", resent)

    async def _repair_statement(self, http: httpx.AsyncClient, interval: int) -> bool:
        """One repair round; True once every signature of the statement's set is here."""
        statement = self._statement_record(interval)
        if statement is None:
            return True  # not settled here (another application): nothing to repair
        digest = statement.digest()
        validators = set(statement.validators)
        have = {
            v for v, d, _h, _s in self.store.statement_sigs(interval) if d == digest
        } & validators
        if have >= validators:
            return True
        own = None if self.follower else self._own_statement_sig(interval, digest)
        if own is not None:
            self._gossip_statement_sig(interval, own[0], digest, own[1])
        for peer in self.settings.peers:
            if have >= validators:
                break
            try:
                response = await http.get(f"{peer}/v1/statements/{interval}")
                response.raise_for_status()
                data = response.json()
                if not isinstance(data, dict) or data.get("hash") != digest:
                    continue  # not settled there yet, or a diverged peer: nothing to take
                found = [(s["validator"], int(s["height"]), s["sig"]) for s in data["signatures"]]
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.debug("statement %d: peer %s: %s", interval, peer, exc)
                continue
            for validator, height, sig in found:
                if validator not in validators - have or not isinstance(sig, str):
                    continue
                if verify_statement(validator, self.chain_id, interval, digest, sig):
                    self.store.save_statement_sig(interval, validator, digest, height, sig)
                    have.add(validator)
        return have >= validators

    async def _statement_loop(self) -> None:
        async with httpx.AsyncClient(timeout=3.0) as http:
            while True:
                await asyncio.sleep(0.5)
                for interval, (rounds, due) in sorted(self._statement_repair.items()):
                    if due > time.monotonic():
                        continue
                    try:
                        complete = await self._repair_statement(http, interval)
                    except StoreError as exc:
                        log.warning("statement %d: %s", interval, exc)
                        complete = False
                    rounds += 1
                    if complete or rounds >= STATEMENT_TRIES:
                        self._statement_repair.pop(interval, None)
                        if not complete:
                            log.info(
                                "statement %d: still missing signatures after %d repair "
                                "rounds; GET /v1/statements/%d shows which",
                                interval,
                                rounds,
                                interval,
                            )
                        continue
                    gap = min(STATEMENT_FIRST_S * 2**rounds, STATEMENT_MAX_GAP_S)
                    self._statement_repair[interval] = (rounds, time.monotonic() + gap)

    def _on_statement_sig(self, env: Envelope) -> None:
        """Keep another validator's statement signature once it verifies."""
        body = env.body
        if not isinstance(body, BftStatementSig):
            return
        # Signers that count are the statement's set; before it settled here, the current set.
        statement = self._statement_record(body.interval)
        signers = statement.validators if statement else self.chain.head.validators
        if env.sender not in signers:
            return
        if not verify_statement(env.sender, self.chain_id, body.interval, body.statement, body.sig):
            log.debug("dropping a statement signature from %s… that does not verify", env.sender)
            return
        if self.store.statement_sig_count() >= MAX_STATEMENT_SIGS:
            log.warning("statement signature store is full (%d); dropping", MAX_STATEMENT_SIGS)
            return
        self.store.save_statement_sig(
            body.interval, env.sender, body.statement, body.height, body.sig
        )

    def statement_signatures(self, interval: int) -> list[tuple[str, str, int, str]]:
        """(validator, statement hash, height, sig) kept for `interval` (verified)."""
        return self.store.statement_sigs(interval)

    # ------------------------------------------------------------------ inbound

    def _parse(self, payload: bytes, limit: int) -> Envelope | None:
        if len(payload) > limit:
            log.debug("dropping a %d-byte message (limit %d)", len(payload), limit)
            return None
        try:
            return from_obj(canonical.decode(payload), self.chain_id)
        except InvalidMessage as exc:
            log.debug("dropping an invalid message: %s", exc)
            return None

    def _known_tx(self, tid: str) -> bool:
        return self.mempool.get(tid) is not None or self.store.tx(tid) is not None

    def _on_mqtt(self, topic: str, payload: bytes) -> None:
        if topic.startswith(self.topics.root + "/gw/"):
            with contextlib.suppress(TxRejected):
                self._on_tx(payload, relay=False)
            return
        if topic == self.topics.consensus(self.me):
            return  # our own messages, echoed by the broker
        env = self._parse(payload, MAX_CONSENSUS_BYTES)
        if env is None:
            return
        if env.stream == "tx":
            with contextlib.suppress(TxRejected):
                self._on_tx(payload, relay=False, env=env)
            return
        if env.stream != "consensus":
            return
        if isinstance(env.body, BftStatementSig):
            self._on_statement_sig(env)
            return
        if not isinstance(env.body, BftBlock):
            if not self._started or env.sender not in self.chain.head.validators:
                return  # only validators speak consensus, and only to a node that caught up
        self._drive(lambda now: self.core.on_message(env, now))

    def _on_tx(self, payload: bytes, *, relay: bool, env: Envelope | None = None) -> str:
        tid = hashlib.sha256(payload).hexdigest()
        if env is None and self._known_tx(tid):
            return tid  # canonical bytes: the payload hash is the tx id; skip re-verifying
        if env is None:
            env = self._parse(payload, MAX_TX_BYTES)
            if env is None:
                raise TxRejected("not a valid signed message")
        canonical_bytes = env.to_bytes()
        tid = tx_id(canonical_bytes.decode("utf-8"))
        if self.store.tx(tid) is not None:
            return tid
        was_empty = not self.mempool.has_txs()
        if self.mempool.add(env, tid):
            if relay:
                self.transport.publish(self.topics.consensus(self.me), canonical_bytes)
            if was_empty:
                self._drive(self.core.on_txs)
        return tid

    # ------------------------------------------------------------------ API view

    def submit(self, data: bytes) -> str:
        """Verify and admit a transaction from `POST /v1/tx`; relay it to the other validators.

        Raises:
            InvalidMessage: it does not parse or verify.
            TxRejected: not a transaction, or refused by the mempool or the application.
        """
        env = from_obj(canonical.decode(data), self.chain_id)
        if env.stream != "tx":
            raise TxRejected(f"{env.kind} is not a transaction (stream {env.stream})")
        return self._on_tx(data, relay=True, env=env)

    def status(self) -> dict[str, Any]:
        """The `GET /v1/status` document."""
        head = self.chain.head
        return {
            "chain": self.chain_id,
            "node": self.me,
            "mode": "follower" if self.follower else "validator",
            "height": head.height,
            "block_hash": head.hash,
            "state_hash": head.state_hash,
            "time_ms": head.time_ms,
            "validators": list(head.validators),
            "syncing": self.syncing,
            "round": self.core.round,
            "step": self.core.step,
            "mempool": len(self.mempool),
            "mempool_held": self.mempool.held(),
            "mqtt_connected": self.transport.connected,
            "since_start": {
                "blocks": self.commits,
                "txs_ok": self.txs_committed,
                "txs_failed": self.txs_failed,
            },
        }

    def block_json(self, height: int, *, full: bool) -> dict[str, Any] | None:
        """A stored block as JSON."""
        found = self.store.block(height)
        if found is None:
            return None
        block, commit, bhash = found
        out: dict[str, Any] = {
            "height": height,
            "hash": bhash,
            "header": block.header.to_json(),
            "txs": [tx_id(t) for t in block.txs],
            "evidence": len(block.evidence),
            "commit": commit.to_json(),
        }
        if full:
            out["block"] = block.to_json()
        return out

    def tx_json(self, tid: str) -> dict[str, Any] | None:
        """Where a transaction is."""
        if self.mempool.get(tid) is not None:
            return {"id": tid, "status": "pending"}
        stored = self.store.tx(tid)
        if stored is not None:
            return {
                "id": tid,
                "status": "committed" if stored.ok else "rejected",
                "height": stored.height,
                "position": stored.position,
                "ok": stored.ok,
                "reason": stored.reason,
                "kind": stored.kind,
                "sender": stored.sender,
                "seq": stored.seq,
            }
        reason = self.mempool.rejected(tid)
        if reason is not None:
            return {"id": tid, "status": "rejected", "reason": reason}
        return None

    # ------------------------------------------------------------------ tasks

    async def _fetch_and_apply(self, http: httpx.AsyncClient) -> tuple[int, SyncError | None]:
        """Fetch up to `SYNC_BATCH` blocks after the head from peers and apply them in order.

        Returns:
            How many were applied (it stops at one that is not the next or not certified),
            and why peers stopped serving, if they failed (possibly after some blocks).
        """
        applied = 0
        self.syncing = True
        try:
            async for block, commit in fetch_blocks(
                http, self.settings.peers, self.chain_id, self.chain.height + 1, SYNC_BATCH
            ):
                before = self.chain.height
                self._drive(functools.partial(self._apply_synced, block, commit))
                if self.chain.height == before:
                    break  # not the next block, or its certificate did not hold
                applied += 1
        except SyncError as exc:
            return applied, exc
        finally:
            self.syncing = False
        return applied, None

    async def _sync_loop(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                await self._sync_wanted.wait()
                self._sync_wanted.clear()
                if not self.settings.peers:
                    continue
                fetched, error = await self._fetch_and_apply(http)
                if error is not None:
                    log.debug("sync: %s", error)
                if fetched:
                    log.info("synced %d blocks from peers; now at %d", fetched, self.chain.height)
                if fetched >= SYNC_BATCH:
                    self._sync_wanted.set()
                await asyncio.sleep(0.1)

    async def _catch_up(self) -> None:
        """Before voting, fetch what peers committed while this node was away."""
        if not self.settings.peers:
            return
        async with httpx.AsyncClient(timeout=3.0) as http:
            while not self._stop.is_set():
                heights = await peer_heights(http, self.settings.peers, self.chain_id)
                if max(heights.values(), default=0) <= self.chain.height:
                    return
                fetched, error = await self._fetch_and_apply(http)
                if error is not None:
                    log.warning("catching up: %s", error)
                if not fetched:
                    return  # peers serve nothing we can apply; consensus will sort it out
                log.info("caught up to height %d", self.chain.height)

    def _apply_synced(self, block: Block, commit: Commit, now: int) -> list[Action]:
        return self.core.on_block(block, commit, now)

    def stop(self) -> None:
        """Ask `run` to return (SIGTERM handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until `stop()`; raise the fatal error if the node had to stop on one.

        Raises:
            HubError: the node hit a store error or diverged from the certified chain.
        """
        config = uvicorn.Config(
            create_app(self),
            host=self.settings.api_host,
            port=self.settings.api_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = _Server(config)
        tasks = [
            asyncio.create_task(self.transport.run(), name="mqtt"),
            asyncio.create_task(server.serve(), name="api"),
        ]
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await self._catch_up()
            self._started = True
            self._drive(self.core.start)
            guarded = getattr(self.core, "guard_height", None)
            if guarded is not None:
                log.warning(
                    "no write-ahead record in %s but the chain is at height %d: this "
                    "validator's data may have been wiped while it voted, so it signs "
                    "nothing at height %d before round %d (never two votes in one round)",
                    self.settings.db_path,
                    guarded - 1,
                    guarded,
                    GUARD_ROUNDS,
                )
            self._repair_recent()
            tasks.append(asyncio.create_task(self._sync_loop(), name="sync"))
            tasks.append(asyncio.create_task(self._statement_loop(), name="statements"))
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise HubError(f"{task.get_name()} task failed: {task.exception()}")
        finally:
            server.should_exit = True
            stopper.cancel()
            for task in tasks:
                if task.get_name() != "api":  # uvicorn stops itself on should_exit
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SystemExit, TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
            for handle in self._timers:
                handle.cancel()
            self.store.close()
        if self.fatal is not None:
            raise HubError(str(self.fatal)) from self.fatal
