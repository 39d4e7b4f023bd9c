"""`gtx edge read` and `gtx edge scan` against `gtx sim` processes: TCP, RTU on a pty, IEC 61850."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import free_port, wait_port
from wire import envelope

GTX = [sys.executable, "-m", "gridtokenx.cli"]
Sim = Callable[..., subprocess.Popen[bytes]]


def gtx(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*GTX, *args], capture_output=True, timeout=timeout, check=False)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    """Start `gtx sim` processes; wait for their ready line; stop them all afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"sim{len(procs)}.log"
        with log.open("wb") as err:
            p = subprocess.Popen([*GTX, "sim", *args], stdout=subprocess.PIPE, stderr=err)
        procs.append(p)
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line, log.read_text()
        return p

    yield start
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "gw.key"
    assert gtx("edge", "keygen", "--out", str(path)).returncode == 0
    return path


def read_ok(*args: str) -> envelope.Envelope:
    r = gtx("edge", "read", *args)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    return envelope.parse(lines[0], "gtx-local")


@pytest.mark.parametrize("profile", ["sdm630", "sdm120", "sunspec-inverter", "huawei-sun2000"])
def test_read_tcp_every_profile(sim: Sim, key: Path, profile: str) -> None:
    port = free_port()
    unit = "1"
    sim("--device", profile, "--tcp", f"127.0.0.1:{port}", "--unit", unit)
    env = read_ok(
        "--profile", profile, "--tcp", f"127.0.0.1:{port}", "--unit", unit, "--key", str(key)
    )
    body = env.body.to_json()
    assert env.kind == "telemetry"
    assert body["device"] == profile
    assert 2000 <= body["voltage_dv"] <= 2600  # 230 V +- 13 %
    assert 49_500 <= body["frequency_mhz"] <= 50_500
    assert body["export_wh"] > 0


def test_read_rtu_pty_with_wire_timing(sim: Sim, key: Path, tmp_path: Path) -> None:
    link = tmp_path / "ttyRS485"
    sim("--device", "sdm120", "--rtu-link", str(link), "--baud", "9600", "--units", "1-3")
    for unit in ("1", "3"):
        env = read_ok(
            "--profile",
            "sdm120",
            "--rtu",
            str(link),
            "--baud",
            "9600",
            "--unit",
            unit,
            "--key",
            str(key),
            "--name",
            f"m{unit}",
        )
        assert env.body.to_json()["device"] == f"m{unit}"
    r = gtx("edge", "scan", "--rtu", str(link), "--units", "1-5", "--json", "--timeout-ms", "1000")
    assert r.returncode == 0, r.stderr
    assert [u["unit"] for u in json.loads(r.stdout)] == [1, 2, 3]


def test_read_iec61850(sim: Sim, key: Path) -> None:
    port = free_port()
    sim("--device", "iec61850-meter", "--iec61850", f"127.0.0.1:{port}")
    env = read_ok("--iec61850", f"127.0.0.1:{port}", "--key", str(key))
    assert env.body.to_json()["device"] == "iec61850-meter"
    assert env.body.to_json()["import_wh"] >= 1_000_000


def test_scan_finds_sunspec_models(sim: Sim) -> None:
    port = free_port()
    sim(
        "--device",
        "sunspec-inverter",
        "--tcp",
        f"127.0.0.1:{port}",
        "--units",
        "2",
        "--sunspec-base",
        "50000",
    )
    r = gtx("edge", "scan", "--tcp", f"127.0.0.1:{port}", "--units", "1-3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "unit 2: SunSpec at 50000, models 1, 103, 120, 123"


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("timeout", b"no answer after"),
        ("exception", b"exception 4 to FC4"),
        ("garbage", b"unit 2"),
    ],
)
def test_read_faults_exit_1_with_one_clear_line(
    sim: Sim, key: Path, tmp_path: Path, fault: str, needle: bytes
) -> None:
    link = tmp_path / "ttyBAD"
    sim("--device", "sdm630", "--rtu-link", str(link), "--units", "1-2", "--fault", f"2:{fault}")
    r = gtx(
        "edge",
        "read",
        "--profile",
        "sdm630",
        "--rtu",
        str(link),
        "--unit",
        "2",
        "--key",
        str(key),
        "--timeout-ms",
        "300",
        "--retries",
        "1",
    )
    assert r.returncode == 1
    assert r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"gtx edge read: sdm630 on rtu {link} unit 2:")
    assert needle in r.stderr
    # The healthy unit on the same link still reads.
    read_ok("--profile", "sdm630", "--rtu", str(link), "--unit", "1", "--key", str(key))


def test_read_unreachable_and_bad_input(key: Path, tmp_path: Path) -> None:
    port = free_port()
    r = gtx("edge", "read", "--profile", "sdm630", "--tcp", f"127.0.0.1:{port}", "--key", str(key))
    assert r.returncode == 1
    assert f"sdm630 on tcp 127.0.0.1:{port}: cannot connect".encode() in r.stderr
    r = gtx(
        "edge", "read", "--profile", "sdm630", "--rtu", str(tmp_path / "nope"), "--key", str(key)
    )
    assert r.returncode == 1
    assert str(tmp_path / "nope").encode() in r.stderr
    r = gtx("edge", "read", "--profile", "acme9000", "--tcp", "127.0.0.1:1", "--key", str(key))
    assert r.returncode == 2
    assert b"no profile named 'acme9000'" in r.stderr
    r = gtx("edge", "read", "--profile", "sdm630", "--tcp", "nohostport", "--key", str(key))
    assert r.returncode == 2
    assert b"--tcp wants HOST:PORT" in r.stderr
    for unit, says in (("0", b"broadcast"), ("248", b"1..247"), ("x", b"1..247")):
        r = gtx("edge", "read", "--profile", "sdm630", "--tcp", "127.0.0.1:1", "--unit", unit,
                "--key", str(key))  # fmt: skip
        assert r.returncode == 2
        assert b"--unit" in r.stderr
        assert says in r.stderr
    os.chmod(key, 0o644)
    r = gtx("edge", "read", "--profile", "sdm630", "--tcp", "127.0.0.1:1", "--key", str(key))
    assert r.returncode == 2
    assert b"readable by others" in r.stderr


def test_sim_on_a_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = gtx("sim", "--device", "sdm630", "--tcp", f"127.0.0.1:{port}")
    assert r.returncode == 2
    assert r.stderr.decode() == (
        f"gtx sim: cannot listen on tcp 127.0.0.1:{port}: the port is in use or the address "
        "is not this machine's; choose another HOST:PORT\n"
    )


def test_sim_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    p = subprocess.Popen(
        [*GTX, "sim", "--device", "sdm630", "--tcp", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_profile_from_a_file_needs_no_python(sim: Sim, key: Path, tmp_path: Path) -> None:
    # A contributor's new meter: the SDM120 map saved under another name and path.
    shipped = Path(__file__).parents[2] / "hw" / "profiles" / "sdm120.toml"
    custom = tmp_path / "acme-1p.toml"
    custom.write_text(shipped.read_text().replace('model = "SDM120-Modbus"', 'model = "ACME-1P"'))
    port = free_port()
    sim("--device", str(custom), "--tcp", f"127.0.0.1:{port}")
    env = read_ok("--profile", str(custom), "--tcp", f"127.0.0.1:{port}", "--key", str(key))
    assert env.body.to_json()["device"] == "acme-1p"
