"""Governance: weighted votes, quorum and threshold, time-lock, execution, validator changes."""

from __future__ import annotations

from hub.state.queries import params_view, proposals_view
from tests.state.harness import MIN, T0, Net, pub
from wire.kinds import Proposal, Vote

AUTHS = ("auth", "auth2", "auth3")


def _propose(
    net: Net, who: str, action: str, target: str, value: int = 0, roles: tuple[str, ...] = ()
) -> str:
    env = net.tx(
        who,
        Proposal(
            action=action,
            target=target,
            value=value,
            roles=roles,  # type: ignore[arg-type]
            note="test",
        ),
    )
    net.ok(env)
    return env.message_id()


def test_param_change_after_approval_and_timelock() -> None:
    net = Net(authorities=AUTHS)
    pid = _propose(net, "auth", "param_change", "gate_closure_s", 120)
    net.ok(net.tx("auth", Vote(proposal=pid, yes=True)))
    assert net.q("proposals", pid).status == "open"  # 1000 of 3000: not yet certain
    net.ok(net.tx("auth2", Vote(proposal=pid, yes=True)))
    prop = net.q("proposals", pid)
    assert prop.status == "approved"
    assert prop.due_ms == net.time_ms + 60_000
    net.ok(at=prop.due_ms - 1)
    assert net.app.view().params.gate_closure_s == 60
    net.ok(at=prop.due_ms)
    assert net.app.view().params.gate_closure_s == 120
    (row,) = proposals_view(net.app.view())
    assert row["status"] == "executed"
    assert len(row["votes"]) == 2


def test_rejected_by_no_votes_and_at_deadline_without_quorum() -> None:
    net = Net(authorities=AUTHS)
    pid = _propose(net, "auth", "param_change", "tx_fee", 3)
    net.ok(net.tx("auth2", Vote(proposal=pid, yes=False)))
    assert net.q("proposals", pid).status == "open"
    net.ok(net.tx("auth3", Vote(proposal=pid, yes=False)))  # 2/3 can no longer be reached
    assert net.q("proposals", pid).status == "rejected"
    assert "closed for votes" in net.fail(net.tx("auth", Vote(proposal=pid, yes=True)))
    pid2 = _propose(net, "auth", "param_change", "tx_fee", 3)
    net.ok(net.tx("auth", Vote(proposal=pid2, yes=True)))
    net.ok(at=net.time_ms + 600_000)  # deadline: 1000 of 3000 cast < 50 % quorum
    assert net.q("proposals", pid2).status == "rejected"
    assert net.app.view().params.tx_fee == 0


def test_stakeholders_without_trades_cannot_propose() -> None:
    net = Net(authorities=AUTHS)
    reason = net.fail(
        net.tx(
            "nobody", Proposal(action="param_change", target="tx_fee", value=1, roles=(), note="")
        )
    )
    assert "no voting weight" in reason


def test_invalid_param_refused_at_proposal() -> None:
    net = Net()
    reason = net.fail(
        net.tx(
            "auth",
            Proposal(action="param_change", target="price_floor", value=10_000, roles=(), note=""),
        )
    )
    assert "price_floor" in reason


def test_validator_added_at_later_height() -> None:
    net = Net()  # one authority: its vote alone is certain
    pid = _propose(net, "auth", "validator_add", pub("val2"))
    net.ok(net.tx("auth", Vote(proposal=pid, yes=True)))
    due = net.q("proposals", pid).due_ms
    net.ok(at=due)
    executed_at = net.height
    assert pub("val2") not in net.app.validators()
    assert params_view(net.app.view())["pending_validator_changes"][0]["height"] == executed_at + 2
    net.ok()
    assert pub("val2") not in net.app.validators()
    net.ok()
    assert pub("val2") in net.app.validators()


def test_authority_add_grants_installer_role() -> None:
    net = Net()
    pid = _propose(net, "auth", "authority_add", pub("newbie"), roles=("installer",))
    net.ok(net.tx("auth", Vote(proposal=pid, yes=True)))
    net.ok(at=net.q("proposals", pid).due_ms)
    net.ok(
        net.tx(
            "newbie",
            __import__("wire.kinds", fromlist=["Register"]).Register(
                gateway=pub("g"),
                owner=pub("o"),
                zone="pea/x",
                devices=(
                    __import__("wire.kinds", fromlist=["DeviceEntry"]).DeviceEntry(
                        name="pv", source="solar", capacity_w=1000
                    ),
                ),
            ),
        )
    )
    assert net.q("gateways", pub("g")) is not None


def test_emergency_suspend_is_immediate_and_zone_cap_by_vote() -> None:
    net = Net()
    net.ok(net.register("gw", "o", "pea/x/f1", ("pv", "solar", 1000)))
    _propose(net, "auth", "emergency", pub("gw"), 1)
    assert net.q("gateways", pub("gw")).suspended
    pid = _propose(net, "auth", "emergency", "pea/x/f1", 0)
    net.ok(net.tx("auth", Vote(proposal=pid, yes=True)))
    net.ok()  # emergency: no time-lock, executes at the next block
    assert net.q("feeders", "pea/x/f1") == 0
    reinstate = _propose(net, "auth", "emergency", pub("gw"), 0)
    net.ok(net.tx("auth", Vote(proposal=reinstate, yes=True)))
    net.ok()
    assert not net.q("gateways", pub("gw")).suspended


def _settle_a_trade(net: Net) -> None:
    """Seller `s` (gateway `gs`) delivers the 100 Wh buyer `b` bought; settlement runs."""
    f = "pea/x/f1"
    net.ok(
        net.register("gs", "s", f, ("pv", "solar", 60_000)),
        net.register("gb", "b", f, ("m", "grid", 60_000)),
    )
    x = T0 + 3 * MIN
    net.ok(net.offer("gs", x, 100, 300, f), net.bid("b", x, 100, 300, f))
    net.ok(net.read("gs", "pv", x, 0, 0, "solar"), at=x)
    net.ok(net.read("gs", "pv", x + MIN, 0, 100, "solar"), at=x + MIN)
    net.ok(at=x + MIN + 30_000)


def test_stakeholder_weight_from_settled_trade() -> None:
    net = Net(params={"gov_stake_wh_per_vote": 10}, balances={"b": 10_000})
    _settle_a_trade(net)
    from hub.state.queries import account_info

    assert account_info(net.app.view(), pub("b"))["voting_weight"] == 10
    _propose(net, "b", "param_change", "tx_fee", 1)


def test_the_total_stake_weight_follows_trades_and_its_parameter() -> None:
    """`total_weight` reads a running total; it must equal a count over all accounts."""
    net = Net(params={"gov_stake_wh_per_vote": 30}, balances={"b": 10_000}, authorities=AUTHS)
    _settle_a_trade(net)

    def counted(per: int) -> int:
        return sum(a.traded_wh // per for a in net.app._store.tables["accounts"].values())

    assert net.app.view().meta().stake_weight == counted(30) > 0
    prop = _propose(net, "auth", "param_change", "gov_stake_wh_per_vote", 7)
    for who in AUTHS:
        net.ok(net.tx(who, Vote(proposal=prop, yes=True)))
    net.ok(at=net.time_ms + 3_600_000)  # past the time-lock
    assert params_view(net.app.view())["params"]["gov_stake_wh_per_vote"] == 7
    assert net.app.view().meta().stake_weight == counted(7) > counted(30)
