"""The block header's energy summary: real totals of the intervals a block settles."""

from __future__ import annotations

from hub.application import BlockContext
from hub.state.queries import statement_of
from tests.state.harness import CHAIN, MIN, Net, replay
from tests.state.test_flow import F1, F2, X, setup
from wire.consensus import EnergySummary


def _execute(net: Net, at: int) -> EnergySummary:
    """Execute an empty block at `at` without committing; its energy summary."""
    ctx = BlockContext(
        CHAIN, net.height + 1, at, net.genesis.validators[0], net.app.validators(), ()
    )
    return net.app.execute(ctx, []).energy


def test_summary_is_empty_until_a_block_settles_then_carries_the_statement() -> None:
    net = setup()
    net.ok(net.offer("gw-s", X, 150, 300, F1, expires=X), net.bid("buyer", X, 100, 400, F2))
    net.ok(
        net.read("gw-s", "pv", X, 0, 1_000, "solar"),
        net.read("gw-b", "mains", X, 5_000, 0, "grid"),
        at=X + 1,
    )
    net.ok(
        net.read("gw-s", "pv", X + MIN, 0, 1_080, "solar"),
        net.read("gw-b", "mains", X + MIN, 5_090, 0, "grid"),
        at=X + MIN + 1,
    )
    assert _execute(net, X + MIN + 2) == EnergySummary()  # grace (30 s) not over yet
    settling = _execute(net, X + MIN + 30_000)
    # Executing twice gives the same summary (determinism), and execute changed nothing.
    assert _execute(net, X + MIN + 30_000) == settling
    net.ok(at=X + MIN + 30_000)
    statement = statement_of(net.app.view(), X)
    assert statement is not None
    assert settling == EnergySummary(
        settled=1,
        interval=X,
        trades=1,
        traded_wh=100,
        delivered_wh=80,
        shortfall_wh=20,
        statement=statement["hash"],
    )
    assert _execute(net, X + MIN + 31_000) == EnergySummary()  # settled once only
    # An independent machine fed the same blocks computes the same summary.
    other = replay(net.genesis, net.blocks[:-1])
    ctx, txs = net.blocks[-1]
    assert other.execute(ctx, txs).energy == settling


def test_several_intervals_settled_by_one_block_sum_up_with_a_combined_hash() -> None:
    net = setup()
    y = X + MIN
    net.ok(
        net.offer("gw-s", X, 50, 300, F1),
        net.bid("buyer", X, 50, 400, F2),
        net.offer("gw-s", y, 40, 300, F1),
        net.bid("buyer", y, 40, 400, F2),
    )
    summary = _execute(net, y + MIN + 60_000)  # both grace periods over, no reads: all short
    assert (summary.settled, summary.interval, summary.trades) == (2, y, 2)
    assert (summary.traded_wh, summary.delivered_wh, summary.shortfall_wh) == (90, 0, 90)
    assert len(summary.statement) == 64
    net.ok(at=y + MIN + 60_000)
    hashes = {statement_of(net.app.view(), i)["hash"] for i in (X, y)}  # type: ignore[index]
    assert summary.statement not in hashes


def _settled_with_four_validators() -> Net:
    """One 50 Wh trade of interval X, settled on a chain of validators v1..v4."""
    net = Net(balances={"buyer": 10_000}, validators=("v1", "v2", "v3", "v4"))
    net.ok(
        net.register("gw-s", "seller", F1, ("pv", "solar", 10_000)),
        net.register("gw-b", "buyer", F2, ("mains", "grid", 20_000)),
    )
    net.ok(net.offer("gw-s", X, 50, 300, F1), net.bid("buyer", X, 50, 400, F2))
    net.ok(at=X + MIN + 30_000)
    return net


def test_statement_certificate_counts_only_validators_signing_this_hash() -> None:
    from hub.state.queries import statement_certificate
    from hub.state.settlement import sign_statement
    from tests.state.harness import key, pub

    net = _settled_with_four_validators()
    st = net.app.view()
    statement = statement_of(st, X)
    assert statement is not None
    digest = statement["hash"]

    def sig(name: str, h: str = digest) -> tuple[str, str, int, str]:
        return (pub(name), h, net.height, sign_statement(key(name), CHAIN, X, h))

    two = statement_certificate(statement, [sig("v1"), sig("v2"), sig("outsider")])
    assert (two["signed"], two["quorum"], two["certified"]) == (2, 3, False)
    other = "ab" * 32
    three = statement_certificate(statement, [sig("v1"), sig("v2"), sig("v3"), sig("v4", other)])
    assert (three["signed"], three["certified"]) == (3, True)
    assert three["conflicting"] == [pub("v4")]
    assert {s["validator"] for s in three["signatures"]} == {pub("v1"), pub("v2"), pub("v3")}


def test_a_statement_is_certified_by_its_own_validator_set_after_the_set_changes() -> None:
    from hub.state.queries import statement_certificate
    from hub.state.settlement import sign_statement
    from tests.state.harness import key, pub
    from wire.kinds import Proposal, Vote

    net = _settled_with_four_validators()
    statement = statement_of(net.app.view(), X)
    assert statement is not None
    four = sorted(pub(v) for v in ("v1", "v2", "v3", "v4"))
    assert statement["validators"] == four
    # Governance adds a fifth validator: 3 of 5 is no quorum of the new set, yet the
    # statement was made by the four and 3 of them certify it, now as then.
    add = net.tx(
        "auth", Proposal(action="validator_add", target=pub("v5"), value=0, roles=(), note="")
    )
    net.ok(add)
    net.ok(net.tx("auth", Vote(proposal=add.message_id(), yes=True)))
    net.ok(at=net.q("proposals", add.message_id()).due_ms)
    net.ok()
    net.ok()
    assert len(net.app.validators()) == 5
    digest = statement["hash"]
    sigs = [
        (pub(v), digest, net.height, sign_statement(key(v), CHAIN, X, digest))
        for v in ("v1", "v2", "v3", "v5")
    ]
    cert = statement_certificate(statement, sigs)
    assert (cert["signed"], cert["quorum"], cert["certified"]) == (3, 3, True)
    assert pub("v5") not in {s["validator"] for s in cert["signatures"]}
