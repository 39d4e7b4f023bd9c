"""The gateway's last will, and an IEC 61850 meter next to Modbus devices in one daemon.

Real parts only: mosquitto, `gtx edge run` as a process, the Modbus TCP simulator as a
process and a libiec61850 MMS server (`hw.iec61850_sim`) serving values the test pushes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hw.iec61850_sim import Iec61850MeterServer
from hw.measurement import Measurements
from tests.edge.harness import (
    CHAIN,
    Subscriber,
    assert_contiguous,
    make_key,
    outbox_next_seqs,
    outbox_rows,
    start_gateway,
    start_tcp_sim,
    stop,
    verify,
    wait_until,
    write_config,
)
from tests.support import Broker, free_port
from wire.envelope import parse

pytestmark = pytest.mark.slow

KEEPALIVE_S = 5
"""The smallest `[mqtt] keepalive_s` the config accepts (harness.write_config sets it)."""
HANG_LIMIT_S = 1.5 * KEEPALIVE_S + 5 + 1
"""When mosquitto gives up on a silent client: 1.5 x keepalive, plus up to 5 s because
mosquitto 2.0 (before 2.0.12) scans for expired keepalives every 5 s, plus 1 s because it
counts in whole seconds."""


def statuses(sub: Subscriber) -> list[bytes]:
    return [p for t, p in sub.snapshot() if t.endswith("/status")]


def retained(port: int, topic: str, timeout_s: float = 5.0) -> bytes | None:
    """What a brand-new client (clean session) gets on `topic`: the retained message."""
    got: list[bytes] = []
    arrived = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"retained-{time.monotonic_ns()}", clean_session=True
    )

    def on_connect(c: mqtt.Client, *_args: object) -> None:
        c.subscribe(topic, qos=1)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(bytes(msg.payload))
            arrived.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=5)
    client.loop_start()
    try:
        arrived.wait(timeout_s)
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0] if got else None


def test_last_will_offline_after_kill_9_and_after_a_hang(tmp_path: Path, broker: Broker) -> None:
    """kill -9: mosquitto sees the socket close and sends the will at once. SIGSTOP (a hung
    gateway, socket still open): the will follows when 1.5 x keepalive_s pass in silence.
    """
    key, gateway = make_key(tmp_path)
    sim = start_tcp_sim(tmp_path, "sdm630", "1")
    devices: list[dict[str, object]] = [
        {"name": "m1", "profile": "sdm630", "transport": sim.transport, "unit": 1, "poll_ms": 500}
    ]
    config = write_config(tmp_path, key, broker.url, devices, interval_s=60)
    status_topic = f"gtx/v1/{CHAIN}/gw/{gateway}/status"
    sub = Subscriber(broker.port, f"gtx/v1/+/gw/{gateway}/#")
    sub.start()
    gw = start_gateway(config, tmp_path)
    try:
        wait_until(lambda: statuses(sub)[-1:] != [] and statuses(sub)[-1][:1] == b"{", 20, "birth")
        birth = json.loads(statuses(sub)[-1])
        assert birth["state"] == "online"
        assert birth["gateway"] == gateway

        killed = time.monotonic()
        stop(gw, signal.SIGKILL)
        wait_until(lambda: statuses(sub)[-1] == b"offline", 1.5 * KEEPALIVE_S, "the will")
        after_kill = time.monotonic() - killed
        assert after_kill < 5.0, after_kill  # a closed socket needs no keepalive to notice
        assert retained(broker.port, status_topic) == b"offline"

        gw = start_gateway(config, tmp_path)
        wait_until(lambda: statuses(sub)[-1][:1] == b"{", 20, "the second birth")
        assert retained(broker.port, status_topic) == statuses(sub)[-1]

        gw.send_signal(signal.SIGSTOP)  # hung: no packets, but the TCP connection stays open
        hung = time.monotonic()
        time.sleep(0.5)  # what it sent before the stop arrives
        silent_since = sub.last_received  # its last packet (telemetry every 500 ms)
        assert silent_since > 0  # the subscriber heard it (birth and telemetry)
        wait_until(lambda: statuses(sub)[-1] == b"offline", HANG_LIMIT_S + 1, "the will")
        will_at = time.monotonic()
        # Not before the gateway fell silent for 1.5 x keepalive (measured from the last
        # message it sent: a loaded machine may have stalled it before the stop), and
        # within the broker's bound.
        assert will_at - silent_since >= 1.5 * KEEPALIVE_S - 0.5, will_at - silent_since
        assert will_at - hung <= HANG_LIMIT_S, will_at - hung
        assert retained(broker.port, status_topic) == b"offline"

        # Woken up, the same process notices the broker dropped it and comes back online.
        gw.send_signal(signal.SIGCONT)
        wait_until(lambda: statuses(sub)[-1][:1] == b"{", 15, "the birth after the hang")
        assert stop(gw) == 0
        wait_until(lambda: statuses(sub)[-1] == b"offline", 5, "the clean shutdown's offline")
    finally:
        if gw.poll() is None:
            gw.send_signal(signal.SIGCONT)  # a stopped process only dies of SIGKILL
        stop(gw, signal.SIGKILL)
        stop(sim.proc)
    sub.stop()
    print(f"will after kill -9: {after_kill:.2f} s, after SIGSTOP: {will_at - hung:.2f} s")


# Values the MMS server serves; every one differs from the Modbus simulator's.
IEC_FIRST = Measurements(
    power_w=-3217,
    voltage_dv=2301,
    frequency_mhz=49_987,
    import_wh=12_345_678,
    export_wh=7_654_321,
    phases={"power_l1_w": -1100, "power_l2_w": -1017, "power_l3_w": -1100},
)
IEC_LATER = Measurements(
    power_w=1500,
    voltage_dv=2288,
    frequency_mhz=50_012,
    import_wh=12_345_900,
    export_wh=7_654_321,
    phases={"power_l1_w": 500, "power_l2_w": 500, "power_l3_w": 500},
)


def headline(m: Measurements) -> tuple[int, ...]:
    f = m.as_body_fields()
    return tuple(f[k] for k in ("power_w", "voltage_dv", "frequency_mhz", "import_wh", "export_wh"))


def iec_server() -> Iec61850MeterServer:
    for _ in range(5):
        server = Iec61850MeterServer("127.0.0.1", free_port(), "LD0")
        try:
            server.start()
        except OSError:
            continue
        return server
    raise RuntimeError("no free port for the IEC 61850 server after 5 tries")


def test_iec61850_meter_and_modbus_in_one_daemon(tmp_path: Path, broker: Broker) -> None:
    """An MMS meter's readings arrive signed and chained beside Modbus ones; a Modbus unit
    that answers garbage is reported as FrameError, and both other devices stay ok.
    """
    key, gateway = make_key(tmp_path)
    sim = start_tcp_sim(tmp_path, "sdm630", "1-4", faults=("4:garbage",))
    server = iec_server()
    sub = Subscriber(broker.port, f"gtx/v1/+/gw/{gateway}/#")
    sub.start()
    gw: subprocess.Popen[bytes] | None = None
    try:
        server.update(IEC_FIRST, time.time_ns() // 1_000_000)
        devices: list[dict[str, object]] = [
            {
                "name": "feeder",
                "profile": "sdm630",
                "transport": f"iec61850://127.0.0.1:{server.port}/{server.domain}",
                "poll_ms": 500,
            },
            {"name": "m1", "profile": "sdm630", "transport": sim.transport, "unit": 1},
            {
                "name": "m4",
                "profile": "sdm630",
                "transport": sim.transport,
                "unit": 4,
                "timeout_ms": 300,
            },
        ]
        config = write_config(tmp_path, key, broker.url, devices, interval_s=1)
        gw = start_gateway(config, tmp_path)

        def feeder(kind: str) -> list[tuple[int, ...]]:
            out = []
            for t, p in sub.snapshot():
                if t.endswith("/status"):
                    continue
                env = parse(p, CHAIN)
                if env.kind != kind or env.body.device != "feeder":  # type: ignore[attr-defined]
                    continue
                names: tuple[str, ...] = ("import_wh", "export_wh")
                if kind == "telemetry":
                    names = ("power_w", "voltage_dv", "frequency_mhz", *names)
                out.append(tuple(int(getattr(env.body, n)) for n in names))
            return out

        wait_until(lambda: len(feeder("meter_read")) >= 2, 20, "feeder meter_reads")
        assert feeder("telemetry")[0] == headline(IEC_FIRST)
        assert feeder("meter_read")[0] == headline(IEC_FIRST)[3:]
        server.update(IEC_LATER, time.time_ns() // 1_000_000)
        wait_until(lambda: headline(IEC_LATER) in feeder("telemetry"), 10, "the new values")
        wait_until(lambda: headline(IEC_LATER)[3:] in feeder("meter_read"), 10, "a new read")

        def device_states() -> dict[str, dict[str, Any]]:
            st = json.loads((tmp_path / "state" / "status.json").read_text())
            return {d["name"]: d for d in st["devices"]}

        # status.json is rewritten every 2 s; wait for one written after these polls.
        wait_until(
            lambda: (
                device_states()["feeder"]["state"] == "ok" and device_states()["m4"]["errors"] >= 3
            ),
            10,
            "a status with the feeder ok and m4 failing",
        )
        states = device_states()
        assert stop(gw) == 0
    finally:
        if gw is not None:
            stop(gw, signal.SIGKILL)
        stop(sim.proc)
        server.stop()
    next_seq = outbox_next_seqs(tmp_path / "state")
    wait_until(
        lambda: all(
            max(verify(sub.snapshot(), gateway).seqs.get(s, [0])) == next_seq[s] - 1
            for s in ("telemetry", "tx")
        ),
        10,
        "the last seq of each stream",
    )
    sub.stop()
    v = verify(sub.snapshot(), gateway)  # every message verifies; meter_reads chain
    assert outbox_rows(tmp_path / "state") == 0
    for stream in ("telemetry", "tx"):
        assert_contiguous(v.seqs[stream], last=next_seq[stream] - 1)
    assert set(v.devices) == {"feeder", "m1"}, v.devices
    # Only ever the two values pushed, in order: nothing invented, nothing from Modbus.
    seen = feeder("telemetry")
    assert set(seen) == {headline(IEC_FIRST), headline(IEC_LATER)}
    switch = seen.index(headline(IEC_LATER))
    assert all(x == headline(IEC_LATER) for x in seen[switch:])
    # The good devices kept answering (a stray failed poll on a loaded machine is no fault).
    for name in ("feeder", "m1"):
        assert states[name]["state"] != "degraded", states[name]
        assert states[name]["errors"] * 20 <= states[name]["polls"], states[name]
    assert states["m4"]["last_ok_ms"] is None
    # A garbled Modbus TCP answer is a FrameError, never "cannot connect" (edge.modbus);
    # a starved simulator may also answer after the timeout.
    kinds = set(states["m4"]["error_kinds"])
    assert "FrameError" in kinds, states["m4"]
    assert kinds <= {"FrameError", "DeviceTimeout"}, states["m4"]
    assert "garbled answer" in str(states["m4"]["last_error"])
