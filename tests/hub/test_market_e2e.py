"""The energy market end to end over 4 real validators (processes) and a real mosquitto.

Register two gateways (an authority key of the local network, through `gtx tx --wait`),
post signed meter reads as the gateways do (POST /v1/tx and the gateway MQTT topic), an
offer by the seller's owner and a bid by a funded buyer, see the trade, the settlement after
the interval and its grace period, the certificate and a claim; the interval's statement
signed by 2f+1 validators and its totals in the block header; a governance price floor change
voted through that then refuses a low offer. Everything is read from different validators,
which must agree, and the 4 state hashes at a common height must be identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from hub.state.settlement import verify_statement
from tests.hub.hubnet import ROOT, HubNet, client_key, wait_until
from tests.support import Broker
from wire.envelope import Envelope, parse, sign
from wire.keys import public_hex, save_key
from wire.kinds import MeterRead

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

INTERVAL_S = 6
GRACE_S = 5  # room for the interval's last reads to commit before settlement
SELLER_ZONE = "pea/sub1/f1"
BUYER_ZONE = "pea/sub1/f2"
ZERO = "0" * 64
PARAMS = {
    "interval_s": INTERVAL_S,
    "gate_closure_s": 1,
    "grace_s": GRACE_S,
    "price_floor": 200,
    "price_ceiling_peak": 600,
    "price_ceiling_offpeak": 600,
    "gov_voting_s": 60,
    "gov_timelock_s": 0,
    "gov_stake_wh_per_vote": 0,
}


@pytest.fixture
def net(tmp_path: Path, broker: Broker) -> Iterator[HubNet]:
    network = HubNet(tmp_path, broker.url, params=PARAMS)
    network.start_all()
    try:
        yield network
    finally:
        network.close()


class Gateway:
    """A gateway's signing side: its key, its tx seq and each device's read chain."""

    def __init__(self, name: str) -> None:
        self.key = SigningKey(name.encode().ljust(32, b"\0"))
        self.pub = public_hex(self.key)
        self.seq = 0
        self.prev = ZERO

    def read(self, chain: str, interval: int, imp: int, exp: int, source: str) -> Envelope:
        self.seq += 1
        body = MeterRead(
            device="m1",
            interval=interval,
            import_wh=imp,
            export_wh=exp,
            source=source,  # type: ignore[arg-type]
            prev=self.prev,
        )
        env = sign(self.key, chain, body, self.seq, int(time.time() * 1000))
        self.prev = env.message_id()
        return env


def _gtx(*args: str) -> subprocess.Popen[bytes]:
    """Start a real `gtx tx ... --wait` process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "gridtokenx.cli", "tx", *args, "--wait"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)


def _done(proc: subprocess.Popen[bytes], code: int = 0) -> dict[str, Any]:
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == code, (out, err)
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _get(net: HubNet, i: int, path: str, **params: Any) -> Any:
    response = net.http.get(f"{net.urls[i]}{path}", params=params)
    response.raise_for_status()
    return response.json()


def _mqtt_publish(broker: Broker, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _retained(broker: Broker, topic: str, timeout_s: float = 5.0) -> list[bytes]:
    """Messages a fresh subscriber gets on `topic` (retained ones arrive at once)."""
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, m: got.append(m.payload)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    deadline = time.monotonic() + timeout_s
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    client.loop_stop()
    client.disconnect()
    return got


def _committed(net: HubNet, node: int, env: Envelope) -> bool:
    info = net.tx(node, env.message_id()) or {}
    if info.get("status") == "rejected":
        raise AssertionError(f"{env.kind} rejected: {info.get('reason')}")
    return info.get("status") == "committed"


def _sleep_until(ms: int) -> None:
    time.sleep(max(0.0, ms / 1000 - time.time()))


def test_market_round_trip_over_four_validators(
    net: HubNet, broker: Broker, tmp_path: Path
) -> None:
    started = time.monotonic()
    chain = net.chain
    seller_owner, buyer = client_key(0), client_key(1)  # funded by the network (--fund)
    keys = tmp_path / "keys"
    keys.mkdir()
    for name, k in (("seller", seller_owner), ("buyer", buyer)):
        save_key(k, keys / f"{name}.key")
    vkey = [str(c.parent / "validator.key") for c in net.configs[:4]]
    gw_s, gw_b = Gateway("gw-seller"), Gateway("gw-buyer")
    wait_until("all four at height 2", lambda: min(net.heights()) >= 2, 30)

    # Register the gateways with validator keys (the local network's installers).
    regs = [
        _gtx("register", "--key", vkey[0], "--hub", net.urls[0], "--gateway", gw_s.pub,
             "--owner", public_hex(seller_owner), "--zone", SELLER_ZONE,
             "--device", "m1:solar:1000000"),
        _gtx("register", "--key", vkey[1], "--hub", net.urls[1], "--gateway", gw_b.pub,
             "--owner", public_hex(buyer), "--zone", BUYER_ZONE, "--device", "m1:grid:1000000"),
    ]  # fmt: skip
    for proc in regs:
        assert _done(proc)["status"] == "committed"
    wait_until(  # committed on v0 (--wait); every validator, before reading v2
        "the registrations on every validator",
        lambda: all(
            net.http.get(f"{net.urls[i]}/v1/devices/{gw.pub}").status_code == 200
            for i in range(4)
            for gw in (gw_s, gw_b)
        ),
        10,
    )
    device = _get(net, 2, f"/v1/devices/{gw_s.pub}")
    assert device["owner"] == public_hex(seller_owner)
    assert device["zone"] == SELLER_ZONE

    # The next interval that leaves time to trade before its gate closes (1 s before):
    # two `gtx tx --wait` processes one after the other, some seconds each on a loaded
    # machine. The offer must rest before the bid arrives (the trade is at the resting
    # order's price), so the bid is sent only once the offer is committed.
    step = INTERVAL_S * 1000
    x = (int(time.time() * 1000) + 20_000) // step * step + step
    offer = _done(
        _gtx("offer", "--key", str(keys / "seller.key"), "--hub", net.urls[2],
             "--interval", str(x), "--energy-wh", "1000", "--price", "300",
             "--zone", SELLER_ZONE, "--source", "solar")
    )  # fmt: skip
    bid = _done(
        _gtx("bid", "--key", str(keys / "buyer.key"), "--hub", net.urls[3],
             "--interval", str(x), "--energy-wh", "600", "--price", "400",
             "--zone", BUYER_ZONE, "--sources", "solar,wind")
    )  # fmt: skip
    assert offer["status"] == bid["status"] == "committed"
    assert offer["height"] < bid["height"]

    # Governance while the interval runs: raise the price floor to 350 satang/kWh.
    proposal = _done(
        _gtx("propose", "--key", vkey[0], "--hub", net.urls[0], "--action", "param_change",
             "--target", "price_floor", "--value", "350", "--note", "new buyback rate")
    )  # fmt: skip
    votes = [
        _gtx("vote", "--key", vkey[i], "--hub", net.urls[i], "--proposal", proposal["id"], "--yes")
        for i in range(3)
    ]
    for proc in votes:
        assert _done(proc)["status"] == "committed"

    # Meter reads at both boundaries of the interval, as the gateways sign them: the
    # seller's by POST /v1/tx, the buyer's on its MQTT topic. 500 of 600 Wh delivered.
    _sleep_until(x + 300)
    first = [gw_s.read(chain, x, 0, 10_000, "solar"), gw_b.read(chain, x, 50_000, 0, "grid")]
    assert net.submit(0, first[0]).status_code == 202
    _mqtt_publish(broker, f"gtx/v1/{chain}/gw/{gw_b.pub}/tx", first[1].to_bytes())
    _sleep_until(x + step + 300)
    second = [
        gw_s.read(chain, x + step, 0, 10_500, "solar"),
        gw_b.read(chain, x + step, 50_600, 0, "grid"),
    ]
    assert net.submit(1, second[0]).status_code == 202
    _mqtt_publish(broker, f"gtx/v1/{chain}/gw/{gw_b.pub}/tx", second[1].to_bytes())
    wait_until(
        "the meter reads committed",
        lambda: all(_committed(net, 2, env) for env in first + second),
        GRACE_S + 5,
    )

    # The trade (the resting offer's price), identical on every validator.
    (trade,) = _get(net, 1, "/v1/market/trades", interval=x)
    assert (trade["energy_wh"], trade["price"]) == (600, 300)
    assert trade["seller"] == public_hex(seller_owner)
    assert trade["buyer"] == public_hex(buyer)

    # Gateways learn the reference price over MQTT: signed by a validator, retained on the
    # zone's grid topic, equal to what the API says, for both sides' zones and their parent.
    validators = set(net.keys)  # public keys of the validators
    for zone in (SELLER_ZONE, BUYER_ZONE, "pea/sub1", "pea"):
        api_price = _get(net, 2, "/v1/market/price", interval=x, zone=zone)
        (payload,) = _retained(broker, f"gtx/v1/{chain}/grid/{zone}")
        env = parse(payload, chain)
        assert env.kind == "zone_price"
        assert env.sender in validators
        body = env.body.to_json()
        assert (body["zone"], body["interval"]) == (zone, x)
        assert (body["price"], body["energy_wh"]) == (api_price["price"], 600) == (300, 600)

    # Settlement after the interval closes and the grace period passes.
    wait_until(
        "the interval settled on every validator",
        lambda: all(_get(net, i, "/v1/settlements", interval=x) for i in range(4)),
        GRACE_S + 10,
    )
    (settled,) = _get(net, 3, "/v1/settlements", interval=x)
    assert (settled["delivered_wh"], settled["shortfall_wh"]) == (500, 100)
    assert settled["seller_received"] == 500 * 300 // 1000

    # The certificate of the renewable delivery, claimed once through the CLI.
    (cert,) = _get(net, 0, "/v1/certificates", owner=public_hex(buyer))
    assert (cert["energy_wh"], cert["source"], cert["zone"]) == (500, "solar", SELLER_ZONE)
    claim = _done(
        _gtx("claim", "--key", str(keys / "buyer.key"), "--hub", net.urls[1],
             "--cert", cert["id"], "--energy-wh", "200", "--beneficiary", "school")
    )  # fmt: skip
    assert claim["status"] == "committed"
    again = _done(
        _gtx("claim", "--key", str(keys / "buyer.key"), "--hub", net.urls[2],
             "--cert", cert["id"], "--energy-wh", "301"),
        code=1,
    )  # fmt: skip
    assert "300 Wh unclaimed" in again["reason"]

    # The statement: signed by 2f+1 (here all 4) validators over one hash, in the header.
    def signed_by_all() -> bool:
        return all(_get(net, i, f"/v1/statements/{x}")["signed"] == 4 for i in range(4))

    wait_until("4 statement signatures on every validator", signed_by_all, 10)
    statements = [_get(net, i, f"/v1/statements/{x}") for i in range(4)]
    statement = statements[2]
    assert statement["certified"] is True
    assert statement["quorum"] == 3
    assert statement["conflicting"] == []
    assert {s["validator"] for s in statement["signatures"]} == set(net.keys)
    for s in statement["signatures"]:
        assert verify_statement(s["validator"], chain, x, statement["hash"], s["sig"])
    assert not verify_statement(net.keys[0], chain, x + step, statement["hash"], s["sig"])
    assert all(st == statement for st in statements)
    energy = net.block(0, statement["height"])["header"]["energy"]
    assert energy == {
        "settled": 1,
        "interval": x,
        "trades": 1,
        "traded_wh": 600,
        "delivered_wh": 500,
        "shortfall_wh": 100,
        "statement": statement["hash"],
    }

    # Governance took effect: the floor is 350, and an offer at 300 is now refused.
    params = _get(net, 3, "/v1/params")["params"]
    assert params["price_floor"] == 350
    (prop,) = _get(net, 2, "/v1/proposals")
    assert prop["id"] == proposal["id"]
    assert len(prop["votes"]) == 3
    low = _gtx("offer", "--key", str(keys / "seller.key"), "--hub", net.urls[0],
               "--interval", str(x + 10 * step), "--energy-wh", "100", "--price", "300",
               "--zone", SELLER_ZONE, "--source", "solar")  # fmt: skip
    refused = _done(low, code=1)
    assert "floor" in refused.get("reason", ""), refused

    # The committed seq of a gateway, for it to resume from (GET /v1/accounts/{id}).
    account = _get(net, 1, f"/v1/accounts/{gw_b.pub}")
    assert account["seqs"] == {"tx": gw_b.seq}
    assert account["seq"] == gw_b.seq

    # Every validator answers the same, and the state hashes agree at a common height.
    paths: list[tuple[str, dict[str, Any]]] = [
        (f"/v1/accounts/{public_hex(buyer)}", {}),
        (f"/v1/accounts/{public_hex(seller_owner)}", {}),
        ("/v1/market/trades", {"interval": x}),
        ("/v1/settlements", {"interval": x}),
        ("/v1/certificates", {}),
        ("/v1/proposals", {}),
        (f"/v1/devices/{gw_s.pub}", {}),
    ]
    for path, query in paths:
        answers = [_get(net, i, path, **query) for i in range(4)]
        assert all(a == answers[0] for a in answers), path
    common = min(net.heights())
    hashes = {net.block(i, common)["header"]["state_hash"] for i in range(4)}
    assert len(hashes) == 1, hashes
    print(f"market round trip took {time.monotonic() - started:.1f}s (to height {common})")
