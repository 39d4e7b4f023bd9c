"""A gateway transaction lost between broker and validators does not become a replay:
4 real validators hold the later ones until the re-send fills the gap."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from tests.hub.hubnet import HubNet, client_key, wait_until
from tests.support import Broker
from wire.envelope import Envelope, sign
from wire.keys import load_key, public_hex
from wire.kinds import DeviceEntry, MeterRead, Register

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

INTERVAL_MS = 2_000
ZERO = "0" * 64


@pytest.fixture
def net(tmp_path: Path, broker: Broker) -> Iterator[HubNet]:
    network = HubNet(tmp_path, broker.url, params={"interval_s": INTERVAL_MS // 1000})
    network.start_all()
    try:
        yield network
    finally:
        network.close()


def test_a_lost_gateway_tx_is_waited_for_and_the_resend_commits_in_order(net: HubNet) -> None:
    chain = net.chain
    gw = SigningKey(b"gap-gateway".ljust(32, b"\0"))
    installer = load_key(net.configs[0].parent / "validator.key")
    wait_until("all four at height 1", lambda: min(net.heights()) >= 1, 30)
    now = int(time.time() * 1000)
    register = Register(
        gateway=public_hex(gw),
        owner=public_hex(client_key(0)),
        zone="pea/sub1/f1",
        devices=(
            DeviceEntry(name="pv", source="solar", capacity_w=10_000),
            DeviceEntry(name="m", source="grid", capacity_w=10_000),
        ),
    )
    reg = sign(installer, chain, register, now, now)
    assert net.submit(0, reg).status_code == 202
    wait_until("the registration", lambda: net.tx_status(1, reg.message_id()) == "committed", 20)

    boundary = (int(time.time() * 1000) - INTERVAL_MS) // INTERVAL_MS * INTERVAL_MS
    prev = {"pv": ZERO, "m": ZERO}

    def read(seq: int, device: str, interval: int, wh: int) -> Envelope:
        body = MeterRead(
            device=device, interval=interval, import_wh=wh, export_wh=0,
            source="solar" if device == "pv" else "grid", prev=prev[device],
        )  # fmt: skip
        env = sign(gw, chain, body, seq, int(time.time() * 1000))
        prev[device] = env.message_id()
        return env

    first = read(1, "pv", boundary - INTERVAL_MS, 100)
    assert net.submit(1, first).status_code == 202
    wait_until("the first read", lambda: net.tx_status(2, first.message_id()) == "committed", 20)

    lost = read(2, "pv", boundary, 101)  # the broker dropped it: no validator saw it
    later = read(3, "m", boundary, 500)  # another device, so it is admitted on its own
    assert net.submit(2, later).status_code == 202
    start = net.height(2)
    wait_until("two more blocks", lambda: min(net.heights()) >= start + 2, 20)
    # Relayed to every validator, held there.
    assert net.tx_status(3, later.message_id()) == "pending"
    held = [net.status(i) for i in range(4)]
    assert all(s is not None and s["mempool_held"] == 1 for s in held), held

    # The gateway re-sends its uncommitted tail in seq order.
    for env in (lost, later):
        net.submit(3, env)
    wait_until(  # on every validator: the test reads v1
        "the tail committed",
        lambda: all(net.tx_status(i, later.message_id()) == "committed" for i in range(4)),
        20,
    )
    a, b = net.tx(1, lost.message_id()), net.tx(1, later.message_id())
    assert a is not None
    assert b is not None
    assert a["ok"], a
    assert b["ok"], b
    assert (a["height"], a["position"]) < (b["height"], b["position"])

    # What a grid operator's Prometheus scrapes shows the same.
    text = net.http.get(f"{net.urls[1]}/metrics").text
    metrics = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    status = net.status(1)
    assert status is not None
    assert int(metrics["gtx_hub_height"]) >= b["height"]
    assert metrics["gtx_hub_mempool_held"] == "0"
    assert int(metrics["gtx_hub_txs_ok_total"]) == 4  # the registration and three reads
    assert metrics["gtx_hub_syncing"] == "0"
    info = f'gtx_hub_info{{chain="{chain}",node="{status["node"]}",mode="validator"}}'
    assert metrics[info] == "1"
