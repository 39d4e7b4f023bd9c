"""`gtx demo` runs a whole network, trades, settles, and leaves nothing running behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DEMO = [sys.executable, "-m", "gridtokenx.cli", "demo"]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _assert_cleaned_up(out: str) -> None:
    found = re.search(r"stopped (\d+) processes \(pids ([\d ]+)\)", out)
    assert found, out
    pids = [int(p) for p in found.group(2).split()]
    assert len(pids) == int(found.group(1))
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in pids if not _gone(p)] == []
    ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)}
    assert ports
    assert [p for p in ports if _listening(p)] == []
    removed = re.search(r"removed (\S+)", out)
    assert removed
    assert not Path(removed.group(1)).exists()


def test_demo_trades_settles_agrees_and_cleans_up() -> None:
    started = time.monotonic()
    r = subprocess.run(DEMO, capture_output=True, timeout=170, check=False)
    took = time.monotonic() - started
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, out + err
    assert took < 150, out
    # Devices on every transport answered, the chain runs the demo's interval.
    for transport in ("tcp://", "rtu://", "iec61850://"):
        assert transport in out
    assert "delivery interval 20 s" in out
    assert "telemetry from all 5 devices verified" in out
    assert "3 gateways registered" in out
    # Trades with a price and wheeling, then settled with conservation checked.
    trades = re.findall(r"trade (\w+) -> shop: (\d+) Wh at [\d.]+ THB/kWh \+ wheeling (\d+)", out)
    assert {t[0] for t in trades} == {"coldstore", "school"}
    assert any(int(t[2]) > 0 for t in trades)  # across feeders
    assert len(re.findall(r"sold \d+ Wh, delivered \d+ Wh, short \d+ Wh", out)) == len(trades)
    assert "conservation holds" in out
    assert re.search(r"all balances \+ escrow = 100000 satang = 100000", out)
    assert "certificate cert:" in out
    assert re.search(r"statement of the interval: hash [0-9a-f]{16}…, certified by [34] of", out)
    # The validators' state hashes agree at a common height.
    hashes = re.findall(r"validator \d: height (\d+) state hash ([0-9a-f]{64})", out)
    assert len(hashes) == 4
    assert len(set(hashes)) == 1
    assert "all 4 validators agree" in out
    assert "FAILED" not in out + err
    _assert_cleaned_up(out)


def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "demo.out"
    with log.open("wb") as f:
        proc = subprocess.Popen(DEMO, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "== 3. gateways" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # gateways are starting
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert code == 130, out
    assert "interrupted" in out
    _assert_cleaned_up(out)
