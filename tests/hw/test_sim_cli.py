"""`gtx sim` (via `python -m hw.sim`): ready line, real reads, clean stop on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest

from edge.errors import DeviceTimeout
from edge.modbus import read_measurements, scan
from hw.profile import load_profile
from hw.sim.__main__ import main
from hw.sim.cli import add_sim_parser, parse_units

REPO = Path(__file__).resolve().parents[2]


async def start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hw.sim",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc, line.decode().strip()


async def stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


async def test_cli_tcp_serves_until_sigterm() -> None:
    proc, line = await start(
        "--device", "sdm120", "--tcp", "127.0.0.1:0", "--units", "1-2", "--seed", "9"
    )
    try:
        match = re.fullmatch(r"serving sdm120 units 1-2 on tcp 127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = f"tcp://127.0.0.1:{match.group(1)}"
        reading = await read_measurements(url, load_profile("sdm120"), 2, timeout_s=2.0)
        assert reading.voltage_dv is not None
        assert 2200 < reading.voltage_dv < 2400
        assert reading.frequency_mhz is not None
        assert 49_900 < reading.frequency_mhz < 50_100
    finally:
        status = await stop(proc)
    assert status == 0


async def test_cli_rtu_link_with_fault(tmp_path: Path) -> None:
    link = tmp_path / "ttySIM"
    proc, line = await start(
        "--device",
        "sdm630",
        "--rtu-link",
        str(link),
        "--baud",
        "19200",
        "--units",
        "1-3",
        "--fault",
        "2:timeout",
    )
    try:
        assert line == f"serving sdm630 units 1-3 on rtu {link} at 19200 baud 8N1"
        url = f"rtu://{link}?baud=19200"
        assert [r.unit for r in await scan(url, units=range(1, 5), timeout_s=1.0)] == [1, 3]
        with pytest.raises(DeviceTimeout):
            await read_measurements(url, load_profile("sdm630"), 2, timeout_s=0.2, retries=0)
    finally:
        status = await stop(proc)
    assert status == 0
    assert not link.exists()


def test_iec61850_without_module_explains(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr("hw.sim.cli.importlib.import_module", missing)
    assert main(["--device", "iec61850-meter", "--iec61850", "127.0.0.1:10102"]) == 2
    assert "IEC 61850 simulator is not available" in capsys.readouterr().err
    assert main(["--device", "iec61850-meter", "--tcp", "127.0.0.1:1"]) == 2
    assert "needs --iec61850 HOST:PORT" in capsys.readouterr().err


def test_parser_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_sim_parser(parser.add_subparsers())
    for bad in (
        ["sim", "--device", "sdm630"],
        ["sim", "--device", "sdm630", "--tcp", "nohost"],
        ["sim", "--device", "sdm630", "--tcp", "127.0.0.1:1", "--fault", "2:melt"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    assert "UNIT:KIND" in capsys.readouterr().err


def test_unknown_profile_exits_2_naming_the_shipped_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    add_sim_parser(parser.add_subparsers())
    args = parser.parse_args(["sim", "--device", "sdm999", "--tcp", "127.0.0.1:1"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "no profile named 'sdm999'" in err
    assert "sdm630" in err


def test_parse_units() -> None:
    assert parse_units("3") == (3,)
    assert parse_units("1-8") == tuple(range(1, 9))
    assert parse_units("1,3,5-6") == (1, 3, 5, 6)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_units("0-3")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_units("a")
