"""MQTT transport of a hub node (aiomqtt): topics, a reconnecting client, an ordered outbox.

Subscribes to every validator's consensus topic, the blocks topic and all gateways' tx
topics, with a persistent session so QoS 1 messages wait in the broker while the node is
down. Publishes from an in-memory queue, in order; what is queued while the broker is away
goes out after reconnecting. `[mqtt]` of hub.toml gives TLS (`mqtts://`, `ca`, `cert`, `key`)
and the broker account (`username`, `password`/`password_file`); a broker that refuses the
login is logged once at ERROR with its reason and retried every second, like an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import aiomqtt

from hub.config import MqttSettings

__all__ = ["Topics", "Transport"]

log = logging.getLogger("gtx.hub.mqtt")

IN_FLIGHT = 200
"""QoS 1 publishes awaiting their PUBACK at once."""
OUTBOX_LIMIT = 100_000
"""Messages kept while the broker is unreachable; the oldest are dropped beyond this."""


class Topics:
    """The MQTT topics of one chain (DESIGN.md, "MQTT topics")."""

    def __init__(self, chain: str) -> None:
        """Topics for `chain`."""
        self.root = f"gtx/v1/{chain}"
        self.blocks = f"{self.root}/blocks"
        self.consensus_all = f"{self.root}/consensus/+"
        self.gateway_txs = f"{self.root}/gw/+/tx"

    def grid(self, zone: str) -> str:
        """Where a zone's status and reference prices are published (retained)."""
        return f"{self.root}/grid/{zone}"

    def consensus(self, validator: str) -> str:
        """Where `validator` publishes its consensus messages."""
        return f"{self.root}/consensus/{validator}"

    def subscriptions(self) -> list[str]:
        """What a hub node subscribes to."""
        return [self.consensus_all, self.blocks, self.gateway_txs]


def client_options(m: MqttSettings, client_id: str) -> dict[str, Any]:
    """Keyword arguments for `aiomqtt.Client` from the settings (pure)."""
    tls = m.tls_parameters()
    return {
        "hostname": m.host,
        "port": m.port,
        "username": m.username,
        "password": m.password,
        "identifier": client_id,
        "clean_session": False,
        "keepalive": m.keepalive_s,
        "tls_params": None if tls is None else aiomqtt.TLSParameters(**tls),
        "max_queued_incoming_messages": 0,
        # Consensus is many small messages: Nagle would hold each up to ~40 ms.
        "socket_options": [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    }


class Transport:
    """One broker connection; `on_message(topic, payload)` is called on the event loop."""

    def __init__(
        self,
        url: MqttSettings,
        client_id: str,
        topics: Topics,
        on_message: Callable[[str, bytes], None],
        config_name: str = "hub.toml",
    ) -> None:
        """Prepare a connection (started by `run`); `config_name` is named in errors."""
        self.url = url
        self.client_id = client_id
        self.topics = topics
        self.on_message = on_message
        self.config_name = config_name
        self.connected = False
        self._outbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        self._dropped = 0

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Queue a QoS 1 publish (retained if asked); never blocks."""
        if self._outbox.qsize() >= OUTBOX_LIMIT:
            self._outbox.get_nowait()
            self._dropped += 1
        self._outbox.put_nowait((topic, payload, retain))

    async def _pump(self, client: aiomqtt.Client) -> None:
        # paho queues a publish synchronously when the call starts, so tasks started in
        # order leave in order; awaiting each PUBACK before the next would cost a round trip
        # per message.
        window = asyncio.Semaphore(IN_FLIGHT)
        pending: set[asyncio.Task[None]] = set()

        async def one(topic: str, payload: bytes, retain: bool) -> None:
            try:
                await client.publish(topic, payload, qos=1, retain=retain, timeout=30)
            except aiomqtt.MqttError as exc:
                log.debug("publish to %s failed: %s", topic, exc)
            finally:
                window.release()

        try:
            while True:
                topic, payload, retain = await self._outbox.get()
                await window.acquire()
                task = asyncio.create_task(one(topic, payload, retain))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(0)  # let the task hand the message to paho now
        finally:
            for task in pending:
                task.cancel()

    async def run(self) -> None:
        """Connect, subscribe, receive and publish until cancelled; reconnect on failure."""
        failing = False
        while True:
            try:
                async with aiomqtt.Client(**client_options(self.url, self.client_id)) as client:
                    await client.subscribe([(t, 1) for t in self.topics.subscriptions()])
                    self.connected = True
                    if failing:
                        log.warning("broker %s is back", self.url.url)
                    failing = False
                    pump = asyncio.create_task(self._pump(client))
                    try:
                        async for message in client.messages:
                            payload = message.payload
                            if isinstance(payload, bytes | bytearray):
                                self.on_message(message.topic.value, bytes(payload))
                    finally:
                        pump.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await pump
            except aiomqtt.MqttError as exc:
                self.connected = False
                if not failing:
                    log.error(  # noqa: TRY400 - the message says it all; no traceback wanted
                        "broker %s unavailable (%s); retrying every second; check the broker, "
                        "the network and [mqtt] url, username, password/password_file, ca, "
                        "cert, key in %s",
                        self.url.url,
                        exc,
                        self.config_name,
                    )
                else:
                    log.debug("broker still unreachable: %s", exc)
                failing = True
                await asyncio.sleep(1.0)
