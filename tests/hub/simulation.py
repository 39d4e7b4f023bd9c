"""Deterministic simulation of n validators over a faulty network (seeded, single-threaded).

The network delays (uniformly, so it also reorders), drops, duplicates and partitions
messages; validators crash and restart from their persisted store and write-ahead record;
up to f validators are Byzantine (equivocate, vote for random blocks, or stay silent).
`run(scenario)` returns a `Report` and raises `SafetyViolation` the moment two honest
validators commit different blocks at one height or an honest validator signs two
conflicting votes. Liveness is judged by the caller from `Report.heights`.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from nacl.signing import SigningKey

from hub.application import Execution
from hub.consensus.action import Broadcast, Committed, Persist, SetTimer, Sync
from hub.consensus.block import EMPTY_COMMIT, block_hash
from hub.consensus.chain import Chain, Head
from hub.consensus.params import Params
from hub.consensus.replica import Replica
from hub.consensus.wal import WalRecord
from hub.genesis import Genesis
from hub.ledger import TransferLedger
from wire.consensus import BftPrecommit, BftPrevote, BftProposal, Block, Commit
from wire.envelope import Envelope, sign
from wire.keys import public_hex
from wire.kinds import Transfer

CHAIN = "gtx-sim"
T0 = 1_700_000_000_000
Behaviour = Literal["equivocate", "random", "silent"]

SIM_PARAMS = Params(
    propose_ms=300,
    prevote_ms=150,
    precommit_ms=150,
    delta_ms=100,
    cap_ms=600,
    heartbeat_ms=250,
    rebroadcast_ms=400,
    sync_retry_ms=400,
    max_block_txs=50,
)


class SafetyViolation(AssertionError):
    """Two honest validators committed different blocks, or one signed conflicting votes."""


@dataclass(frozen=True)
class Partition:
    """Between `start_ms` and `end_ms` (sim time) only nodes in the same group talk."""

    start_ms: int
    end_ms: int
    groups: tuple[frozenset[int], ...]


@dataclass(frozen=True)
class Crash:
    """Node `node` stops at `at_ms` and restarts at `restart_ms` from disk."""

    node: int
    at_ms: int
    restart_ms: int


@dataclass(frozen=True)
class Scenario:
    """One seeded run."""

    seed: int
    n: int = 4
    duration_ms: int = 8_000
    max_delay_ms: int = 40
    drop: float = 0.0
    duplicate: float = 0.0
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    byzantine: dict[int, Behaviour] = field(default_factory=dict)
    tx_every_ms: int = 150
    heal_ms: int = 0
    """After this time the network is perfect-but-delaying (no drops, no partitions)."""


@dataclass
class Report:
    """What a run did."""

    heights: dict[int, int]
    """Committed height of each honest node at the end."""
    heights_at_heal: dict[int, int]
    """Committed height of each honest node when the network healed."""
    committed_txs: int
    evidence: int
    messages: int


def _key(i: int, seed: int = 0) -> SigningKey:
    return SigningKey(hashlib.sha256(f"validator-{i}".encode()).digest())


class Pool:
    """A minimal mempool: verified envelopes by id, reaped in arrival order."""

    def __init__(self) -> None:
        self.txs: dict[str, Envelope] = {}

    def add(self, env: Envelope) -> bool:
        tid = env.message_id()
        if tid in self.txs:
            return False
        self.txs[tid] = env
        return True

    def has_txs(self) -> bool:
        return bool(self.txs)

    def reap(self, max_txs: int) -> Sequence[Envelope]:
        return sorted(self.txs.values(), key=lambda e: (e.sender, e.seq))[:max_txs]

    def on_commit(self, block: Block, execution: Execution) -> None:
        for result in execution.results:
            self.txs.pop(result.tx_id, None)


@dataclass
class Disk:
    """What survives a crash: committed blocks, app state rows, head, write-ahead record."""

    blocks: list[tuple[Block, Commit]] = field(default_factory=list)
    head: Head | None = None
    rows: dict[str, bytes | None] = field(default_factory=dict)
    wal: WalRecord | None = None


class Node:
    def __init__(self, sim: Sim, index: int) -> None:
        self.sim = sim
        self.index = index
        self.key = _key(index)
        self.pub = public_hex(self.key)
        self.disk = Disk()
        self.replica: Replica | None = None
        self.pool = Pool()
        self.incarnation = 0
        self.behaviour: Behaviour | None = sim.scenario.byzantine.get(index)

    @property
    def height(self) -> int:
        return self.disk.head.height if self.disk.head else 0

    def boot(self, now: int) -> None:
        app = TransferLedger(self.sim.genesis)
        head = self.disk.head
        if head is None:
            head = self.sim.genesis_head
        else:
            app.restore_rows(self.disk.rows.items())
        chain = Chain(CHAIN, app, head, tx_lookup=self.pool.txs.get)
        self.incarnation += 1
        self.replica = Replica(
            self.key, chain, self.pool, SIM_PARAMS, wal=self.disk.wal, seq=now * 1000
        )
        self.sim.perform(self, self.replica.start(now))

    def crash(self) -> None:
        self.replica = None
        self.pool = Pool()


class Sim:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        keys = [_key(i) for i in range(scenario.n)]
        self.clients = [
            SigningKey(hashlib.sha256(f"client-{i}".encode()).digest()) for i in range(3)
        ]
        self.client_seq = [0, 0, 0]
        self.genesis = Genesis(
            chain=CHAIN,
            time_ms=T0,
            validators=tuple(sorted(public_hex(k) for k in keys)),
            balances={public_hex(c): 1_000_000 for c in self.clients},
        )
        ledger = TransferLedger(self.genesis)
        self.genesis_head = Head(
            height=0,
            hash=self.genesis.hash(),
            time_ms=T0,
            state_hash=ledger.state_hash(),
            commit=EMPTY_COMMIT,
            validators=self.genesis.validators,
            signers=(),
        )
        self.nodes = [Node(self, i) for i in range(scenario.n)]
        self.now = T0
        self._queue: list[tuple[int, int, str, object]] = []
        self._counter = 0
        self.committed: dict[int, str] = {}
        self.signed: dict[tuple[str, str, int, int], str] = {}
        self.messages = 0
        self.committed_txs = 0
        self.evidence = 0

    # ------------------------------------------------------------ plumbing

    def push(self, at: int, kind: str, payload: object) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (at, self._counter, kind, payload))

    def honest(self, node: Node) -> bool:
        return node.behaviour is None

    def linked(self, a: int, b: int, at: int) -> bool:
        for p in self.scenario.partitions:
            if p.start_ms <= at - T0 < p.end_ms:
                ga = next((g for g in p.groups if a in g), None)
                if ga is None or b not in ga:
                    return False
        return True

    def send(self, src: Node, dst: Node, env: Envelope) -> None:
        sc, rel = self.scenario, self.now - T0
        healed = rel >= sc.heal_ms
        if not self.linked(src.index, dst.index, self.now):
            return
        if not healed and self.rng.random() < sc.drop:
            return
        copies = 2 if (not healed and self.rng.random() < sc.duplicate) else 1
        for _ in range(copies):
            delay = self.rng.randint(1, sc.max_delay_ms)
            self.messages += 1
            self.push(self.now + delay, "deliver", (dst.index, dst.incarnation, env))

    def broadcast(self, src: Node, env: Envelope) -> None:
        if src.behaviour == "silent":
            return
        for dst in self.nodes:
            if dst is src:
                continue
            self.send(src, dst, self.corrupt(src, env))

    def corrupt(self, src: Node, env: Envelope) -> Envelope:
        """What a Byzantine node sends one peer instead of `env`."""
        if src.behaviour is None:
            return env
        body = env.body
        if isinstance(body, BftPrevote | BftPrecommit):
            if env.sender != src.pub:
                return env
            if src.behaviour == "equivocate" and self.rng.random() < 0.5:
                return env
            fake = hashlib.sha256(self.rng.randbytes(8)).hexdigest()
            block = self.rng.choice([fake, "", body.block])
            forged = type(body)(height=body.height, round=body.round, block=block)
            return sign(src.key, CHAIN, forged, env.seq, env.ts_ms)
        if isinstance(body, BftProposal) and env.sender == src.pub and self.rng.random() < 0.5:
            header = body.block.header
            from dataclasses import replace

            other = replace(body.block, header=replace(header, time_ms=header.time_ms + 1))
            forged_p = BftProposal(
                height=body.height, round=body.round, pol_round=body.pol_round, block=other
            )
            return sign(src.key, CHAIN, forged_p, env.seq, env.ts_ms)
        return env

    def check_signature_history(self, node: Node, env: Envelope) -> None:
        body = env.body
        if env.sender != node.pub or not self.honest(node):
            return
        if not isinstance(body, BftPrevote | BftPrecommit):
            return
        key = (node.pub, env.kind, body.height, body.round)
        earlier = self.signed.setdefault(key, body.block)
        if earlier != body.block:
            raise SafetyViolation(
                f"seed {self.scenario.seed}: honest node {node.index} signed two {env.kind}s "
                f"at height {body.height} round {body.round}"
            )

    def perform(self, node: Node, actions: list[object]) -> None:
        for action in actions:
            if isinstance(action, Persist):
                node.disk.wal = action.record
            elif isinstance(action, Broadcast):
                self.check_signature_history(node, action.message)
                self.broadcast(node, action.message)
            elif isinstance(action, SetTimer):
                self.push(action.at_ms, "timer", (node.index, node.incarnation, action.timeout))
            elif isinstance(action, Committed):
                self.on_committed(node, action)
            elif isinstance(action, Sync):
                self.request_sync(node, action.height)

    def on_committed(self, node: Node, action: Committed) -> None:
        block = action.block
        h, bhash = block.header.height, block_hash(block)
        node.disk.blocks.append((block, action.commit))
        node.disk.head = action.head
        node.disk.rows.update(action.changes)
        if self.honest(node):
            first = self.committed.setdefault(h, bhash)
            if first != bhash:
                raise SafetyViolation(
                    f"seed {self.scenario.seed}: height {h} committed as {first[:12]} and "
                    f"{bhash[:12]} (node {node.index})"
                )
            if node.index == self.first_honest():
                self.committed_txs += len(block.txs)
                self.evidence += len(block.evidence)

    def first_honest(self) -> int:
        return next(n.index for n in self.nodes if self.honest(n))

    def request_sync(self, node: Node, height: int) -> None:
        peers = [p for p in self.nodes if p is not node and p.height >= height]
        if not peers:
            return
        peer = self.rng.choice(peers)
        if not self.linked(node.index, peer.index, self.now):
            return
        blocks = peer.disk.blocks[height - 1 : height - 1 + 20]
        delay = self.rng.randint(1, max(5, 4 * self.scenario.max_delay_ms))
        self.push(self.now + delay, "synced", (node.index, node.incarnation, blocks))

    # ------------------------------------------------------------ run

    def inject_tx(self) -> None:
        c = self.rng.randrange(len(self.clients))
        self.client_seq[c] += 1
        to = public_hex(self.clients[(c + 1) % len(self.clients)])
        env = sign(
            self.clients[c],
            CHAIN,
            Transfer(to=to, amount=1 + self.rng.randrange(100)),
            self.client_seq[c],
            self.now,
        )
        for node in self.nodes:
            if node.replica is not None and self.rng.random() > self.scenario.drop:
                fresh = not node.pool.has_txs()
                if node.pool.add(env) and fresh:
                    self.perform(node, node.replica.on_txs(self.now))

    def run(self) -> Report:
        sc = self.scenario
        for node in self.nodes:
            node.boot(self.now)
        for crash in sc.crashes:
            self.push(T0 + crash.at_ms, "crash", crash.node)
            self.push(T0 + crash.restart_ms, "restart", crash.node)
        self.push(T0 + sc.tx_every_ms, "tx", None)
        self.push(T0 + sc.heal_ms, "heal", None)
        end = T0 + sc.duration_ms
        heights_at_heal: dict[int, int] = {}
        while self._queue:
            at, _, kind, payload = heapq.heappop(self._queue)
            if at > end:
                break
            self.now = at
            if kind == "tx":
                self.inject_tx()
                self.push(at + sc.tx_every_ms, "tx", None)
            elif kind == "heal":
                heights_at_heal = {n.index: n.height for n in self.nodes if self.honest(n)}
            elif kind == "crash":
                self.nodes[payload].crash()  # type: ignore[index]
            elif kind == "restart":
                self.nodes[payload].boot(at)  # type: ignore[index]
            else:
                index, incarnation, data = payload  # type: ignore[misc]
                node = self.nodes[index]
                if node.replica is None or node.incarnation != incarnation:
                    continue
                if kind == "deliver":
                    actions = node.replica.on_message(data, at)
                elif kind == "timer":
                    actions = node.replica.on_timeout(data, at)
                else:
                    actions = []
                    for block, commit in data:
                        if node.replica is None:
                            break
                        actions += node.replica.on_block(block, commit, at)
                self.perform(node, actions)
        return Report(
            heights={n.index: n.height for n in self.nodes if self.honest(n)},
            heights_at_heal=heights_at_heal,
            committed_txs=self.committed_txs,
            evidence=self.evidence,
            messages=self.messages,
        )


def run(scenario: Scenario) -> Report:
    """Run one scenario; raises `SafetyViolation` on any safety breach."""
    return Sim(scenario).run()


def random_scenario(seed: int, n: int = 4) -> Scenario:
    """A seeded mix of every fault before 4 s, then a healed network (4 s; 8 s for n >= 7)."""
    rng = random.Random(seed * 7919 + n)
    f = (n - 1) // 3
    duration = 8_000 if n < 7 else 12_000
    heal = 4_000
    partitions: list[Partition] = []
    if rng.random() < 0.5:
        start = rng.randrange(0, 2_500)
        members = list(range(n))
        rng.shuffle(members)
        cut = rng.randrange(1, n)
        groups = (frozenset(members[:cut]), frozenset(members[cut:]))
        partitions.append(Partition(start, min(start + rng.randrange(300, 2_000), heal), groups))
    byz: dict[int, Behaviour] = {}
    for i in rng.sample(range(n), rng.randrange(0, f + 1)):
        byz[i] = rng.choice(["equivocate", "random", "silent"])
    crashes: list[Crash] = []
    honest = [i for i in range(n) if i not in byz]
    if rng.random() < 0.6:
        i = rng.choice(honest)
        at = rng.randrange(200, 3_000)
        crashes.append(Crash(i, at, min(at + rng.randrange(100, 1_500), heal)))
    return Scenario(
        seed=seed,
        n=n,
        duration_ms=duration,
        max_delay_ms=rng.choice([5, 20, 60]),
        drop=rng.choice([0.0, 0.05, 0.2]),
        duplicate=rng.choice([0.0, 0.1]),
        partitions=tuple(partitions),
        crashes=tuple(crashes),
        byzantine=byz,
        heal_ms=heal,
    )
