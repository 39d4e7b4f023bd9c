"""Shared fixtures: a real mosquitto broker on a random loopback port."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo the root-logger set-up a CLI run in-process makes (`logging.basicConfig`).

    Its handler writes to the stream pytest captured for that one test; left in place, a
    later test's log record meets a closed file and prints a "Logging error" traceback.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
