"""End to end with real processes: simulators -> `gtx edge run` -> mosquitto -> subscriber."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.edge.harness import (
    CHAIN,
    PY,
    Subscriber,
    assert_contiguous,
    make_key,
    outbox_next_seqs,
    outbox_rows,
    sent_through,
    start_gateway,
    start_rtu_sim,
    start_tcp_sim,
    status_pid,
    stop,
    verify,
    wait_until,
    write_config,
)
from tests.support import Broker, free_port
from wire.envelope import parse

pytestmark = pytest.mark.slow


def status(config: Path) -> tuple[int, dict[str, object]]:
    out = subprocess.run(
        [PY, "-m", "gridtokenx.cli", "edge", "status", "--config", str(config), "--json"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return out.returncode, json.loads(out.stdout) if out.stdout else {}


def test_sims_to_subscriber_all_verify_and_seq_contiguous(tmp_path: Path, broker: Broker) -> None:
    key, gateway = make_key(tmp_path)
    sim = start_tcp_sim(tmp_path, "sdm630", "1-2")
    rtu = start_rtu_sim(tmp_path, tmp_path / "ttyGTX0", "sdm120", "1", baud=19200)
    metrics_port = free_port()
    config = write_config(
        tmp_path,
        key,
        broker.url,
        [
            {
                "name": "meter1",
                "profile": "sdm630",
                "transport": sim.transport,
                "unit": 1,
                "poll_ms": 500,
            },
            {
                "name": "pv1",
                "profile": "sdm630",
                "transport": sim.transport,
                "unit": 2,
                "poll_ms": 500,
                "source": "solar",
            },
            {
                "name": "house",
                "profile": "sdm120",
                "transport": f"rtu://{tmp_path / 'ttyGTX0'}?baud=19200&parity=N",
                "unit": 1,
                "poll_ms": 1000,
            },
        ],
        interval_s=2,
        extra=f"[metrics]\nport = {metrics_port}",
    )
    sub = Subscriber(broker.port, f"gtx/v1/+/gw/{gateway}/#")
    sub.start()
    gw = start_gateway(config, tmp_path)
    try:
        # Two interval boundaries at least, so every device has chained meter_reads.
        wait_until(
            lambda: sum(1 for t, _ in sub.snapshot() if t.endswith("/tx")) >= 9, 30, "meter_reads"
        )

        # One poll that failed its tries shows "failing" until the next: wait for all ok.
        def states() -> dict[str, str]:
            code, st = status(config)
            assert code == 0, st
            return {d["name"]: d["state"] for d in st["devices"]}  # type: ignore[index, union-attr]

        wait_until(
            lambda: states() == {"meter1": "ok", "pv1": "ok", "house": "ok"}, 20, "devices ok"
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'gtx_edge_polls_total{device="meter1"}' in text
        assert "gtx_edge_broker_connected 1" in text
        assert stop(gw) == 0
    finally:
        stop(gw, signal.SIGKILL)
        stop(sim.proc)
        stop(rtu)
    wait_until(lambda: len(sub.snapshot()) >= 5, 5, "messages")
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
    v = verify(sub.snapshot(), gateway)
    assert outbox_rows(tmp_path / "state") == 0
    for stream in ("telemetry", "tx"):
        assert_contiguous(v.seqs[stream], last=next_seq[stream] - 1)
    assert v.devices.keys() == {"meter1", "pv1", "house"}
    assert v.kinds["meter_read"] >= 6
    assert v.status[0].startswith(b"{")
    assert v.status[-1] == b"offline"


def test_bad_devices_never_stop_others_nor_publish(tmp_path: Path, broker: Broker) -> None:
    key, gateway = make_key(tmp_path)
    sim = start_tcp_sim(tmp_path, "sdm630", "1-4", faults=("2:timeout", "3:exception", "4:garbage"))
    devices: list[dict[str, object]] = [
        {
            "name": f"m{u}",
            "profile": "sdm630",
            "transport": sim.transport,
            "unit": u,
            "poll_ms": 250,
            "timeout_ms": 300,
        }
        for u in range(1, 5)
    ]
    config = write_config(tmp_path, key, broker.url, devices, interval_s=60)
    sub = Subscriber(broker.port, f"gtx/v1/+/gw/{gateway}/#")
    sub.start()
    gw = start_gateway(config, tmp_path)

    def all_bad_degraded() -> bool:
        code, st = status(config)
        states = {d["name"]: d["state"] for d in st.get("devices", [])}  # type: ignore[union-attr]
        return code == 0 and all(states.get(n) == "degraded" for n in ("m2", "m3", "m4"))

    try:
        wait_until(all_bad_degraded, 30, "the bad devices to be degraded")
        t0 = time.time_ns() // 1_000_000
        time.sleep(4)
        t1 = time.time_ns() // 1_000_000
        _, st = status(config)
        assert stop(gw) == 0
    finally:
        stop(gw, signal.SIGKILL)
        stop(sim.proc)
    states = {d["name"]: d for d in st["devices"]}  # type: ignore[index, union-attr]
    assert states["m1"]["state"] != "degraded", states["m1"]  # one failed poll may show
    for name in ("m2", "m3", "m4"):
        assert states[name]["state"] == "degraded", states[name]
        assert states[name]["last_ok_ms"] is None
    assert "DeviceTimeout" in states["m2"]["error_kinds"]
    assert "ModbusException" in states["m3"]["error_kinds"]
    # pymodbus drops a TCP connection on a garbled frame; the garbage is still what is
    # reported, and the bus reconnects before the next device's poll.
    # (A starved simulator may also answer after the 300 ms timeout.)
    kinds = set(states["m4"]["error_kinds"])
    assert "FrameError" in kinds, states["m4"]
    assert kinds <= {"FrameError", "DeviceTimeout"}, states["m4"]
    time.sleep(0.5)
    sub.stop()
    v = verify(sub.snapshot(), gateway)
    assert set(v.devices) == {"m1"}, v.devices
    # The healthy meter keeps its pace (4 Hz asked; at least half of it on a loaded
    # machine) while three others on its bus misbehave: they never hold the bus for long.
    m1 = [parse(p, CHAIN).ts_ms for t, p in sub.snapshot() if t.endswith("/telemetry")]
    in_window = [ts for ts in m1 if t0 <= ts < t1]
    assert len(in_window) >= 2 * (t1 - t0) // 1000, (len(in_window), t1 - t0)


def test_config_error_exits_2_naming_the_key(tmp_path: Path) -> None:
    key, _ = make_key(tmp_path)
    config = write_config(
        tmp_path,
        key,
        "mqtt://127.0.0.1:1",
        [{"name": "m1", "profile": "sdm630", "transport": "tcp://127.0.0.1:502", "poll_ms": 5}],
    )
    out = subprocess.run(
        [sys.executable, "-m", "gridtokenx.cli", "edge", "run", "--config", str(config)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert b"'poll_ms'" in out.stderr
    assert b"100 to 3600000" in out.stderr


def test_broker_outages_and_kill_9_lose_nothing(tmp_path: Path, broker: Broker) -> None:
    """Stop the broker 3 times and kill -9 the gateway 4 times (twice while it drains)."""
    key, gateway = make_key(tmp_path)
    sim = start_tcp_sim(tmp_path, "sdm630", "1-2")
    devices: list[dict[str, object]] = [
        {
            "name": f"m{u}",
            "profile": "sdm630",
            "transport": sim.transport,
            "unit": u,
            "poll_ms": 100,
        }
        for u in (1, 2)
    ]
    config = write_config(tmp_path, key, broker.url, devices, interval_s=2)
    state = tmp_path / "state"
    sub = Subscriber(broker.port, f"gtx/v1/+/gw/{gateway}/#")
    sub.start()
    gw = start_gateway(config, tmp_path)
    kills = 0
    try:
        wait_until(lambda: len(sub.snapshot()) > 10, 30, "first messages")
        for round_ in range(3):
            broker.stop()
            time.sleep(2.0)  # the gateway keeps polling and buffering
            broker.start()
            # kill -9 while it drains the backlog (rounds 0, 2) or in steady state (round 1)
            time.sleep(0.15 if round_ != 1 else 1.5)
            stop(gw, signal.SIGKILL)
            kills += 1
            gw = start_gateway(config, tmp_path)
            time.sleep(1.5)
        time.sleep(0.3)
        stop(gw, signal.SIGKILL)  # once more, mid-publish at full rate
        kills += 1
        gw = start_gateway(config, tmp_path)
        # A graceful stop last, once the new process has sent what the killed one left
        # (its status file shows its pid: the SIGTERM handler is in place).
        backlog = outbox_next_seqs(state)
        wait_until(lambda: sent_through(sub, gateway, backlog), 60, "the backlog sent again")
        wait_until(lambda: status_pid(state) == gw.pid, 30, "the restarted gateway's status")
        assert stop(gw) == 0
    finally:
        stop(gw, signal.SIGKILL)
        stop(sim.proc)
    assert kills == 4
    next_seq = outbox_next_seqs(state)

    def complete() -> bool:
        seqs = verify(sub.snapshot(), gateway).seqs
        return all(seqs.get(s) and seqs[s][-1] == next_seq[s] - 1 for s in ("telemetry", "tx"))

    wait_until(complete, 15, "every seq up to the last one stored")
    sub.stop()
    v = verify(sub.snapshot(), gateway)
    assert outbox_rows(state) == 0
    for stream in ("telemetry", "tx"):
        assert_contiguous(v.seqs[stream], last=next_seq[stream] - 1)
    assert v.kinds["meter_read"] >= 2 * 4, v.kinds
    print("fault run:", v.kinds, "duplicates", v.duplicates, {s: len(x) for s, x in v.seqs.items()})
