"""`gtx hub init` refuses bad options with one line naming the option, writing nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GTX = [sys.executable, "-m", "gridtokenx.cli"]


def init(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*GTX, "hub", "init", "--validators", "4", *args],
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--chain", "gtx-t", "--mqtt", "http://x"], b"--mqtt: must be mqtt://HOST:PORT"),
        (["--chain", "BAD CHAIN"], b"--chain: must be a chain id like 'gtx-local'"),
        (["--chain", "gtx-t", "--param", "nope=1"], b"--param:"),
    ],
)
def test_bad_option_named_and_nothing_written(tmp_path: Path, args: list[str], says: bytes) -> None:
    net = tmp_path / "net"
    r = init("--dir", str(net), *args)
    assert r.returncode == 2
    assert says in r.stderr, r.stderr
    assert b"Traceback" not in r.stderr
    assert not net.exists()


def test_unwritable_dir_is_one_line() -> None:
    r = init("--chain", "gtx-t", "--dir", "/proc/gridtokenx-nope")
    assert r.returncode == 2
    assert r.stderr.count(b"\n") == 1
    assert b"--dir: cannot write /proc/gridtokenx-nope" in r.stderr
