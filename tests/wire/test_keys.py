"""Key files: 0600 on save, refused when others can read them, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wire import keys
from wire.errors import KeyFileError


def test_save_load_round_trip(tmp_path: Path) -> None:
    key = keys.generate_key()
    path = tmp_path / "gw.key"
    keys.save_key(key, path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = keys.load_key(path)
    assert keys.public_hex(loaded) == keys.public_hex(key)
    assert len(keys.public_hex(key)) == 64
    assert keys.public_hex(key) == keys.public_hex(key).lower()


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "gw.key"
    keys.save_key(keys.generate_key(), path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keys.save_key(keys.generate_key(), path)


def test_save_ignores_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        keys.save_key(keys.generate_key(), tmp_path / "k")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "k").st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_load_refuses_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "gw.key"
    keys.save_key(keys.generate_key(), path)
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match=f"chmod 600 {path}"):
        keys.load_key(path)


def test_load_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="gtx edge keygen"):
        keys.load_key(tmp_path / "nope.key")
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match="not a GridTokenX key file"):
        keys.load_key(bad)
    with pytest.raises(KeyFileError, match="not a regular file"):
        keys.load_key(tmp_path)
