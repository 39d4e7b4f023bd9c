"""The hub shell without processes: local network init, config, store, mempool, API, CLI."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey

from hub.api import create_app
from hub.cli import main as hub_main
from hub.config import consensus_params, load_settings
from hub.consensus.block import EMPTY_COMMIT, block_hash, commit_signatures
from hub.consensus.chain import Chain, Head
from hub.consensus.wal import WalRecord
from hub.errors import ConfigError, MempoolFull, StoreError, TxRejected
from hub.genesis import Genesis
from hub.ledger import TransferLedger
from hub.localnet import init_network
from hub.mempool import Mempool
from hub.store import ChainStore
from tests.support import free_port
from wire.consensus import BftPrecommit, BftPrevote, Commit
from wire.envelope import Envelope, sign
from wire.errors import InvalidMessage
from wire.keys import load_key, public_hex
from wire.kinds import Telemetry, Transfer

CHAIN = "gtx-shell"
A = SigningKey(hashlib.sha256(b"a").digest())
B = SigningKey(hashlib.sha256(b"b").digest())
V = [SigningKey(hashlib.sha256(f"v{i}".encode()).digest()) for i in range(4)]


def genesis() -> Genesis:
    return Genesis(
        chain=CHAIN,
        time_ms=1_000,
        validators=tuple(sorted(public_hex(k) for k in V)),
        balances={public_hex(A): 500},
    )


def tx(key: SigningKey, seq: int, amount: int = 1) -> Envelope:
    return sign(key, CHAIN, Transfer(to=public_hex(B), amount=amount), seq, 2_000)


# ------------------------------------------------------------------ init and config


def test_init_network_writes_keys_configs_and_one_genesis(tmp_path: Path) -> None:
    fund = {public_hex(A): 123}
    net = init_network(
        tmp_path / "net", validators=4, chain="gtx-local", api_port_base=9100, fund=fund
    )
    g = (tmp_path / "net" / "genesis.json").read_bytes()
    for i in range(4):
        vdir = tmp_path / "net" / f"v{i}"
        assert (vdir / "genesis.json").read_bytes() == g
        assert stat.S_IMODE((vdir / "validator.key").stat().st_mode) == 0o600
        assert public_hex(load_key(vdir / "validator.key")) == net.keys[i]
        settings = load_settings(vdir / "hub.toml")
        assert settings.api_port == 9100 + i
        assert len(settings.peers) == 3
        assert settings.genesis.balances == fund
        assert set(settings.genesis.authorities) == set(settings.genesis.validators)
        assert settings.genesis.params["interval_s"] == 900
        assert settings.genesis.params["gate_closure_s"] == 900
    with pytest.raises(ConfigError, match="already holds a network"):
        init_network(tmp_path / "net", validators=4, chain="gtx-local")


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    net = init_network(tmp_path / "n", validators=1, chain="gtx-one")
    cfg = net.configs[0]
    cfg.write_text(cfg.read_text().replace("mqtt://127.0.0.1:1883", "http://broker"))
    with pytest.raises(ConfigError, match=r"mqtt\.url"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    cfg.write_text(cfg.read_text().replace("http://broker", "mqtt://127.0.0.1:1883"))
    assert load_settings(cfg).mempool_gap_hold_ms == 600_000
    cfg.write_text(cfg.read_text().replace("gap_hold_s = 600", "gap_hold_s = -1"))
    with pytest.raises(ConfigError, match=r"mempool\.gap_hold_s"):
        load_settings(cfg)
    bad = Genesis(chain="gtx-x", time_ms=0, validators=net.keys, params={"bft_cap_ms": 0})
    with pytest.raises(ConfigError, match=r"consensus\.cap_ms"):
        consensus_params(bad)


def test_cli_init_prints_the_network_and_status_reports_a_dead_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["hub", "init", "--validators", "4", "--chain", "gtx-cli", "--dir", str(tmp_path / "x")]
    args += ["--fund", f"{public_hex(A)}=1000", "--interval-s", "60", "--heartbeat-ms", "2000"]
    assert hub_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chain"] == "gtx-cli"
    assert len(out["validators"]) == 4
    g = Genesis.from_bytes((tmp_path / "x" / "genesis.json").read_bytes())
    assert g.params == {"interval_s": 60, "gate_closure_s": 60, "bft_heartbeat_ms": 2_000}
    assert (
        hub_main(
            [
                "hub",
                "init",
                "--validators",
                "4",
                "--chain",
                "gtx-cli",
                "--dir",
                str(tmp_path / "y"),
                "--fund",
                "nonsense",
            ]
        )
        == 2
    )
    assert "PUBKEY=SATANG" in capsys.readouterr().err
    port = free_port()
    assert hub_main(["hub", "status", "--url", f"http://127.0.0.1:{port}"]) == 1
    assert "is `gtx hub run` running?" in capsys.readouterr().err


# ------------------------------------------------------------------ store


def _chain(app: TransferLedger, g: Genesis) -> Chain:
    head = Head(0, g.hash(), g.time_ms, app.state_hash(), EMPTY_COMMIT, g.validators, ())
    return Chain(CHAIN, app, head)


def _cert(block: str, height: int) -> Commit:
    envs = [sign(k, CHAIN, BftPrecommit(height=height, round=0, block=block), 1, 5) for k in V[:3]]
    return Commit(height=height, round=0, block=block, sigs=commit_signatures(envs))


def test_store_round_trips_blocks_head_app_and_wal(tmp_path: Path) -> None:
    g = genesis()
    app = TransferLedger(g)
    store = ChainStore(tmp_path / "chain.db", g)
    assert store.head(app.state_hash()).height == 0
    chain = _chain(app, g)
    t1, t2 = tx(A, 1, 200), tx(A, 2, 999)
    block, execution = chain.build(3_000, g.validators[0], [t1, t2])
    cert = _cert(block_hash(block), 1)
    chain.apply(block, cert, execution)
    store.commit_block(block, cert, execution, chain.head, app.state_changes(execution))
    vote = sign(V[0], CHAIN, BftPrevote(height=2, round=0, block=""), 7, 5)
    store.save_wal(WalRecord(2, 0, -1, "", -1, "", 7, (vote,)))
    store.close()

    again = ChainStore(tmp_path / "chain.db", g)
    fresh = TransferLedger(g)
    head = again.head(fresh.state_hash())
    rows = again.app_rows()
    assert [k for k, _ in rows] == ["ledger"]
    fresh.restore_rows(rows)
    assert head == chain.head
    assert fresh.state_hash() == head.state_hash
    stored = again.block(1)
    assert stored is not None
    assert stored[0] == block
    assert stored[1] == cert
    ok, failed = again.tx(t1.message_id()), again.tx(t2.message_id())
    assert ok is not None
    assert ok.ok
    assert failed is not None
    assert not failed.ok
    assert "insufficient" in failed.reason
    assert [t.seq for t in again.txs_of(public_hex(A))] == [2, 1]
    wal = again.wal()
    assert wal is not None
    assert wal.signed == (vote,)
    again.close()
    other = Genesis(chain="gtx-other", time_ms=1, validators=g.validators)
    with pytest.raises(StoreError, match="another chain"):
        ChainStore(tmp_path / "chain.db", other)
    # A chain written under another state format cannot go on: an older one (no `format`
    # in meta) or a newer one.
    for written, shown in ((None, "1"), (b"3", "3")):
        db = sqlite3.connect(tmp_path / "chain.db")
        db.execute("DELETE FROM meta WHERE key = 'format'")
        if written is not None:
            db.execute("INSERT INTO meta VALUES ('format', ?)", (written,))
        db.commit()
        db.close()
        with pytest.raises(StoreError, match=rf"state format {shown}; this GridTokenX .* 2"):
            ChainStore(tmp_path / "chain.db", g)
    # A store with nothing committed yet (genesis only) is just stamped.
    fresh_dir = tmp_path / "fresh"
    ChainStore(fresh_dir / "chain.db", g).close()
    db = sqlite3.connect(fresh_dir / "chain.db")
    db.execute("DELETE FROM meta WHERE key = 'format'")
    db.commit()
    db.close()
    ChainStore(fresh_dir / "chain.db", g).close()
    db = sqlite3.connect(fresh_dir / "chain.db")
    assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == (b"2",)
    db.close()


# ------------------------------------------------------------------ mempool


def test_mempool_dedupes_orders_per_sender_and_bounds() -> None:
    app = TransferLedger(genesis())
    pool = Mempool(app, max_txs=5)
    a3, a1, a2 = tx(A, 3), tx(A, 1), tx(A, 2)
    b1 = tx(B, 1)
    for env in (a3, a1, b1, a2):
        assert pool.add(env)
    assert not pool.add(a1)  # duplicate
    assert [(e.sender == public_hex(A), e.seq) for e in pool.reap(10)] == [
        (True, 1),
        (False, 1),
        (True, 2),
        (True, 3),
    ]
    with pytest.raises(TxRejected, match="already pending"):
        pool.add(tx(A, 1, amount=2))
    telemetry = sign(
        A,
        CHAIN,
        Telemetry(
            device="m", power_w=1, voltage_dv=2300, frequency_mhz=50_000, import_wh=1, export_wh=0
        ),
        9,
        1,
    )
    with pytest.raises(TxRejected, match="not a transaction"):
        pool.add(telemetry)
    pool.add(tx(B, 2))
    with pytest.raises(MempoolFull):
        pool.add(tx(B, 3))


def test_mempool_drops_included_and_newly_replayed_txs_after_commit() -> None:
    g = genesis()
    app = TransferLedger(g)
    pool = Mempool(app)
    a1, a2 = tx(A, 1), tx(A, 2)
    pool.add(a1)
    pool.add(a2)
    chain = _chain(app, g)
    other = tx(A, 2, amount=5)  # a different seq-2 tx that another validator had
    block, execution = chain.build(3_000, g.validators[0], [a1, other])
    chain.apply(block, _cert(block_hash(block), 1), execution)
    pool.on_commit(block, execution)
    assert not pool.has_txs()
    reason = pool.rejected(a2.message_id())
    assert reason is not None
    assert "replayed" in reason


# ------------------------------------------------------------------ API


class FakeNode:
    def __init__(self) -> None:
        self.submitted: list[bytes] = []

    def status(self) -> dict[str, Any]:
        return {"chain": CHAIN, "height": 3}

    def block_json(self, height: int, *, full: bool) -> dict[str, Any] | None:
        return {"height": height, "full": full} if height == 1 else None

    def tx_json(self, tx_id: str) -> dict[str, Any] | None:
        return {"id": tx_id, "status": "pending"} if tx_id == "ab" * 32 else None

    def submit(self, data: bytes) -> str:
        if data == b"bad":
            raise InvalidMessage("bad JSON: nope")
        if data == b"replay":
            raise TxRejected("replayed: seq 1 is not above 4")
        self.submitted.append(data)
        return "cd" * 32


async def test_api_routes_and_errors() -> None:
    transport = httpx.ASGITransport(app=create_app(FakeNode()))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        assert (await client.get("/v1/status")).json() == {"chain": CHAIN, "height": 3}
        assert (await client.get("/v1/blocks/1?full=true")).json() == {"height": 1, "full": True}
        assert (await client.get("/v1/blocks/2")).status_code == 404
        assert (await client.get(f"/v1/tx/{'AB' * 32}")).json()["status"] == "pending"
        assert (await client.get(f"/v1/tx/{'00' * 32}")).status_code == 404
        ok = await client.post("/v1/tx", content=b"{}")
        assert ok.status_code == 202
        assert ok.json() == {"id": "cd" * 32, "status": "pending"}
        bad = await client.post("/v1/tx", content=b"bad")
        assert bad.status_code == 400
        assert bad.json()["reason"] == "bad JSON: nope"
        replay = await client.post("/v1/tx", content=b"replay")
        assert replay.json()["reason"].startswith("replayed")
        assert (await client.post("/v1/tx", content=b"x" * 70_000)).status_code == 413
        assert "/v1/status" in (await client.get("/openapi.json")).json()["paths"]
