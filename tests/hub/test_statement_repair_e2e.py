"""Statement signatures converge after a validator missed their gossip.

v3 is stopped and its broker session discarded (as when a broker restarts without
persistence or a session expires), so the signatures v0..v2 gossip while an interval settles
never reach it. Restarted, it syncs the settling block, signs it, and must end with all four
signatures (fetched from its peers' `GET /v1/statements/{interval}`), and so must the others.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from hub.state.settlement import verify_statement
from tests.hub.hubnet import HubNet, client_key, wait_until
from tests.support import Broker
from wire.envelope import sign
from wire.keys import load_key, public_hex
from wire.kinds import Bid, DeviceEntry, Register

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

INTERVAL_S = 2
ZONE = "pea/sub1/f1"
PARAMS = {"interval_s": INTERVAL_S, "gate_closure_s": 1, "grace_s": 1}


@pytest.fixture
def net(tmp_path: Path, broker: Broker) -> Iterator[HubNet]:
    network = HubNet(tmp_path, broker.url, params=PARAMS)
    network.start_all()
    try:
        yield network
    finally:
        network.close()


def _statement(net: HubNet, i: int, interval: int) -> dict[str, Any] | None:
    response = net.http.get(f"{net.urls[i]}/v1/statements/{interval}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def _committed(net: HubNet, tx_id: str) -> bool:
    info = net.tx(0, tx_id) or {}
    assert info.get("status") != "rejected", info.get("reason")
    return info.get("status") == "committed"


def _drop_session(broker: Broker, client_id: str) -> None:
    """Connect with v3's client id and a clean session: the broker forgets its queue."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    time.sleep(0.3)
    client.loop_stop()
    client.disconnect()


def test_restarted_validator_gets_every_statement_signature(net: HubNet, broker: Broker) -> None:
    chain = net.chain
    owner = client_key(0)  # funded by the network
    gw = client_key(3)
    authority = load_key(net.configs[0].parent / "validator.key")
    wait_until("height 2", lambda: min(net.heights()) >= 2, 20)
    reg = sign(
        authority,
        chain,
        Register(
            gateway=public_hex(gw),
            owner=public_hex(owner),
            zone=ZONE,
            devices=(DeviceEntry(name="m1", source="grid", capacity_w=1_000_000),),
        ),
        1,
        int(time.time() * 1000),
    )
    assert net.submit(0, reg).status_code == 202
    wait_until("register committed", lambda: _committed(net, reg.message_id()), 10)

    # v3 goes away and the broker forgets what it would have queued for it.
    net.stop(3)
    _drop_session(broker, f"gtx-hub-{chain}-{net.keys[3][:16]}"[:64])

    # A bid opens an interval; it settles while v3 is away, and v0..v2 sign it.
    step = INTERVAL_S * 1000
    # Gate closure is 1 s before x; with v3 away one proposer in four is missing and its
    # rounds wait for a timeout: leave the bid several seconds to commit.
    x = (int(time.time() * 1000) + 8_000) // step * step + step
    bid = sign(
        owner,
        chain,
        Bid(interval=x, energy_wh=100, price=250, sources=("solar",), zone=ZONE, expires=x),
        1,
        int(time.time() * 1000),
    )
    assert net.submit(1, bid).status_code == 202, net.submit(1, bid).text
    wait_until("bid committed", lambda: _committed(net, bid.message_id()), 10)
    wait_until(
        "3 signatures on v0..v2",
        lambda: all((_statement(net, i, x) or {}).get("signed") == 3 for i in range(3)),
        25,
    )

    net.start(3)
    took = wait_until(
        "all 4 signatures on every validator",
        lambda: all((_statement(net, i, x) or {}).get("signed") == 4 for i in range(4)),
        40,
    )
    print(f"statement of {x} complete on all 4 validators {took:.1f}s after v3 restarted")
    statement = _statement(net, 3, x)
    assert statement is not None
    assert statement["certified"] is True
    assert statement["conflicting"] == []
    assert {s["validator"] for s in statement["signatures"]} == set(net.keys)
    for s in statement["signatures"]:
        assert verify_statement(s["validator"], chain, x, statement["hash"], s["sig"])
