"""`gtx edge check` validates the shipped example config; `gtx edge pubkey` reads a key back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GTX = [sys.executable, "-m", "gridtokenx.cli"]
EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "edge.toml"


def gtx(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*GTX, *args], capture_output=True, timeout=60, check=False)


def test_example_config_is_valid(tmp_path: Path) -> None:
    r = gtx("edge", "check", "--config", str(EXAMPLE), "--no-key", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["devices"] == 3
    assert summary["buses"]["rtu:/dev/ttyAMA0"] == ["meter1", "pv-inverter"]
    assert summary["buses"]["tcp:192.168.1.50:502"] == ["meter2"]
    assert (summary["tx_kept_until"], summary["hub"]) == ("committed", "http://127.0.0.1:8600")
    assert summary["gateway"] is None
    assert "does not exist" in summary["key_problem"]
    # Without --no-key a missing key is an error naming the fix.
    r = gtx("edge", "check", "--config", str(EXAMPLE))
    assert r.returncode == 2
    assert b"gtx edge keygen" in r.stderr


def test_check_with_key_and_bad_config(tmp_path: Path) -> None:
    key = tmp_path / "gw.key"
    pub = gtx("edge", "keygen", "--out", str(key)).stdout.decode().strip()
    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        EXAMPLE.read_text()
        .replace("/var/lib/gridtokenx/gateway.key", str(key))
        .replace('state_dir = "/var/lib/gridtokenx"', f'state_dir = "{tmp_path}"')
    )
    r = gtx("edge", "check", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["gateway"] == pub
    assert gtx("edge", "pubkey", "--key", str(key)).stdout.decode().strip() == pub
    cfg.write_text(cfg.read_text().replace("poll_ms = 1000", "poll_ms = 5", 1))
    r = gtx("edge", "check", "--config", str(cfg))
    assert r.returncode == 2
    assert b"poll_ms" in r.stderr


def test_pubkey_missing_key(tmp_path: Path) -> None:
    r = gtx("edge", "pubkey", "--key", str(tmp_path / "none.key"))
    assert r.returncode == 2
    assert b"does not exist" in r.stderr


def test_check_refuses_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_bytes(EXAMPLE.read_bytes().replace(b"meter1", b"m\xe9ter1", 1))  # Latin-1 'é'
    r = gtx("edge", "check", "--config", str(cfg), "--no-key")
    assert r.returncode == 2
    assert b"not UTF-8" in r.stderr
    assert b"Traceback" not in r.stderr


def test_check_does_not_call_a_config_with_an_unusable_key_valid(tmp_path: Path) -> None:
    key = tmp_path / "gw.key"
    assert gtx("edge", "keygen", "--out", str(key)).returncode == 0
    key.chmod(0o644)
    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        EXAMPLE.read_text()
        .replace("/var/lib/gridtokenx/gateway.key", str(key))
        .replace('state_dir = "/var/lib/gridtokenx"', f'state_dir = "{tmp_path}"')
    )
    r = gtx("edge", "check", "--config", str(cfg))
    assert r.returncode == 2
    assert b": valid" not in r.stdout
    assert b"key NOT usable" in r.stdout
    assert b"chmod 600" in r.stderr
