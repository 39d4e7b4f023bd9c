"""The broker role's ACL and password file, enforced by a real mosquitto over TLS.

Gateways log in as their public key (the broker role's accounts), validators by name. "Not
delivered" is shown without sleeping: after the forbidden messages the same connection sends
an allowed marker, and mosquitto forwards one connection's messages in order, so once the
marker has arrived anything forbidden would have arrived before it.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.deploy.conftest import Deployment

CHAIN = "gtx-local"
TIMEOUT_S = 5.0


def gw_topic(gateway: str, leaf: str) -> str:
    return f"gtx/v1/{CHAIN}/gw/{gateway}/{leaf}"


class Client:
    """A paho MQTT v5 client over TLS that collects what it receives."""

    def __init__(
        self, port: int, ca: Path, username: str | None, password: str | None, will: str = ""
    ) -> None:
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.tls_set(ca_certs=str(ca))
        if username is not None:
            self.client.username_pw_set(username, password)
        if will:
            self.client.will_set(will, b"offline", qos=1, retain=True)
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack = threading.Event()
        self.reason: ReasonCode | None = None
        self.suback: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.reason = reason
        self.connack.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put((message.topic, message.payload))

    def _on_subscribe(
        self, _c: Any, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        self.suback.put(reasons)

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK reason code."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connack.wait(TIMEOUT_S), "no CONNACK"
        assert self.reason is not None
        return self.reason

    def subscribe(self, topic: str) -> ReasonCode:
        """Subscribe at QoS 1 and return the SUBACK reason code."""
        self.client.subscribe(topic, qos=1)
        return self.suback.get(timeout=TIMEOUT_S)[0]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT_S)

    def received_until(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Every message up to and including the one with `payload`."""
        seen: list[tuple[str, bytes]] = []
        while True:
            try:
                item = self.messages.get(timeout=TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"{payload!r} never arrived; got {seen}")
            seen.append(item)
            if item[1] == payload:
                return seen

    def close(self) -> None:
        self.client.disconnect()  # first, so the network thread ends at once
        self.client.loop_stop()


@pytest.fixture
def clients(broker: int, deployment: Deployment):  # type: ignore[no-untyped-def]
    """Factory of connected clients by account: 'a', 'b' (gateways) or a validator name."""
    made: list[Client] = []
    gw_a, gw_b = deployment.gateways

    def connect(who: str) -> Client:
        if who in ("a", "b"):
            host = gw_a if who == "a" else gw_b
            key = deployment.pubkey(host)
            # Like the gateway's uplink: its last will is the retained "offline" status.
            client = Client(
                broker, deployment.ca, key, deployment.password(f"gateways/{host}"),
                will=gw_topic(key, "status"),
            )  # fmt: skip
        else:
            client = Client(broker, deployment.ca, who, deployment.password(f"validators/{who}"))
        made.append(client)
        assert client.connect().value == 0
        return client

    yield connect
    for client in made:
        client.close()


def marker() -> bytes:
    return f"marker-{uuid.uuid4().hex}".encode()


def test_gateway_publishes_its_own_topics_and_a_validator_receives_them(
    clients: Any, deployment: Deployment
) -> None:
    a_key = deployment.pubkey(deployment.gateways[0])
    validator = clients("hub-egat")
    assert validator.subscribe(f"gtx/v1/{CHAIN}/#").value == 1
    gateway = clients("a")
    sent = {leaf: f"{leaf}-{uuid.uuid4().hex}".encode() for leaf in ("telemetry", "tx", "status")}
    for leaf, payload in sent.items():
        gateway.publish(gw_topic(a_key, leaf), payload, retain=leaf == "status")

    got = validator.received_until(sent["status"])
    assert {(gw_topic(a_key, leaf), p) for leaf, p in sent.items()} <= set(got)


def test_gateway_cannot_publish_as_another_gateway(clients: Any, deployment: Deployment) -> None:
    a_key, b_key = (deployment.pubkey(h) for h in deployment.gateways)
    validator = clients("hub-mea")
    validator.subscribe(f"gtx/v1/{CHAIN}/#")
    gateway = clients("a")
    forged = f"forged-{uuid.uuid4().hex}".encode()
    for leaf in ("telemetry", "tx", "status", "inbox"):
        gateway.publish(gw_topic(b_key, leaf), forged)
    gateway.publish(f"gtx/v1/{CHAIN}/blocks", forged)
    gateway.publish(f"gtx/v1/{CHAIN}/consensus/{a_key}", forged)
    end = marker()
    gateway.publish(gw_topic(a_key, "telemetry"), end)

    got = validator.received_until(end)
    assert [m for m in got if m[1] == forged] == []


def test_gateway_reads_only_its_own_inbox(clients: Any, deployment: Deployment) -> None:
    a_key, b_key = (deployment.pubkey(h) for h in deployment.gateways)
    gateway_a, gateway_b = clients("a"), clients("b")
    gateway_a.subscribe(gw_topic(b_key, "inbox"))
    gateway_a.subscribe(f"gtx/v1/{CHAIN}/#")
    gateway_a.subscribe(gw_topic(a_key, "inbox"))
    gateway_b.subscribe(gw_topic(b_key, "inbox"))
    validator = clients("hub-pea")
    for_b, for_all, price, for_a = (
        f"{n}-{uuid.uuid4().hex}".encode() for n in ("b", "all", "price", "a")
    )
    validator.publish(gw_topic(b_key, "inbox"), for_b)
    validator.publish(f"gtx/v1/{CHAIN}/blocks", for_all)
    validator.publish(f"gtx/v1/{CHAIN}/grid/pea/ayutthaya", price)
    validator.publish(gw_topic(a_key, "inbox"), for_a)

    assert (gw_topic(b_key, "inbox"), for_b) in gateway_b.received_until(for_b)
    got_a = gateway_a.received_until(for_a)
    # Its own inbox and the zone prices every gateway may read; not B's inbox, not blocks.
    assert {payload for _, payload in got_a} == {price, for_a}, got_a


@pytest.mark.parametrize("case", ["wrong password", "another gateway's password", "anonymous"])
def test_bad_credentials_are_refused(broker: int, deployment: Deployment, case: str) -> None:
    a_host, b_host = deployment.gateways
    username: str | None = deployment.pubkey(a_host)
    password: str | None = deployment.password(f"gateways/{a_host}")
    if case == "wrong password":
        password = "x" + (password or "")
    elif case == "another gateway's password":
        password = deployment.password(f"gateways/{b_host}")
    else:
        username = password = None
    client = Client(broker, deployment.ca, username, password)
    try:
        reason = client.connect()
    finally:
        client.close()
    assert reason.is_failure
    assert reason.getName() in ("Bad user name or password", "Not authorized")


def test_rendered_gateway_runs_against_the_broker(
    broker: int, deployment: Deployment, clients: Any, tmp_path: Path
) -> None:
    """`gtx edge run` with the role's edge.toml, key and password logs in and announces itself.

    The example's devices (serial ports, a LAN inverter) are not here: the gateway still
    connects, and its retained birth message names it and its devices.
    """
    host = deployment.gateways[1]
    key = deployment.pubkey(host)
    validator = clients("hub-erc")
    validator.subscribe(gw_topic(key, "status"))
    log = tmp_path / "gtx-edge.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gtx"), "edge", "run", "--log-level", "warning",
             "--config", str(deployment.config(host))],
            stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "NOTIFY_SOCKET": ""},
        )  # fmt: skip
    try:
        birth = b""
        while b'"online"' not in birth:
            try:
                topic, birth = validator.messages.get(timeout=15)
            except queue.Empty:
                pytest.fail(f"no 'online' status from the gateway: {log.read_text()}")
        assert topic == gw_topic(key, "status")
        assert f'"gateway":"{key}"'.encode() in birth.replace(b" ", b"")
        assert b"inverter" in birth
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
        # A clean stop leaves the retained "offline" status (allowed by the ACL as well).
        assert validator.received_until(b"offline")[-1] == (gw_topic(key, "status"), b"offline")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
