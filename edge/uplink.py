"""The MQTT uplink: drain the outbox to the broker in order, forever, over any outage.

One `aiomqtt` client per connection (MQTT v5, clean start), created in the documented
reconnect loop. On connect the gateway publishes a retained `status` birth message; its
last will, also retained, is `offline`. While connected, two tasks run in one TaskGroup:

- `drain` sends the oldest unacknowledged outbox rows, up to `window` in flight at once
  (published in row order, which is seq order per stream, over one TCP connection, so the
  broker receives each stream in order), waits for their PUBACKs, and acknowledges the
  batch in the outbox in one transaction. A batch ends with the first failure: acknowledged
  rows leave, the rest are re-sent after reconnecting. Re-sends carry the identical signed
  bytes.
- `listen` reads the inbox. It also notices a lost connection at once (aiomqtt fails the
  message iterator on disconnect), which cancels `drain`.

Topics (DESIGN.md): `gtx/v1/{chain}/gw/{gateway}/{telemetry|tx|status|inbox}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiomqtt

from edge.config import MqttSettings, Settings
from edge.outbox import Outbox, OutboxThread, Pending
from edge.status import Histogram
from wire.envelope import parse
from wire.errors import InvalidMessage

log = logging.getLogger("gtx.edge.uplink")

Clock = Callable[[], int]
"""Returns unix milliseconds."""

OFFLINE = b"offline"
"""Retained status payload while the gateway is away (the last will)."""
MAX_RECONNECT_DELAY_S = 30.0


def topic(chain: str, gateway: str, leaf: str) -> str:
    """`gtx/v1/{chain}/gw/{gateway}/{leaf}`."""
    return f"gtx/v1/{chain}/gw/{gateway}/{leaf}"


def client_options(m: MqttSettings, gateway: str, will_topic: str) -> dict[str, Any]:
    """Keyword arguments for `aiomqtt.Client` from the settings (pure)."""
    tls = m.tls_parameters()
    return {
        "hostname": m.host,
        "port": m.port,
        "username": m.username,
        "password": m.password,
        "identifier": m.client_id or f"gtx-{gateway[:16]}",
        "protocol": aiomqtt.ProtocolVersion.V5,
        "clean_start": True,
        "keepalive": m.keepalive_s,
        "tls_params": None if tls is None else aiomqtt.TLSParameters(**tls),
        "will": aiomqtt.Will(will_topic, OFFLINE, qos=1, retain=True),
        "timeout": m.publish_timeout_ms / 1000,
        "max_inflight_messages": m.window,
    }


class Uplink:
    """Publishes the outbox; reconnects forever; tracks what it published."""

    def __init__(
        self,
        settings: Settings,
        gateway: str,
        store: OutboxThread,
        birth: Callable[[], bytes],
        clock: Clock,
    ) -> None:
        """An uplink for `gateway` draining `store`; `birth()` gives the status payload."""
        self.settings = settings
        self.gateway = gateway
        self.store = store
        self.birth = birth
        self.clock = clock
        self.topics = {
            leaf: topic(settings.chain, gateway, leaf)
            for leaf in ("telemetry", "tx", "status", "inbox")
        }
        self.wake = asyncio.Event()
        """Set when new messages were stored."""
        self.connected = False
        self.published: dict[str, int] = {"telemetry": 0, "tx": 0}
        self.latency = Histogram()
        self.inbox_messages = 0
        self._client: aiomqtt.Client | None = None
        self._outage_logged = False

    async def run(self) -> None:
        """Connect, drain and listen; on any broker failure wait and reconnect. Never returns."""
        delay = 0.5
        m = self.settings.mqtt
        while True:
            client = aiomqtt.Client(**client_options(m, self.gateway, self.topics["status"]))
            # A full window in flight is the normal state while draining, not a warning.
            client.pending_calls_threshold = m.window + 10
            try:
                async with client:
                    self._client = client
                    self._connected()
                    delay = 0.5
                    await client.publish(self.topics["status"], self.birth(), qos=1, retain=True)
                    await client.subscribe(self.topics["inbox"], qos=1)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._drain(client), name="uplink drain")
                        tg.create_task(self._listen(client), name="uplink listen")
            except* aiomqtt.MqttError as group:
                self._disconnected(group.exceptions[0])
            finally:
                self._client = None
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY_S)

    def _connected(self) -> None:
        self.connected = True
        m = self.settings.mqtt
        if self._outage_logged:
            log.warning("broker %s:%d reachable again; draining the outbox", m.host, m.port)
        else:
            log.info("connected to broker %s:%d", m.host, m.port)
        self._outage_logged = False

    def _disconnected(self, exc: BaseException) -> None:
        m = self.settings.mqtt
        text = (
            f"broker {m.host}:{m.port} unavailable ({exc}); buffering in the outbox and "
            "retrying; check the broker, the network and [mqtt] url/credentials"
        )
        if self._outage_logged:
            log.debug("%s", text)
        else:
            log.error("%s", text)
            self._outage_logged = True

    async def _drain(self, client: aiomqtt.Client) -> None:
        window = self.settings.mqtt.window
        ob = self.store.outbox
        republish_ms = self.settings.outbox.republish_s * 1000
        while True:
            if self.settings.outbox.keep_tx_until == "committed":
                await self.store.call(ob.republish_overdue, self.clock(), republish_ms)
            batch = await self.store.call(ob.pending, window)
            if not batch:
                self.wake.clear()
                # Re-check now and then: republish deadlines pass without new readings.
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=1.0)
                except TimeoutError:
                    pass
                continue
            await self._send(client, ob, batch)

    async def _send(self, client: aiomqtt.Client, ob: Outbox, batch: list[Pending]) -> None:
        started = self.clock()
        # gather starts the publishes in list order, so paho writes them in row order.
        results = await asyncio.gather(
            *(client.publish(self.topics[p.stream], p.payload, qos=1) for p in batch),
            return_exceptions=True,
        )
        now = self.clock()
        done = [p for p, r in zip(batch, results, strict=True) if r is None]
        await self.store.call(ob.acknowledge, [p.row_id for p in done], now)
        for p in done:
            self.published[p.stream] = self.published.get(p.stream, 0) + 1
            self.latency = self.latency.observe(now - started)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            first = failures[0]
            if isinstance(first, aiomqtt.MqttError):
                raise first
            raise aiomqtt.MqttError(f"publish failed: {first!r}") from first

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.inbox_messages += 1
            try:
                env = parse(message.payload, self.settings.chain)
            except InvalidMessage as exc:
                log.warning("inbox: ignoring an invalid message: %s", exc)
                continue
            # Trades, settlements and commands are not acted on yet; commits are learned
            # from the hub's API (`edge.commits`).
            log.debug("inbox: %s seq %d from %s", env.kind, env.seq, env.sender[:16])

    async def settle(self, timeout_s: float) -> int:
        """Wait (at most `timeout_s`) until the broker has acknowledged everything queued.

        Called on a clean stop after polling has ended, so a routine restart does not re-send
        what was already in flight. Returns how many messages are still unacknowledged (they
        stay in the outbox and go out after the next start).
        """
        ob = self.store.outbox
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            left = (await self.store.call(ob.depth)).unpublished
            if left == 0 or not self.connected:
                return left
            if asyncio.get_running_loop().time() >= deadline:
                return left
            self.wake.set()
            await asyncio.sleep(0.05)

    async def goodbye(self) -> None:
        """Publish the retained `offline` status before a clean shutdown (best effort)."""
        client = self._client
        if client is None or not self.connected:
            return
        try:
            await asyncio.wait_for(
                client.publish(self.topics["status"], OFFLINE, qos=1, retain=True), 2.0
            )
        except (aiomqtt.MqttError, TimeoutError):
            log.debug("could not publish offline status on shutdown")


def birth_payload(gateway: str, zone: str, devices: list[str], now_ms: int) -> bytes:
    """The retained `status` birth message: a small JSON object."""
    obj = {"state": "online", "gateway": gateway, "zone": zone, "devices": devices, "ts": now_ms}
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
