"""`EnergyApp` as an `Application`: isolation of execute, commit, snapshot/restore, genesis."""

from __future__ import annotations

import pytest

from hub.application import Application, BlockContext
from hub.errors import ConfigError, HubError
from hub.genesis import Genesis
from hub.state.app import EnergyApp
from tests.state.harness import CHAIN, MIN, T0, Net, pub
from wire.kinds import Transfer

F1 = "pea/a/f1"
X = T0 + 3 * MIN


def _busy_net() -> Net:
    net = Net(balances={"b": 50_000})
    net.ok(
        net.register("gs", "s", F1, ("pv", "solar", 60_000)),
        net.register("gb", "b", F1, ("m", "grid", 60_000)),
    )
    net.ok(
        net.offer("gs", X, 300, 300, F1),
        net.bid("b", X, 100, 350, F1),
        net.bid("b", X + MIN, 100, 350, F1),
    )
    return net


def test_is_an_application() -> None:
    app: Application = EnergyApp(Genesis(chain=CHAIN, time_ms=T0, validators=(pub("v"),)))
    assert len(app.state_hash()) == 64


def test_execute_does_not_change_committed_state() -> None:
    net = _busy_net()
    before, snap = net.app.state_hash(), net.app.snapshot()
    ctx = BlockContext(
        CHAIN, net.height + 1, net.time_ms + 1, pub("val1"), net.app.validators(), ()
    )
    ex1 = net.app.execute(ctx, [net.bid("b", X, 200, 400, F1)])
    ex2 = net.app.execute(ctx, [net.tx("b", Transfer(to=pub("s"), amount=5))])
    assert ex1.state_hash != ex2.state_hash
    assert net.app.state_hash() == before
    assert net.app.snapshot() == snap
    net.app.commit(ex2)
    with pytest.raises(HubError, match="stale"):
        net.app.commit(ex1)


def test_snapshot_restore_round_trip_keeps_hash_and_book() -> None:
    net = _busy_net()
    other = EnergyApp(net.genesis)
    other.restore(net.app.snapshot())
    assert other.state_hash() == net.app.state_hash()
    assert other.snapshot() == net.app.snapshot()
    # the rebuilt book matches the same way
    ctx = BlockContext(
        CHAIN, net.height + 1, net.time_ms + 1, pub("val1"), net.app.validators(), ()
    )
    tx = net.bid("b", X, 150, 400, F1)
    assert other.execute(ctx, [tx]).state_hash == net.app.execute(ctx, [tx]).state_hash


def test_restore_refuses_garbage() -> None:
    app = EnergyApp(Genesis(chain=CHAIN, time_ms=T0, validators=(pub("v"),)))
    with pytest.raises(HubError, match="not canonical"):
        app.restore(b"{nope")
    with pytest.raises(HubError, match="not an EnergyApp snapshot"):
        app.restore(b'{"v":2}')


def test_genesis_params_checked() -> None:
    with pytest.raises(ConfigError, match="price_floor"):
        EnergyApp(
            Genesis(chain=CHAIN, time_ms=T0, validators=(pub("v"),), params={"price_floor": 1_000})
        )
    app = EnergyApp(
        Genesis(
            chain=CHAIN,
            time_ms=T0,
            validators=(pub("v"),),
            params={"gate_closure_s": 300, "feeder_capacity_wh:pea/x": 5, "bft_propose_ms": 1000},
        )
    )
    st = app.view()
    assert st.params.gate_closure_s == 300
    assert st.get("feeders", "pea/x") == 5


def test_non_transactions_and_wrong_chain_fail() -> None:
    from nacl.signing import SigningKey

    from wire.envelope import sign
    from wire.kinds import Telemetry

    net = Net()
    tel = sign(
        SigningKey(b"\x01" * 32),
        CHAIN,
        Telemetry(device="m", power_w=0, voltage_dv=0, frequency_mhz=0, import_wh=0, export_wh=0),
        1,
        T0,
    )
    assert "not a transaction" in net.fail(tel)
    other = sign(SigningKey(b"\x01" * 32), "gtx-other", Transfer(to=pub("x"), amount=1), 1, T0)
    assert "chain" in net.fail(other)
