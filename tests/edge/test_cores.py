"""The pure cores: config parsing, intake checks, scheduler policy, thinning, status rendering."""

from __future__ import annotations

import dataclasses
import itertools
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hw
from edge import systemd
from edge.config import buses, load_settings, parse_settings
from edge.errors import ConfigError
from edge.intake import GENESIS, DeviceMemory, interval_start, next_boundary, take_reading
from edge.metrics import answer
from edge.retention import MINUTE_MS, TelemetryRow, thinning_plan
from edge.scheduler import Health, Policy, after_failure, after_success, next_poll
from edge.status import DeviceStatus, Histogram, Snapshot, describe, render_metrics, to_obj
from edge.transport import Transport
from hw.measurement import Measurements
from hw.profile import load_profile
from tests.support import make_pki

BASE = """
[gateway]
key = "/tmp/k"
chain = "gtx-local"
zone = "pea/ayutthaya/sub-01/feeder-3"
state_dir = "/tmp/s"
interval_s = 900
[mqtt]
url = "mqtt://127.0.0.1:1883"
"""
DEVICE = """
[[device]]
name = "meter1"
profile = "sdm630"
transport = "tcp://127.0.0.1:5020"
unit = 1
"""


def test_example_config_parses() -> None:
    path = Path(__file__).parents[2] / "docs" / "examples" / "edge.toml"
    s = parse_settings(path.read_text(), str(path))
    assert s.interval_ms == 900_000
    assert len(buses(s)) >= 2


def test_devices_group_by_bus() -> None:
    text = (
        BASE
        + DEVICE
        + DEVICE.replace("meter1", "m2").replace("unit = 1", "unit = 2")
        + (DEVICE.replace("meter1", "m3").replace("tcp://127.0.0.1:5020", "rtu:///dev/ttyAMA0"))
    )
    s = parse_settings(text)
    assert [len(d) for d in buses(s).values()] == [2, 1]
    assert s.devices[2].transport.baud == 9600
    assert s.devices[0].poll_ms == 1000
    assert s.devices[0].source == "grid"


def test_config_transport_forms_share_one_parser() -> None:
    """The config reads the URLs `gtx edge read` reads: defaults, stop bits, bare paths."""
    forms = {
        "tcp://meter.local": Transport("tcp", host="meter.local", port=502),
        "/dev/ttyUSB0": Transport("rtu", path="/dev/ttyUSB0"),
        "rtu:///dev/ttyS1?baud=19200&parity=e&stopbits=2": Transport(
            "rtu", path="/dev/ttyS1", baud=19200, parity="E", stopbits=2
        ),
    }
    for text, want in forms.items():
        s = parse_settings(BASE + DEVICE.replace("tcp://127.0.0.1:5020", text))
        assert s.devices[0].transport == want
        assert s.devices[0].describe() == f"meter1 (sdm630, {want.url} unit 1)"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("interval_s = 900", "interval_s = 0"), "key 'interval_s': must be an integer from 1"),
        (('chain = "gtx-local"', 'chain = "GTX"'), "key 'chain': must be a chain id"),
        (("unit = 1", "unit = 300"), "'meter1' key 'unit': must be an integer from 1 to 247"),
        (('profile = "sdm630"', 'profile = "nope"'), "key 'profile': no profile named 'nope'"),
        (
            ("tcp://127.0.0.1:5020", "udp://x:1"),
            "'transport': 'udp://x:1' has unknown scheme",
        ),
        (("tcp://127.0.0.1:5020", "rtu:///dev/x?baud=9601"), "baud must be one of"),
        (("mqtt://127.0.0.1:1883", "http://x"), "[mqtt] key 'url': must be mqtt://"),
        (("unit = 1", "unit = 1\npoll = 5"), "key 'poll': unknown key; allowed keys:"),
        (('name = "meter1"', 'name = "bad name"'), "key 'name': must be letters"),
        (("[mqtt]", "[mqtt]\nca = '/nonexistent'"), "key 'ca': TLS files need an mqtts:// url"),
    ],
)
def test_config_errors_name_key_and_fix(change: tuple[str, str], needle: str) -> None:
    text = (BASE + DEVICE).replace(*change)
    with pytest.raises(ConfigError) as err:
        parse_settings(text, "edge.toml")
    assert needle in str(err.value)
    assert str(err.value).startswith("edge.toml: ")


def test_relative_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    """Like hub.toml: systemd starts the gateway in /, so relative names follow the file."""
    etc = tmp_path / "etc"
    make_pki(etc)
    (etc / "mqtt.password").write_text("s3cret\n")
    (etc / "meter.toml").write_text((Path(hw.__file__).parent / "profiles/sdm120.toml").read_text())
    text = (BASE + DEVICE).replace('"/tmp/k"', '"gateway.key"').replace('"/tmp/s"', '"state"')
    text = text.replace('"mqtt://127.0.0.1:1883"', '"mqtts://broker.example.net"')
    text = text.replace('profile = "sdm630"', 'profile = "meter.toml"')
    mqtt = 'password_file = "mqtt.password"\nca = "ca.crt"\ncert = "client.crt"\nkey = "client.key"'
    text = text.replace("[mqtt]\n", "[mqtt]\n" + mqtt + "\n", 1)
    text += '[hub]\nurl = "https://hub.example:8600"\nca = "ca.crt"\n'
    config = etc / "edge.toml"
    config.write_text(text)
    s = load_settings(config)
    assert (s.key_path, s.state_dir) == (etc / "gateway.key", etc / "state")
    assert (s.mqtt.password, s.mqtt.ca, s.mqtt.key) == (
        "s3cret",
        etc / "ca.crt",
        etc / "client.key",
    )
    assert s.hub is not None
    assert s.hub.ca == str(etc / "ca.crt")
    assert s.devices[0].spec.points == load_profile("sdm120").points
    # The same checks as hub.toml's [mqtt] (wire.mqtt): files are loaded at start.
    (etc / "client.key").write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"'cert': .* are not a matching PEM certificate and key"):
        load_settings(config)
    (etc / "mqtt.password").write_text("\n")
    with pytest.raises(ConfigError, match=r"\[mqtt\] key 'password_file': .* is empty"):
        load_settings(config)
    (etc / "mqtt.password").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_settings(config)


def test_config_rejects_duplicates_and_mixed_bus_speeds() -> None:
    with pytest.raises(ConfigError, match="already used by device #1"):
        parse_settings(BASE + DEVICE + DEVICE.replace("unit = 1", "unit = 2"))
    with pytest.raises(ConfigError, match=r"unit 1 on tcp://127\.0\.0\.1:5020 is already device"):
        parse_settings(BASE + DEVICE + DEVICE.replace("meter1", "m2"))
    rtu = DEVICE.replace("tcp://127.0.0.1:5020", "rtu:///dev/ttyS0?baud=9600")
    other = rtu.replace("meter1", "m2").replace("unit = 1", "unit = 2").replace("9600", "19200")
    with pytest.raises(ConfigError, match="one RS-485 bus has one speed"):
        parse_settings(BASE + rtu + other)
    with pytest.raises(ConfigError, match=r"no \[\[device\]\] tables"):
        parse_settings(BASE)


SDM630 = load_profile("sdm630")


def reading(imp: int, exp: int, power: int = 1000, volts: int = 2300) -> Measurements:
    return Measurements(
        power_w=power, voltage_dv=volts, frequency_mhz=50_000, import_wh=imp, export_wh=exp
    )


def test_first_reading_writes_meter_read_with_genesis_prev() -> None:
    out = take_reading(SDM630, "m1", "solar", DeviceMemory(), reading(10, 5), 1_000_500, 1000)
    assert out.accepted
    assert out.telemetry is not None
    assert out.meter_read is not None
    assert out.meter_read.interval == 1_000_000
    assert out.meter_read.prev == GENESIS
    assert out.meter_read.source == "solar"


def test_meter_read_once_per_interval_and_chained() -> None:
    mem = DeviceMemory(import_wh=10, export_wh=5, read_interval=1_000_000, read_id="ab" * 32)
    same = take_reading(SDM630, "m1", "grid", mem, reading(11, 5), 1_000_900, 1000)
    assert same.meter_read is None
    nxt = take_reading(SDM630, "m1", "grid", mem, reading(12, 5), 1_001_000, 1000)
    assert nxt.meter_read is not None
    assert nxt.meter_read.prev == "ab" * 32
    assert nxt.meter_read.interval == 1_001_000


def test_backwards_counter_and_out_of_range_are_rejected_and_memory_kept() -> None:
    mem = DeviceMemory(import_wh=100, export_wh=50)
    back = take_reading(SDM630, "m1", "grid", mem, reading(99, 50), 5, 1000)
    assert not back.accepted
    assert "import_wh went backwards from 100 to 99" in back.problems[0]
    assert back.memory == mem
    assert back.telemetry is None
    assert back.meter_read is None
    hot = take_reading(SDM630, "m1", "grid", mem, reading(100, 50, power=10**6), 5, 1000)
    assert not hot.accepted
    assert "power_w" in hot.problems[0]


@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=30),
    st.integers(1, 10),
)
def test_accepted_counters_never_decrease(values: list[tuple[int, int]], step_s: int) -> None:
    mem = DeviceMemory()
    accepted: list[tuple[int, int]] = []
    reads: list[int] = []
    for i, (imp, exp) in enumerate(values):
        out = take_reading(SDM630, "m", "grid", mem, reading(imp, exp), i * step_s * 1000, 5000)
        if out.accepted:
            accepted.append((imp, exp))
            if out.meter_read is not None:
                reads.append(out.meter_read.interval)
                mem = dataclasses.replace(out.memory, read_interval=out.meter_read.interval)
            else:
                mem = out.memory
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(accepted))
    assert reads == sorted(set(reads))


@given(st.integers(0, 2**45), st.integers(1, 10**7))
def test_interval_arithmetic(now: int, interval: int) -> None:
    start = interval_start(now, interval)
    assert start <= now < start + interval == next_boundary(now, interval)
    assert start % interval == 0


POLICY = Policy(interval_ms=10_000, retry_backoff_ms=200, degraded_after=3, degraded_poll_ms=30_000)


def test_scheduler_degrades_and_healthy_device_is_never_delayed() -> None:
    healths = {"good": Health(poll_ms=1000), "bad": Health(poll_ms=1000)}
    order = ("bad", "good")
    now = 0
    good_polls: list[int] = []
    for _ in range(200):
        name, due = next_poll(healths, order)
        now = max(now, due)
        if name == "bad":
            healths["bad"] = after_failure(healths["bad"], POLICY, now, "no answer")
            now += 600  # a timeout costs bus time
        else:
            healths["good"] = after_success(healths["good"], POLICY, now)
            good_polls.append(now)
            now += 20
    assert healths["bad"].degraded
    assert healths["bad"].failures >= 3
    late = [b - a for a, b in itertools.pairwise(good_polls)][5:]
    assert max(late) <= 1000 + 600  # at most one degraded poll in the way
    assert sum(1 for g in late if g > 1000) <= len(late) // 25


def test_scheduler_polls_at_interval_boundary_and_recovers() -> None:
    h = after_success(Health(poll_ms=3000), POLICY, 8_500)
    assert h.due_ms == 9_000
    h = after_success(Health(poll_ms=3000), POLICY, 9_500)
    assert h.due_ms == 10_000  # boundary before the 12_000 grid point
    bad = Health(poll_ms=1000)
    for t in range(3):
        bad = after_failure(bad, POLICY, t, "x")
    assert bad.degraded
    assert bad.due_ms == 2 + 30_000
    assert not after_success(bad, POLICY, 40_000).degraded


def rows(n: int, step_ms: int, device: str = "m") -> list[TelemetryRow]:
    return [TelemetryRow(i + 1, device, i * step_ms, 100) for i in range(n)]


def test_thinning_keeps_one_per_minute_then_per_interval() -> None:
    tel = rows(600, 1000)  # 10 minutes at 1 Hz
    first = thinning_plan(tel, 100 * 500, 900_000)
    kept = [r for r in tel if r.row_id not in set(first)]
    # stage 1 frees oldest first: the first minutes are down to one row per minute
    assert {r.ts_ms // MINUTE_MS for r in kept[:3]} == {0, 1, 2}
    everything = thinning_plan(tel, 10**9, 900_000)
    assert len(everything) == 600
    assert thinning_plan(tel, 0, 900_000) == ()


@given(
    st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 10**7)), max_size=80),
    st.integers(0, 20_000),
)
def test_thinning_frees_enough_oldest_first(items: list[tuple[str, int]], excess: int) -> None:
    tel = [
        TelemetryRow(i, d, ts, 100) for i, (d, ts) in enumerate(sorted(items, key=lambda x: x[1]))
    ]
    plan = thinning_plan(tel, excess, 900_000)
    assert len(set(plan)) == len(plan)
    assert len(plan) * 100 >= min(excess, 100 * len(tel))


def snapshot() -> Snapshot:
    return Snapshot(
        gateway="ab" * 32,
        chain="gtx-local",
        zone="pea/x",
        pid=1,
        started_ms=0,
        now_ms=10_000,
        broker_connected=True,
        broker_url="mqtt://127.0.0.1:1883",
        devices=(
            DeviceStatus(
                "m1", "tcp:x", "m1 (sdm630)", "ok", 5, 1, 0, 9_000, "", {"DeviceTimeout": 1}
            ),
            DeviceStatus("m" + '"', "tcp:x", "q", "degraded", 5, 5, 0, None, "dead"),
        ),
        outbox={"telemetry": 3, "tx": 1},
        outbox_unpublished=4,
        outbox_bytes=1000,
        published={"telemetry": 10, "tx": 2},
        last_publish_ms=9_500,
        thinned=0,
        latency=Histogram().observe(3).observe(70).observe(99_999),
    )


def test_metrics_exposition_and_http_answer() -> None:
    text = render_metrics(snapshot())
    assert 'gtx_edge_poll_errors_total{device="m1",kind="DeviceTimeout"} 1' in text
    assert 'gtx_edge_device_degraded{device="m\\""} 1' in text
    assert 'gtx_edge_publish_latency_seconds_bucket{le="0.005"} 1' in text
    assert 'gtx_edge_publish_latency_seconds_bucket{le="+Inf"} 3' in text
    assert 'gtx_edge_last_read_timestamp_seconds{device="m1"} 9.000' in text
    ok = answer("GET /metrics HTTP/1.1", lambda: text)
    assert ok.startswith(b"HTTP/1.0 200 OK")
    assert ok.endswith(text.encode())
    assert answer("POST /metrics HTTP/1.1", lambda: text).startswith(b"HTTP/1.0 405")
    assert answer("GET /x HTTP/1.1", lambda: text).startswith(b"HTTP/1.0 404")


def test_status_text_marks_stale_daemon() -> None:
    obj = to_obj(snapshot())
    live = describe(obj, 11_000)
    assert "daemon: running" in live
    assert "mqtt://127.0.0.1:1883 connected" in live
    stale = describe(obj, 100_000)
    assert "NOT RUNNING" in stale
    assert "broker: mqtt://127.0.0.1:1883 connected" not in stale
    assert "NOT CONNECTED (daemon not running; connected when it last wrote" in stale
    assert "degraded" in stale
    assert "dead" in stale


def test_sd_notify_writes_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert systemd.notify("READY=1", {"NOTIFY_SOCKET": path})
        assert sock.recv(100) == b"READY=1"
    assert not systemd.notify("READY=1", {})
    assert systemd.watchdog_period_ms({"WATCHDOG_USEC": "10000000"}) == 5000
    assert systemd.watchdog_period_ms({"WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}) is None
    assert systemd.polling_healthy({"a": 1000, "b": 5000}, 6000, 5000)
    assert not systemd.polling_healthy({"a": 1000}, 7000, 5000)


def test_status_of_a_stopped_daemon_claims_no_connection(tmp_path: Path) -> None:
    # The last status the daemon wrote said "connected", long ago: the command must not.
    example = Path(__file__).parents[2] / "docs" / "examples" / "edge.toml"
    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        example.read_text().replace(
            'state_dir = "/var/lib/gridtokenx"', f'state_dir = "{tmp_path}"'
        )
    )
    (tmp_path / "status.json").write_text(json.dumps(to_obj(snapshot())))  # now_ms = 10 s
    r = subprocess.run(
        [sys.executable, "-m", "gridtokenx.cli", "edge", "status", "--config", str(cfg), "--json"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1, r.stderr
    obj = json.loads(r.stdout)
    assert obj["running"] is False
    assert obj["broker"] == {
        "connected": False,
        "last_known_connected": True,
        "url": "mqtt://127.0.0.1:1883",
    }
