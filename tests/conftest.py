"""Shared fixtures: a real mosquitto broker on a random loopback port."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Broker, make_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a random loopback port, for one test."""
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        pytest.fail("mosquitto is not installed; run .ci/run or apt-get install mosquitto")
    b = make_broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()
