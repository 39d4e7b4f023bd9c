"""`gtx edge run` and ThingsBoard IoT Gateway side by side on one simulated SDM630 (Modbus TCP).

Both gateways poll the same simulator process (`python -m hw.sim --device sdm630`, 13 float32
input registers in 3 reads) every 100 ms and publish to the same local mosquitto; a
subscriber counts what each delivered. After a warm-up, over one window: readings/s
delivered to the broker, CPU seconds (utime+stime of the gateway process, from /proc) and
peak RSS (VmHWM).

ThingsBoard IoT Gateway must be installed in its own venv (not the project's):

    python3 -m venv /tmp/tbgw-venv && /tmp/tbgw-venv/bin/pip install thingsboard-gateway
    /tmp/tbgw-venv/bin/pip install pymodbus==3.9.2 pyserial pyserial-asyncio  # its connector pins
    .venv/bin/python bench/edge_vs_thingsboard.py [--tb /tmp/tbgw-venv] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw.profile import load_profile
from tests.edge.harness import (
    Subscriber,
    make_key,
    start_gateway,
    start_tcp_sim,
    stop,
    write_config,
)
from tests.support import make_broker
from wire.envelope import parse

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tb_config(tmp: Path, tb_venv: Path, broker_port: int, sim_port: int, poll_ms: int) -> Path:
    pkg = next((tb_venv / "lib").glob("python3*/site-packages/thingsboard_gateway/config"))
    conf = tmp / "tb-config"
    conf.mkdir()
    shutil.copy(pkg / "logs.json", conf / "logs.json")
    logs = json.loads((conf / "logs.json").read_text())
    for handler in logs.get("handlers", {}).values():
        if "filename" in handler:
            handler["filename"] = str(tmp / "tb-logs" / Path(handler["filename"]).name)
    (tmp / "tb-logs").mkdir()
    (conf / "logs.json").write_text(json.dumps(logs))
    main = json.loads((pkg / "tb_gateway.json").read_text())
    main["thingsboard"].update(
        {
            "host": "127.0.0.1",
            "port": broker_port,
            "remoteConfiguration": False,
            "remoteShell": False,
            "security": {"type": "accessToken", "accessToken": "bench"},
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "reportStrategy": {"type": "ON_RECEIVED"},
        }
    )
    main["storage"] = {"type": "memory", "read_records_count": 100, "max_records_count": 100000}
    main["connectors"] = [{"type": "modbus", "name": "sdm630", "configuration": "modbus.json"}]
    (conf / "tb_gateway.json").write_text(json.dumps(main, indent=1))
    profile = load_profile("sdm630")
    series = [
        {
            "tag": p.name,
            "type": "32float",
            "functionCode": 4,
            "objectsCount": 2,
            "address": p.address,
        }
        for p in profile.measured_points()
    ]
    slave = {
        "host": "127.0.0.1",
        "port": sim_port,
        "type": "tcp",
        "method": "socket",
        "unitId": 1,
        "deviceName": "sdm630",
        "deviceType": "meter",
        "timeout": 35,
        "byteOrder": "BIG",
        "wordOrder": "BIG",
        "retries": 1,
        "retryOnEmpty": True,
        "retryOnInvalid": True,
        "pollPeriod": poll_ms,
        "connectAttemptTimeMs": 500,
        "connectAttemptCount": 5,
        "waitAfterFailedAttemptsMs": 1000,
        "sendDataOnlyOnChange": False,
        "attributes": [],
        "timeseries": series,
        "attributeUpdates": [],
        "rpc": [],
    }
    (conf / "modbus.json").write_text(json.dumps({"master": {"slaves": [slave]}}, indent=1))
    return conf


SESSION_LIMITS = {
    "rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
    "maxInflightMessages": 100,
    "maxPayloadSize": 65536,
}
"""What a ThingsBoard server answers to `getSessionLimits` (here: no rate limits)."""


def start_session_limits_responder(port: int) -> object:
    """Answer the gateway's one server RPC, which it waits for before sending telemetry.

    ThingsBoard IoT Gateway 3.8 asks the platform for its session limits on connect and
    sends no telemetry until it gets them; mosquitto is not ThingsBoard, so we answer.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tb-server-stub")

    def on_connect(c: mqtt.Client, *_a: object) -> None:
        c.subscribe("v1/devices/me/rpc/request/+", qos=1)

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        request_id = msg.topic.rsplit("/", 1)[1]
        body = json.loads(msg.payload or b"{}")
        if body.get("method") == "getSessionLimits":
            c.publish(f"v1/devices/me/rpc/response/{request_id}", json.dumps(SESSION_LIMITS), qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def tb_readings(messages: list[tuple[str, bytes]], t0: int, t1: int) -> int:
    n = 0
    for topic, payload in messages:
        if topic != "v1/gateway/telemetry":
            continue
        try:
            obj = json.loads(payload)
        except ValueError:
            continue
        for entries in obj.values():
            for e in entries if isinstance(entries, list) else [entries]:
                ts = e.get("ts", 0) if isinstance(e, dict) else 0
                if t0 <= ts < t1:
                    n += 1
    return n


def gtx_readings(messages: list[tuple[str, bytes]], t0: int, t1: int) -> int:
    return sum(
        1
        for topic, payload in messages
        if topic.startswith("gtx/")
        and topic.endswith("/telemetry")
        and t0 <= parse(payload).ts_ms < t1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tb", type=Path, default=Path("/tmp/tbgw-venv"))
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--poll-ms", type=int, default=100)
    args = parser.parse_args()
    tb_exe = args.tb / "bin" / "thingsboard-gateway"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = make_broker(tmp)
        broker.start()
        sim = start_tcp_sim(tmp, "sdm630", "1")
        key, _ = make_key(tmp)
        config = write_config(
            tmp,
            key,
            broker.url,
            [
                {
                    "name": "sdm630",
                    "profile": "sdm630",
                    "transport": sim.transport,
                    "unit": 1,
                    "poll_ms": args.poll_ms,
                }
            ],
            interval_s=900,
        )
        sub = Subscriber(broker.port, "#")
        sub.start()
        stub = start_session_limits_responder(broker.port)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            procs["gtx edge run"] = start_gateway(config, tmp)
            if tb_exe.exists():
                conf = tb_config(tmp, args.tb, broker.port, sim.port, args.poll_ms)
                env = dict(os.environ, TB_GW_CONFIG_DIR=str(conf) + "/")
                with (tmp / "tb.log").open("wb") as log:
                    procs["ThingsBoard IoT Gateway"] = subprocess.Popen(
                        [str(tb_exe)], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT
                    )
            else:
                print(f"ThingsBoard IoT Gateway not found at {tb_exe}; measuring gtx only")
            time.sleep(12)  # warm-up: imports, connects, first polls
            for name, p in procs.items():
                if p.poll() is not None:
                    log_name = "gateway.log" if name.startswith("gtx") else "tb.log"
                    print(f"{name} exited early:\n{(tmp / log_name).read_text()[-3000:]}")
            cpu0 = {n: cpu_s(p.pid) for n, p in procs.items() if p.poll() is None}
            t0 = time.time_ns() // 1_000_000
            time.sleep(args.seconds)
            t1 = time.time_ns() // 1_000_000
            cpu1 = {n: cpu_s(p.pid) for n, p in procs.items() if p.poll() is None}
            rss = {n: peak_rss_mib(p.pid) for n, p in procs.items() if p.poll() is None}
            time.sleep(2)  # let the last PUBACKs land
            msgs = sub.snapshot()
        finally:
            for p in procs.values():
                stop(p, signal.SIGTERM, timeout=15)
            stop(sim.proc)
            sub.stop()
            stub.loop_stop()  # type: ignore[attr-defined]
            broker.stop()
            topics = sorted({t for t, _ in msgs if not t.startswith("gtx/")})
            if "ThingsBoard IoT Gateway" in procs and not tb_readings(msgs, t0, t1):
                print("ThingsBoard delivered nothing; topics seen:", topics)
                for f in [*sorted((tmp / "tb-logs").glob("*")), tmp / "tb.log"]:
                    text = f.read_text(errors="replace") if f.exists() else ""
                    if text.strip():
                        print(f"--- {f.name}\n{text[-2500:]}")
        window = (t1 - t0) / 1000
        counts = {
            "gtx edge run": gtx_readings(msgs, t0, t1),
            "ThingsBoard IoT Gateway": tb_readings(msgs, t0, t1),
        }
        print(
            f"one simulated SDM630 over Modbus TCP, poll every {args.poll_ms} ms, "
            f"{window:.0f} s window"
        )
        print(
            f"{'gateway':<26}{'readings/s':>12}{'CPU s':>9}{'CPU ms/reading':>16}"
            f"{'peak RSS MiB':>14}"
        )
        for name in procs:
            if name not in cpu1:
                print(f"{name:<26} (not running)")
                continue
            cpu = cpu1[name] - cpu0[name]
            n = counts[name]
            per = f"{cpu * 1000 / n:.2f}" if n else "-"
            print(f"{name:<26}{n / window:>12.1f}{cpu:>9.2f}{per:>16}{rss[name]:>14.1f}")


if __name__ == "__main__":
    main()
