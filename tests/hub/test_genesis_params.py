"""Genesis parameters: one naming (the state machine's), checked at `gtx hub init` and at start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hub.cli import main as hub_main
from hub.config import load_settings
from hub.errors import ConfigError
from hub.genesis import Genesis
from hub.localnet import init_network
from hub.state.app import EnergyApp


def _init(tmp_path: Path) -> list[str]:
    return ["hub", "init", "--validators", "4", "--chain", "gtx-p", "--dir", str(tmp_path / "net")]


def test_init_flags_reach_the_state_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*_init(tmp_path), "--interval-s", "6", "--gate-closure-s", "2", "--grace-s", "1"]
    args += ["--param", "price_floor=150", "--param", "feeder_capacity_wh:pea/sub-1=5000"]
    args += ["--param", "bft_propose_ms=700", "--heartbeat-ms", "400"]
    assert hub_main(args) == 0
    capsys.readouterr()
    settings = load_settings(tmp_path / "net" / "v2" / "hub.toml")
    assert settings.genesis.params == {
        "interval_s": 6,
        "gate_closure_s": 2,
        "grace_s": 1,
        "price_floor": 150,
        "feeder_capacity_wh:pea/sub-1": 5000,
        "bft_propose_ms": 700,
        "bft_heartbeat_ms": 400,
    }
    st = EnergyApp(settings.genesis).view()
    assert (st.params.interval_s, st.params.gate_closure_s, st.params.grace_s) == (6, 2, 1)
    assert st.params.price_floor == 150
    assert st.get("feeders", "pea/sub-1") == 5000


def test_gate_closure_defaults_to_one_interval_and_grace_to_the_machine_default(
    tmp_path: Path,
) -> None:
    net = init_network(tmp_path / "n", validators=1, chain="gtx-p", interval_s=60)
    assert net.genesis.params == {"interval_s": 60, "gate_closure_s": 60}
    st = EnergyApp(net.genesis).view()
    assert (st.params.interval_s, st.params.gate_closure_s, st.params.grace_s) == (60, 60, 300)


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (
            "interval_ms=6000",
            r"params\.interval_ms: unknown chain parameter \(did you mean interval_s",
        ),
        ("price_flor=100", r"params\.price_flor: unknown .*did you mean price_floor"),
        ("bft_propose=100", r"params\.bft_propose: unknown consensus parameter; known: bft_cap_ms"),
        ("gov_quorum_bps=20000", r"params\.gov_quorum_bps: must be in 0\.\.10000, got 20000"),
        ("price_floor=9999", r"price_floor 9999 is above a price ceiling"),
        ("bft_cap_ms=0", r"consensus\.cap_ms: must be a positive integer"),
        ("price_floor", r"expected NAME=INTEGER, got 'price_floor'"),
        ("price_floor=1.5", r"expected NAME=INTEGER"),
    ],
)
def test_init_refuses_unknown_or_out_of_range_params_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], param: str, expected: str
) -> None:
    assert hub_main([*_init(tmp_path), "--param", param]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gtx hub init: --param: ")
    assert re.search(expected, err), err
    assert not (tmp_path / "net").exists()


def test_init_refuses_a_bad_gate_closure_or_grace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hub_main([*_init(tmp_path), "--gate-closure-s", "-1"]) == 2
    assert "params.gate_closure_s: must be in 0..604800, got -1" in capsys.readouterr().err
    assert hub_main([*_init(tmp_path), "--grace-s", "99999999"]) == 2
    assert "params.grace_s: must be in" in capsys.readouterr().err


def _tamper(cfg: Path, **params: int) -> None:
    path = cfg.parent / "genesis.json"
    g = Genesis.from_bytes(path.read_bytes())
    path.write_bytes(
        Genesis(g.chain, g.time_ms, g.validators, g.authorities, g.balances, params).to_bytes()
    )


def test_node_start_refuses_a_genesis_with_an_unknown_or_out_of_range_param(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = init_network(tmp_path / "n", validators=1, chain="gtx-p", interval_s=6)
    cfg = net.configs[0]
    _tamper(cfg, interval_ms=6000)  # what older `gtx hub init` wrote
    with pytest.raises(ConfigError, match=r"params\.interval_ms: unknown chain parameter"):
        load_settings(cfg)
    assert hub_main(["hub", "run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert (
        "gtx hub run: params.interval_ms: unknown chain parameter (did you mean interval_s" in err
    )
    _tamper(cfg, grace_s=-5)
    assert hub_main(["hub", "run", "--config", str(cfg)]) == 2
    assert "params.grace_s: must be in 0..604800, got -5" in capsys.readouterr().err
    # The state machine refuses on its own too (a node built with another config loader).
    with pytest.raises(ConfigError, match=r"params\.nonsense: unknown chain parameter"):
        EnergyApp(Genesis("gtx-p", 0, net.genesis.validators, params={"nonsense": 1}))
