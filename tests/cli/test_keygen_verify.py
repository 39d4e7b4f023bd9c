"""`gtx edge keygen` and `gtx verify`, run as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nacl.signing import SigningKey

from wire import envelope, kinds

GTX = [sys.executable, "-m", "gridtokenx.cli"]
CHAIN = "gtx-local"


def gtx(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*GTX, *args], input=stdin, capture_output=True, timeout=60, check=False)


def telemetry(key: SigningKey, seq: int, chain: str = CHAIN, ts: int = 0) -> bytes:
    body = kinds.Telemetry(
        device="m1", power_w=100, voltage_dv=2300, frequency_mhz=50_000, import_wh=1, export_wh=0
    )
    return envelope.sign(key, chain, body, seq, ts or 1_700_000_000_000 + seq).to_bytes()


def test_keygen_writes_0600_and_prints_public_key(tmp_path: Path) -> None:
    out = tmp_path / "gw.key"
    r = gtx("edge", "keygen", "--out", str(out))
    assert r.returncode == 0, r.stderr
    pub = r.stdout.decode().strip()
    assert len(pub) == 64
    assert os.stat(out).st_mode & 0o777 == 0o600
    key = SigningKey(bytes.fromhex(out.read_text().strip()))
    assert key.verify_key.encode().hex() == pub
    again = gtx("edge", "keygen", "--out", str(out))
    assert again.returncode == 1
    assert b"refusing to overwrite" in again.stderr
    assert SigningKey(bytes.fromhex(out.read_text().strip())) == key
    as_json = gtx("edge", "keygen", "--out", str(out), "--force", "--json")
    assert json.loads(as_json.stdout)["public_key"] != pub


def test_verify_all_valid(tmp_path: Path) -> None:
    key = SigningKey.generate()
    f = tmp_path / "msgs.jsonl"
    f.write_bytes(b"\n".join(telemetry(key, s) for s in range(1, 6)) + b"\n\n")
    r = gtx("verify", str(f), "--chain", CHAIN, "--seq")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == b""
    assert b"5 valid, 0 invalid" in r.stderr


def test_verify_reports_each_bad_line(tmp_path: Path) -> None:
    key = SigningKey.generate()
    good = telemetry(key, 1)
    lines = [
        good,
        good.replace(b'"power_w":100', b'"power_w":101'),  # tampered
        b"not json",
        telemetry(key, 2, chain="gtx-other"),
        good.replace(b'"power_w":100', b'"power_w":100.5'),
        telemetry(key, 3),
    ]
    r = gtx("verify", "-", "--chain", CHAIN, stdin=b"\n".join(lines))
    assert r.returncode == 1
    out = r.stdout.decode().splitlines()
    assert out[0].startswith("line 2: signature does not verify")
    assert out[1].startswith("line 3: bad JSON")
    assert out[2].startswith("line 4: message is for chain 'gtx-other'")
    assert out[3].startswith("line 5: floats are not allowed")
    assert len(out) == 4
    assert b"2 valid, 4 invalid" in r.stderr


def test_verify_seq_replay(tmp_path: Path) -> None:
    key = SigningKey.generate()
    stream = [telemetry(key, 1), telemetry(key, 2), telemetry(key, 2), telemetry(key, 1, ts=9)]
    r = gtx("verify", "--seq", "--json", stdin=b"\n".join(stream))
    assert r.returncode == 1
    bad = [json.loads(line) for line in r.stdout.splitlines()]
    # Line 3 is an exact re-send (fine); line 4 is a different message under seq 1.
    assert [b["line"] for b in bad] == [4]
    assert "not above the last accepted seq 2" in bad[0]["error"]


def test_verify_missing_file() -> None:
    r = gtx("verify", "/nonexistent/file.jsonl")
    assert r.returncode == 2
    assert b"cannot open /nonexistent/file.jsonl" in r.stderr


def test_help_everywhere() -> None:
    for args in (["--help"], ["edge", "--help"], ["edge", "keygen", "--help"], ["verify", "-h"]):
        r = gtx(*args)
        assert r.returncode == 0, args
        assert b"usage: gtx" in r.stdout


def test_verify_empty_input_fails(tmp_path: Path) -> None:
    # Nothing checked proves nothing: a capture that came out empty must not pass.
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    for r in (gtx("verify", str(empty)), gtx("verify", "-", stdin=b"")):
        assert r.returncode == 1
        assert b"no messages to check" in r.stderr


def test_verify_huge_integer_is_refused_by_its_size(tmp_path: Path) -> None:
    line = b'{"v":1,"seq":' + b"9" * 5000 + b"}"
    r = gtx("verify", "-", stdin=line)
    assert r.returncode == 1
    assert b"5000 digits is outside signed 64 bits" in r.stdout
    assert b"set_int_max_str_digits" not in r.stdout
