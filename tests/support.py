"""Test support: free ports, waiting for listeners, a real mosquitto broker process."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class Broker:
    """A mosquitto process on 127.0.0.1 that tests can stop and start again."""

    port: int
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) mosquitto and wait until it listens."""
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    def stop(self) -> None:
        """Stop mosquitto by PID and wait for it to exit."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def make_broker(directory: Path) -> Broker:
    """A broker config under `directory` with a fresh port (not started)."""
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "max_queued_messages 100000\n"
        "max_inflight_messages 100\n"
        f"persistence true\npersistence_location {directory}/\n"
        "log_type none\n"
    )
    return Broker(port=port, conf=conf)


# --- TLS and credentials for a broker ---------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A throwaway CA with a server certificate (127.0.0.1, localhost) and a client one.

    Made fresh under a test's `tmp_path` at test time; nothing is committed.
    """

    ca: Path
    """CA certificate (PEM)."""
    server_cert: Path
    """Server certificate, CN 127.0.0.1, SAN IP:127.0.0.1 and DNS:localhost."""
    server_key: Path
    """Server private key (PEM, unencrypted)."""
    client_cert: Path
    """Client certificate for mutual TLS, CN `client_cn`."""
    client_key: Path
    """Client private key (PEM, unencrypted)."""


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("the openssl CLI is needed to make test certificates")
    subprocess.run([exe, *args], check=True, capture_output=True, timeout=30)


def make_pki(directory: Path, client_cn: str = "gtx-test-gateway") -> Pki:
    """Create a CA, a server and a client certificate (EC P-256, valid 2 days) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    _openssl(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", f"/CN=GridTokenX test CA {directory.name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    issued: dict[str, tuple[Path, Path]] = {}
    for role, cn, ext in (
        ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
         "extendedKeyUsage=serverAuth"),
        ("client", client_cn, "extendedKeyUsage=clientAuth"),
    ):  # fmt: skip
        cert, key, csr = (directory / f"{role}.{s}" for s in ("crt", "key", "csr"))
        extfile = directory / f"{role}.ext"
        extfile.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" + ext + "\n"
        )
        _openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extfile),
        )  # fmt: skip
        issued[role] = (cert, key)
    return Pki(ca, *issued["server"], *issued["client"])


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto `password_file` for `users` (name -> password).

    Uses `mosquitto_passwd` when installed, else writes mosquitto's PBKDF2-SHA512 format
    (`name:$7$iterations$salt$hash`, base64) directly.
    """
    exe = shutil.which("mosquitto_passwd")
    path.unlink(missing_ok=True)
    if exe is not None:
        for i, (name, password) in enumerate(users.items()):
            create = ["-c"] if i == 0 else []
            subprocess.run(
                [exe, "-b", *create, str(path), name, password],
                check=True,
                capture_output=True,
                timeout=30,
            )
    else:
        lines = []
        for name, password in users.items():
            salt = os.urandom(12)
            digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
            b64 = base64.b64encode
            lines.append(f"{name}:$7$101${b64(salt).decode()}${b64(digest).decode()}\n")
        path.write_text("".join(lines))
    return path


def make_tls_broker(
    directory: Path, pki: Pki, password_file: Path, require_certificate: bool
) -> tuple[Broker, int]:
    """A broker config (not started) with an authenticated TLS listener for the gateway.

    Listener one (the returned `Broker.port`): TLS with `pki`'s server certificate,
    `password_file`, no anonymous clients, and a client certificate from `pki`'s CA if
    `require_certificate`. Listener two (the returned int): plain and anonymous on
    127.0.0.1, for the test's verifying subscriber only.
    """
    tls_port, plain_port = free_port(), free_port()
    conf = directory / "mosquitto-tls.conf"
    conf.write_text(
        # Run as root (CI containers), mosquitto would drop to user `mosquitto` before
        # reading the password file; test files under tmp_path are private to root.
        "user root\n"
        "per_listener_settings true\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        f"require_certificate {'true' if require_certificate else 'false'}\n"
        f"password_file {password_file}\n"
        "allow_anonymous false\n"
        f"listener {plain_port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "max_queued_messages 100000\n"
        "max_inflight_messages 100\n"
        f"persistence true\npersistence_location {directory}/\n"
        f"log_dest file {directory / 'mosquitto.log'}\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
    )
    return Broker(port=tls_port, conf=conf), plain_port


def make_hub_broker(directory: Path, pki: Pki, password_file: Path, acl_file: Path) -> Broker:
    """A broker config (not started) as ansible's `broker` role makes it, for hub validators.

    One TLS listener with `pki`'s server certificate, `password_file`, no anonymous clients
    and `acl_file` (see `write_acl_file`); persistent sessions as in production.
    """
    port = free_port()
    conf = directory / "mosquitto-hub.conf"
    conf.write_text(
        "user root\n"  # see make_tls_broker: the files under tmp_path are private to root
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        "require_certificate false\n"
        f"password_file {password_file}\n"
        f"acl_file {acl_file}\n"
        "allow_anonymous false\n"
        "max_queued_messages 100000\n"
        "max_inflight_messages 100\n"
        "set_tcp_nodelay true\n"
        f"persistence true\npersistence_location {directory}/\n"
        f"log_dest file {directory / 'mosquitto.log'}\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
    )
    return Broker(port=port, conf=conf)


def write_acl_file(path: Path, chain: str, validators: list[str]) -> Path:
    """A mosquitto ACL like ansible/roles/broker/templates/acl.j2 (validators' part).

    Each validator user name gets readwrite on `gtx/v1/{chain}/#`; nobody else gets anything.
    """
    path.write_text(
        "".join(f"user {name}\ntopic readwrite gtx/v1/{chain}/#\n\n" for name in validators)
    )
    return path
