"""Ed25519 keys (PyNaCl): generate, save with mode 0600, load refusing files others can read.

A key file holds the 32-byte seed as 64 lowercase hex characters and a newline. The public
key, as 64 lowercase hex, is the identity of a gateway, a validator or an account.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from wire.errors import BadSignature, InvalidMessage, KeyFileError

HEX64 = re.compile(r"[0-9a-f]{64}")


def generate_key() -> SigningKey:
    """A new key from the operating system's random source."""
    return SigningKey.generate()


def public_hex(key: SigningKey) -> str:
    """The public key as 64 lowercase hex characters."""
    return bytes(key.verify_key).hex()


def save_key(key: SigningKey, path: Path, *, overwrite: bool = False) -> None:
    """Write the key's seed to `path` with mode 0600.

    Refuses to replace an existing file unless `overwrite`: a lost key is a lost identity.

    Raises:
        KeyFileError: the file exists or cannot be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # the umask may have narrowed it; never widened it
        os.write(fd, (bytes(key).hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def load_key(path: Path) -> SigningKey:
    """Read a key file written by `save_key`.

    Raises:
        KeyFileError: missing, unreadable, readable by group or others, or malformed.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise KeyFileError(f"{path} does not exist; create one with `gtx edge keygen`") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path} is not a regular file")
    if st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        raise KeyFileError(
            f"{path} is readable by others (mode {mode:04o}); "
            f"run `chmod 600 {path}` and check who has seen it"
        )
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from exc
    if not HEX64.fullmatch(text):
        raise KeyFileError(f"{path} is not a GridTokenX key file (want 64 lowercase hex)")
    return SigningKey(bytes.fromhex(text))


def verify_key(public: str) -> VerifyKey:
    """The verify key for a 64-hex public key.

    Raises:
        InvalidMessage: not 64 lowercase hex.
    """
    if not HEX64.fullmatch(public):
        raise InvalidMessage(f"public key {public!r} is not 64 lowercase hex")
    return VerifyKey(bytes.fromhex(public))


def verify(public: str, message: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature.

    Raises:
        BadSignature: the signature does not match the message and key.
    """
    try:
        verify_key(public).verify(message, signature)
    except (BadSignatureError, CryptoError, ValueError) as exc:
        raise BadSignature(f"signature does not verify for key {public[:16]}…") from exc
