"""`gtx demo` runs on a bare machine and reads, signs and verifies every simulated device."""

from __future__ import annotations

import subprocess
import sys


def test_demo_reads_every_transport() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gridtokenx.cli", "demo"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "FAILED" not in out
    for name in ("house-meter", "rooftop-pv", "huawei-pv", "flat-1", "flat-2", "substation-ied"):
        assert f"\n{name} " in out
    assert "6/6 verify" in out
    assert "is refused: signature does not verify" in out
