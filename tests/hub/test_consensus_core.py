"""Unit tests of the pure consensus pieces: blocks, certificates, evidence, votes, WAL, replica."""

from __future__ import annotations

import ast
import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from hub.application import BlockContext
from hub.consensus.action import Broadcast, Committed, Persist, SetTimer, Timeout
from hub.consensus.block import (
    EMPTY_COMMIT,
    block_hash,
    commit_signatures,
    max_faulty,
    merkle_root,
    quorum,
    verify_commit,
    weak_quorum,
)
from hub.consensus.chain import Chain, Head
from hub.consensus.evidence import InvalidEvidence, check_evidence, make_evidence
from hub.consensus.params import Params
from hub.consensus.replica import GUARD_ROUNDS, Replica
from hub.consensus.vote import PREVOTE, VoteBook
from hub.consensus.wal import WalRecord
from hub.errors import ConfigError, InvalidBlock, InvalidCommit
from hub.genesis import Genesis
from hub.ledger import TransferLedger
from wire.consensus import BftPrecommit, BftPrevote, BftProposal, Commit
from wire.envelope import Envelope, sign
from wire.keys import public_hex
from wire.kinds import Transfer

CHAIN = "gtx-test"
T0 = 1_700_000_000_000
KEYS = [SigningKey(hashlib.sha256(f"v{i}".encode()).digest()) for i in range(4)]
PUBS = sorted(public_hex(k) for k in KEYS)
BY_PUB = {public_hex(k): k for k in KEYS}
ALICE = SigningKey(hashlib.sha256(b"alice").digest())
BOB = SigningKey(hashlib.sha256(b"bob").digest())


def genesis() -> Genesis:
    return Genesis(
        chain=CHAIN,
        time_ms=T0,
        validators=tuple(PUBS),
        balances={public_hex(ALICE): 1_000},
    )


def fresh_chain() -> Chain:
    g = genesis()
    app = TransferLedger(g)
    head = Head(0, g.hash(), T0, app.state_hash(), EMPTY_COMMIT, g.validators, ())
    return Chain(CHAIN, app, head)


def transfer(seq: int, amount: int, key: SigningKey = ALICE) -> Envelope:
    return sign(key, CHAIN, Transfer(to=public_hex(BOB), amount=amount), seq, T0 + seq)


def precommits(block: str, height: int = 1, round_: int = 0, signers: int = 3) -> Commit:
    envs = [
        sign(BY_PUB[p], CHAIN, BftPrecommit(height=height, round=round_, block=block), 1, T0)
        for p in PUBS[:signers]
    ]
    return Commit(height=height, round=round_, block=block, sigs=commit_signatures(envs))


# ------------------------------------------------------------------ arithmetic and hashing


def test_quorum_arithmetic() -> None:
    for n, f, q in [(1, 0, 1), (4, 1, 3), (5, 1, 4), (7, 2, 5), (10, 3, 7)]:
        assert (max_faulty(n), quorum(n)) == (f, q)
        assert weak_quorum(n) == n - q + 1
        assert 2 * quorum(n) - n > max_faulty(n)  # two quorums share an honest validator


def test_merkle_root_distinguishes_lists() -> None:
    a, b, c = (f"{i:064x}" for i in (1, 2, 3))
    roots = {merkle_root(x) for x in ([], [a], [a, b], [b, a], [a, b, c], [a, b, c, c])}
    assert len(roots) == 6


def test_timeouts_grow_and_are_capped() -> None:
    p = Params(propose_ms=1_000, delta_ms=500, cap_ms=3_000)
    assert [p.timeout("propose", r) for r in range(6)] == [1000, 1500, 2000, 2500, 3000, 3000]
    with pytest.raises(ConfigError, match=r"consensus\.cap_ms"):
        Params(cap_ms=0)


# ------------------------------------------------------------------ blocks


def test_build_then_check_and_apply() -> None:
    builder, checker = fresh_chain(), fresh_chain()
    block, execution = builder.build(T0 + 10, PUBS[0], [transfer(1, 300), transfer(2, 5_000)])
    assert [r.ok for r in execution.results] == [True, False]
    assert "insufficient balance" in execution.results[1].reason
    assert checker.check(block, T0 + 10).state_hash == block.header.state_hash
    checker.apply(block, precommits(block_hash(block)), execution)
    assert checker.height == 1
    assert isinstance(checker.app, TransferLedger)
    assert checker.app.balance(public_hex(BOB)) == 300


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: replace(h, state_hash="0" * 64), "state_hash"),
        (lambda h: replace(h, prev="0" * 64), "prev"),
        (lambda h: replace(h, time_ms=T0), "not after"),
        (lambda h: replace(h, time_ms=T0 + 60_000), "future"),
        (lambda h: replace(h, tx_root="0" * 64), "tx_root"),
        (lambda h: replace(h, proposer="0" * 64), "not a validator"),
        (lambda h: replace(h, height=2), "expected height 1"),
        (lambda h: replace(h, chain="other"), "chain"),
    ],
)
def test_check_refuses_tampered_headers(change, reason) -> None:  # type: ignore[no-untyped-def]
    block, _ = fresh_chain().build(T0 + 10, PUBS[0], [transfer(1, 10)])
    bad = replace(block, header=change(block.header))
    with pytest.raises(InvalidBlock, match=reason):
        fresh_chain().check(bad, T0 + 10)


def test_check_refuses_a_tx_the_block_did_not_commit_to() -> None:
    block, _ = fresh_chain().build(T0 + 10, PUBS[0], [transfer(1, 10)])
    other = transfer(2, 10).to_bytes().decode()
    with pytest.raises(InvalidBlock, match="tx_root"):
        fresh_chain().check(replace(block, txs=(other,)), T0 + 10)


def test_second_block_needs_a_valid_certificate() -> None:
    chain = fresh_chain()
    b1, e1 = chain.build(T0 + 10, PUBS[0], [])
    chain.apply(b1, precommits(block_hash(b1)), e1)
    b2, _ = chain.build(T0 + 20, PUBS[1], [])
    assert b2.last_commit.block == block_hash(b1)
    checker = fresh_chain()
    checker.apply(b1, precommits(block_hash(b1)), checker.check(b1))
    checker.check(b2, T0 + 20)
    forged = replace(b2, last_commit=precommits(block_hash(b1), signers=2))
    forged = replace(forged, header=replace(b2.header, last_commit_hash=b2.header.last_commit_hash))
    with pytest.raises(InvalidBlock):
        checker.check(forged, T0 + 20)


def test_verify_commit_rejects_short_foreign_and_forged() -> None:
    h = "ab" * 32
    verify_commit(CHAIN, precommits(h), 1, h, PUBS)
    with pytest.raises(InvalidCommit, match="2 precommits, 3 of 4"):
        verify_commit(CHAIN, precommits(h, signers=2), 1, h, PUBS)
    with pytest.raises(InvalidCommit, match="not a validator"):
        verify_commit(CHAIN, precommits(h), 1, h, [*PUBS[1:], "ff" * 32])
    good = precommits(h)
    forged = replace(good, sigs=(replace(good.sigs[0], seq=99), *good.sigs[1:]))
    with pytest.raises(InvalidCommit, match="does not verify"):
        verify_commit(CHAIN, forged, 1, h, PUBS)
    with pytest.raises(InvalidCommit, match="height"):
        verify_commit(CHAIN, good, 2, h, PUBS)


# ------------------------------------------------------------------ evidence and votes


def test_evidence_proves_equivocation_and_nothing_else() -> None:
    k = KEYS[0]
    a = sign(k, CHAIN, BftPrevote(height=3, round=1, block="aa" * 32), 1, T0)
    b = sign(k, CHAIN, BftPrevote(height=3, round=1, block=""), 2, T0)
    offence = check_evidence(CHAIN, make_evidence(a, b), PUBS)
    assert (offence.sender, offence.height, offence.round) == (public_hex(k), 3, 1)
    same = sign(k, CHAIN, BftPrevote(height=3, round=1, block="aa" * 32), 3, T0)
    with pytest.raises(InvalidEvidence, match="same block"):
        check_evidence(CHAIN, make_evidence(a, same), PUBS)
    other_round = sign(k, CHAIN, BftPrevote(height=3, round=2, block=""), 4, T0)
    with pytest.raises(InvalidEvidence, match="different heights, rounds or types"):
        check_evidence(CHAIN, make_evidence(a, other_round), PUBS)
    other_type = sign(k, CHAIN, BftPrecommit(height=3, round=1, block=""), 5, T0)
    with pytest.raises(InvalidEvidence):
        check_evidence(CHAIN, make_evidence(a, other_type), PUBS)
    stranger = SigningKey(b"\x01" * 32)
    c = sign(stranger, CHAIN, BftPrevote(height=3, round=1, block="aa" * 32), 1, T0)
    d = sign(stranger, CHAIN, BftPrevote(height=3, round=1, block=""), 2, T0)
    with pytest.raises(InvalidEvidence, match="not a validator"):
        check_evidence(CHAIN, make_evidence(c, d), PUBS)


def test_vote_book_counts_equivocators_per_block_once_in_total() -> None:
    book = VoteBook(1, PUBS)
    k0, k1 = BY_PUB[PUBS[0]], BY_PUB[PUBS[1]]
    x = "cd" * 32
    assert book.add(sign(k0, CHAIN, BftPrevote(height=1, round=0, block=x), 1, T0)).new
    dup = book.add(sign(k0, CHAIN, BftPrevote(height=1, round=0, block=x), 2, T0))
    assert not dup.new
    assert dup.conflict is None
    eq = book.add(sign(k0, CHAIN, BftPrevote(height=1, round=0, block=""), 3, T0))
    assert eq.conflict is not None
    book.add(sign(k1, CHAIN, BftPrevote(height=1, round=0, block=x), 1, T0))
    assert book.count(PREVOTE, 0, x) == 2
    assert book.count(PREVOTE, 0, "") == 1
    assert book.total(PREVOTE, 0) == 2
    assert book.decided(PREVOTE, 0) is None


def test_wal_record_round_trips() -> None:
    env = sign(KEYS[0], CHAIN, BftPrevote(height=7, round=2, block=""), 9, T0)
    rec = WalRecord(7, 2, 1, "ab" * 32, 1, "ab" * 32, 9, (env,))
    assert WalRecord.from_bytes(rec.to_bytes(), CHAIN) == rec


# ------------------------------------------------------------------ ledger


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(1, 700)), max_size=12))
def test_ledger_conserves_satang_and_never_mutates_on_execute(moves) -> None:  # type: ignore[no-untyped-def]
    ledger = TransferLedger(genesis())
    before = ledger.snapshot()
    keys = [ALICE, BOB]
    seqs = [0, 0]
    txs = []
    for who, amount in moves:
        seqs[who] += 1
        to = public_hex(keys[1 - who])
        txs.append(sign(keys[who], CHAIN, Transfer(to=to, amount=amount), seqs[who], T0))
    ctx = BlockContext(CHAIN, 1, T0 + 1, PUBS[0], tuple(PUBS), ())
    execution = ledger.execute(ctx, txs)
    assert ledger.snapshot() == before
    ledger.commit(execution)
    assert ledger.balance(public_hex(ALICE)) + ledger.balance(public_hex(BOB)) == 1_000
    restored = TransferLedger(genesis())
    restored.restore(ledger.snapshot())
    assert restored.state_hash() == ledger.state_hash() == execution.state_hash


# ------------------------------------------------------------------ replica


class Pool:
    def __init__(self) -> None:
        self.txs: list[Envelope] = []

    def has_txs(self) -> bool:
        return bool(self.txs)

    def reap(self, max_txs: int) -> list[Envelope]:
        return self.txs[:max_txs]

    def on_commit(self, block, execution) -> None:  # type: ignore[no-untyped-def]
        self.txs = []


def replica(i: int, wal: WalRecord | None = None) -> Replica:
    return Replica(BY_PUB[PUBS[i]], fresh_chain(), Pool(), Params(), wal=wal, seq=1)


def proposal_for(height: int, round_: int, time_ms: int) -> Envelope:
    proposer = PUBS[(height + round_) % 4]
    block, _ = fresh_chain().build(time_ms, proposer, [])
    body = BftProposal(height=height, round=round_, pol_round=-1, block=block)
    return sign(BY_PUB[proposer], CHAIN, body, 1, time_ms)


def broadcasts(actions, kind: str) -> list[Envelope]:  # type: ignore[no-untyped-def]
    return [a.message for a in actions if isinstance(a, Broadcast) and a.message.kind == kind]


def test_idle_replica_waits_for_heartbeat() -> None:
    r = replica(2)  # proposer of height 1 round 0 is PUBS[1]
    actions = r.start(T0 + 1)
    timers = [a.timeout.kind for a in actions if isinstance(a, SetTimer)]
    assert timers == ["rebroadcast", "heartbeat"]
    assert not broadcasts(actions, "bft_prevote")


def test_replica_persists_before_broadcasting_its_vote() -> None:
    r = replica(2)
    r.start(T0 + 1)
    actions = r.on_message(proposal_for(1, 0, T0 + 5), T0 + 6)
    kinds = [type(a).__name__ for a in actions]
    assert kinds.index("Persist") < kinds.index("Broadcast")
    (vote,) = broadcasts(actions, "bft_prevote")
    assert isinstance(vote.body, BftPrevote)
    assert vote.body.block != ""


def test_restarted_replica_never_signs_a_conflicting_vote() -> None:
    r = replica(2)
    r.start(T0 + 1)
    actions = r.on_message(proposal_for(1, 0, T0 + 5), T0 + 6)
    wal = [a.record for a in actions if isinstance(a, Persist)][-1]
    (first,) = broadcasts(actions, "bft_prevote")
    # Crash; restart from the WAL; the propose timeout fires (which would mean nil) and a
    # different proposal arrives: only the original vote may go out.
    again = replica(2, wal=wal)
    out = again.start(T0 + 100)
    out += again.on_timeout(Timeout("propose", 1, 0), T0 + 2_000)
    out += again.on_message(proposal_for(1, 0, T0 + 7), T0 + 2_001)
    votes = broadcasts(out, "bft_prevote")
    assert votes
    assert all(v == first for v in votes)


def test_a_replica_without_its_record_sits_out_the_first_rounds_of_a_running_chain() -> None:
    """Its data was wiped mid-height: it may have voted there in a life it does not
    remember, so it signs nothing at its first height before GUARD_ROUNDS."""
    chain = fresh_chain()
    block, execution = chain.build(T0 + 5, PUBS[1], [])
    chain.apply(block, precommits(block_hash(block)), execution)
    assert chain.head.height == 1
    wiped = Replica(BY_PUB[PUBS[3]], chain, Pool(), Params(), wal=None, seq=1)
    out = wiped.start(T0 + 10)
    assert wiped.guard_height == 2
    out += wiped.on_message(proposal_for(2, 0, T0 + 12), T0 + 13)
    for r in range(GUARD_ROUNDS):
        out += wiped.on_timeout(Timeout("propose", 2, r), T0 + 100_000 * (r + 1))
        out += wiped.on_timeout(Timeout("prevote", 2, r), T0 + 100_000 * (r + 1) + 1)
        out += wiped.on_timeout(Timeout("precommit", 2, r), T0 + 100_000 * (r + 1) + 2)
    out += wiped.on_timeout(Timeout("propose", 2, GUARD_ROUNDS), T0 + 900_000)
    signed = [a.message for a in out if isinstance(a, Broadcast) and a.message.sender == PUBS[3]]
    assert wiped.round == GUARD_ROUNDS
    rounds = {env.body.round for env in signed}  # type: ignore[attr-defined]
    assert rounds == {GUARD_ROUNDS}  # silent before, votes again from there
    # Restarted with its record of that height, or on a new chain, a replica is not guarded.
    wal = [a.record for a in out if isinstance(a, Persist)][-1]
    assert wal.height == 2
    restarted = Replica(BY_PUB[PUBS[3]], chain, Pool(), Params(), wal=wal, seq=1)
    restarted.start(T0 + 1_000_000)
    assert restarted.guard_height is None
    new_chain = replica(2)
    new_chain.start(T0 + 1)
    assert new_chain.guard_height is None


def test_four_replicas_commit_one_block_in_memory() -> None:
    replicas = [replica(i) for i in range(4)]
    queue: list[Envelope] = []
    committed: dict[int, list[str]] = {i: [] for i in range(4)}
    now = T0 + 11_000  # heartbeat due

    def perform(i: int, actions) -> None:  # type: ignore[no-untyped-def]
        for a in actions:
            if isinstance(a, Broadcast):
                queue.append(a.message)
            elif isinstance(a, Committed):
                committed[i].append(block_hash(a.block))

    for i, r in enumerate(replicas):
        perform(i, r.start(now))
    while queue and not all(committed.values()):
        env = queue.pop(0)
        for i, r in enumerate(replicas):
            perform(i, r.on_message(env, now))
    hashes = {c[0] for c in committed.values()}
    assert len(hashes) == 1


# ------------------------------------------------------------------ purity

PURE = ["hub/consensus", "hub/application.py", "hub/ledger.py", "hub/genesis.py"]
BANNED = {
    "asyncio",
    "sqlite3",
    "sqlite_utils",
    "paho",
    "aiomqtt",
    "time",
    "socket",
    "random",
    "httpx",
    "fastapi",
    "uvicorn",
    "threading",
    "os",
    "datetime",
}


def test_cores_import_no_io() -> None:
    root = Path(__file__).resolve().parents[2]
    files = []
    for entry in PURE:
        path = root / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    assert len(files) >= 8
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in BANNED, f"{file.name} imports {name}"
