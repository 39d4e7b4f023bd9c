"""Real `gtx hub run` processes over a real mosquitto: commits, crashes, quorum loss, resync."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.hub.hubnet import HubNet, wait_until
from tests.support import Broker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def net(tmp_path: Path, broker: Broker) -> Iterator[HubNet]:
    network = HubNet(tmp_path, broker.url)
    network.start_all()
    try:
        yield network
    finally:
        network.close()


def _same_chain(net: HubNet, nodes: list[int], upto: int) -> None:
    for height in range(1, upto + 1):
        hashes = {net.block(i, height)["hash"] for i in nodes}
        assert len(hashes) == 1, f"height {height}: validators disagree: {hashes}"


def test_four_validators_commit_identical_blocks_and_serve_the_api(
    net: HubNet, broker: Broker
) -> None:
    wait_until("all four at height 3", lambda: min(net.heights()) >= 3, 30)
    # Transactions through every validator's POST /v1/tx and one through a gateway topic.
    ids = []
    for k in range(12):
        env = net.transfer(k % 4, amount=100 + k)
        response = net.submit(k % 4, env)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])

    def all_committed() -> bool:  # on every validator: the test reads any of them
        return all(net.tx_status(i, t) == "committed" for i in range(4) for t in ids)

    wait_until("every transaction committed", all_committed, 20)
    # Then one of client 0's through a gateway topic. (Sent earlier, it could reach a
    # validator before v0's relay of client 0's lower seqs and turn them into replays.)
    gw = net.transfer(0, amount=7)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    pub.publish(f"gtx/v1/{net.chain}/gw/{gw.sender}/tx", gw.to_bytes(), qos=1).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    ids.append(gw.message_id())
    wait_until("the gateway-topic transaction committed", all_committed, 20)
    info = net.tx(2, ids[0])
    assert info is not None
    assert info["ok"] is True
    assert info["height"] >= 1
    # A bad signature and a replay are refused with a reason.
    bad = net.transfer(1).to_obj()
    bad["sig"] = "0" * 128
    response = net.http.post(f"{net.urls[0]}/v1/tx", json=bad)
    assert response.status_code == 400
    assert "signature" in response.json()["reason"]
    replay = net.submit(3, gw)
    assert replay.status_code == 202  # already committed: idempotent, same id
    assert replay.json()["id"] == gw.message_id()
    old = net.transfer(2)
    net.client_seq[2] -= 5
    stale = net.transfer(2)
    assert net.submit(0, old).status_code == 202
    wait_until("old committed", lambda: (net.tx(0, old.message_id()) or {}).get("height"), 10)
    response = net.submit(0, stale)
    assert response.status_code == 400
    assert "replayed" in response.json()["reason"]
    # Status and blocks.
    status = net.status(1)
    assert status is not None
    assert status["chain"] == net.chain
    assert sorted(status["validators"]) == sorted(net.keys)
    assert status["syncing"] is False
    top = min(net.heights())
    _same_chain(net, [0, 1, 2, 3], top)
    block = net.block(0, info["height"])
    assert ids[0] in block["txs"]
    assert len(block["commit"]["sigs"]) >= 3
    assert net.http.get(f"{net.urls[0]}/v1/blocks/999999").status_code == 404


def test_crash_restart_and_quorum_loss(net: HubNet) -> None:
    wait_until("height 3", lambda: min(net.heights()) >= 3, 30)
    net.kill(3)
    h = max(net.heights([0, 1, 2]))
    wait_until("three validators go on", lambda: min(net.heights([0, 1, 2])) >= h + 3, 20)
    net.start(3)
    wait_until(
        "the restarted validator catches up",
        lambda: net.height(3) >= max(net.heights([0, 1, 2])) - 1,
        20,
    )
    # It votes again: without v1, the chain needs v3's votes to commit.
    net.stop(1)
    h = max(net.heights([0, 2, 3]))
    wait_until("v0, v2, v3 commit (so v3 votes)", lambda: min(net.heights([0, 2, 3])) >= h + 3, 20)
    # Two of four down: no block may be committed.
    net.stop(2)
    # Let what was in flight land (a late precommit may still finish a height, and the
    # one behind syncs it): their heights must stay put for 2 s.
    seen: list[list[int]] = []

    def settled() -> bool:
        seen.append(net.heights([0, 3]))
        return len(seen) >= 10 and seen[-10:].count(seen[-1]) == 10

    wait_until("the two left to settle", settled, 30, 0.2)
    frozen = net.heights([0, 3])
    time.sleep(4.0)
    assert net.heights([0, 3]) == frozen, "committed without a quorum"
    net.start(1)
    net.start(2)
    # Quorum returns once both serve their API again (process start is not the chain's).
    wait_until("v1 and v2 up", lambda: None not in (net.status(1), net.status(2)), 30, 0.05)
    took = wait_until(
        "commits resume", lambda: min(net.heights([0, 3])) >= max(frozen) + 2, 30, 0.05
    )
    print(f"commits resumed {took:.2f}s after quorum returned")
    assert took < 15, f"commits resumed only after {took:.1f}s"
    wait_until("all four agree", lambda: min(net.heights()) >= max(frozen) + 2, 20)
    top = min(net.heights())
    _same_chain(net, [0, 1, 2, 3], top)


def test_wiped_validator_resyncs_from_genesis_and_a_follower_follows(
    net: HubNet, broker: Broker
) -> None:
    wait_until("height 6", lambda: min(net.heights()) >= 6, 30)
    follower = net.add_follower(broker.url)
    net.start(follower)
    net.stop(2)
    for path in net.configs[2].parent.glob("chain.db*"):
        path.unlink()
    assert not list(net.configs[2].parent.glob("chain.db*"))
    net.start(2)
    wait_until(
        "the wiped validator is back at the head",
        lambda: net.height(2) >= max(net.heights([0, 1, 3])) - 1,
        30,
    )
    wait_until(
        "the follower is at the head",
        lambda: net.height(follower) >= max(net.heights([0, 1, 3])) - 1,
        20,
    )
    h = min(net.heights())
    _same_chain(net, [0, 1, 2, 3, follower], h)
    log = net.log(2)
    assert "caught up to height" in log or "synced" in log
    status = net.status(follower)
    assert status is not None
    assert status["mode"] == "follower"
    assert status["node"] not in net.keys
