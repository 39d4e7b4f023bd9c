"""TLS and credentials end to end: `gtx edge run` -> mosquitto over mqtts with a password.

The CA, server and client certificates are made fresh in `tmp_path` (openssl CLI); the
broker's TLS listener refuses anonymous clients. A verifying subscriber listens on a
second, plain loopback listener of the same broker. Each test first runs the gateway with
one thing wrong, proves the outage is logged once with its cause and that the outbox keeps
every reading, then fixes the config, restarts the gateway and proves every seq arrives.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.edge.harness import (
    Subscriber,
    assert_contiguous,
    make_key,
    outbox_next_seqs,
    outbox_rows,
    start_gateway,
    start_tcp_sim,
    stop,
    verify,
    wait_until,
    write_config,
)
from tests.support import Broker, Pki, make_pki, make_tls_broker, write_password_file

pytestmark = pytest.mark.slow

USER = "gw-0001"
PASSWORD = "correct horse battery staple"  # a throwaway test credential


def mqtt_table(ca: Path, password_file: Path, client: Pki | None) -> str:
    """The `[mqtt]` keys after `url` (harness.write_config adds url, keepalive, timeout)."""
    lines = [f'username = "{USER}"', f'password_file = "{password_file}"', f'ca = "{ca}"']
    if client is not None:
        lines += [f'cert = "{client.client_cert}"', f'key = "{client.client_key}"']
    return "\n".join(lines)


def min_seqs(state: Path) -> dict[str, int]:
    """The lowest stored seq per stream (the first ever, while nothing was published)."""
    db = sqlite3.connect(state / "outbox.sqlite")
    try:
        return dict(db.execute("SELECT stream, min(seq) FROM message GROUP BY stream").fetchall())
    finally:
        db.close()


def stored_kinds(state: Path) -> dict[str, int]:
    db = sqlite3.connect(state / "outbox.sqlite")
    try:
        return dict(db.execute("SELECT kind, count(*) FROM message GROUP BY kind").fetchall())
    finally:
        db.close()


def run_broken_then_fixed(
    tmp_path: Path,
    broker: Broker,
    verifier_port: int,
    broken_extra: str,
    fixed_extra: str,
    fix: Callable[[], object],
    cause: str,
) -> None:
    """Gateway with `broken_extra` (logs `cause`, buffers), then `fixed_extra`: all arrive."""
    key, gateway = make_key(tmp_path)
    sim = start_tcp_sim(tmp_path, "sdm630", "1-2")
    devices: list[dict[str, object]] = [
        {
            "name": f"m{u}",
            "profile": "sdm630",
            "transport": sim.transport,
            "unit": u,
            "poll_ms": 200,
        }
        for u in (1, 2)
    ]
    url = f"mqtts://127.0.0.1:{broker.port}"
    state = tmp_path / "state"
    log = tmp_path / "gateway.log"
    sub = Subscriber(verifier_port, f"gtx/v1/+/gw/{gateway}/#")
    sub.start()
    gw: subprocess.Popen[bytes] | None = None
    try:
        config = write_config(tmp_path, key, url, devices, interval_s=1, extra=broken_extra)
        gw = start_gateway(config, tmp_path)
        # Refused: the cause is logged once at ERROR, the readings pile up in the outbox.
        wait_until(lambda: cause in log.read_text(errors="replace"), 20, f"{cause!r} in the log")
        wait_until(
            lambda: (
                stored_kinds(state).get("meter_read", 0) >= 4
                and stored_kinds(state).get("telemetry", 0) >= 10
            ),
            20,
            "readings buffered in the outbox",
        )
        assert stop(gw) == 0
        text = log.read_text(errors="replace")
        outage = [ln for ln in text.splitlines() if "unavailable" in ln]
        assert len(outage) == 1, outage  # once at ERROR, then DEBUG (not shown at INFO)
        assert outage[0].startswith("ERROR gtx.edge.uplink: broker 127.0.0.1:")
        assert "buffering in the outbox" in outage[0]
        assert "connected to broker" not in text
        assert PASSWORD not in text
        assert "not the password" not in text
        assert sub.snapshot() == [], "nothing may pass a refused connection"
        first = min_seqs(state)
        buffered = outbox_rows(state)

        fix()
        config = write_config(tmp_path, key, url, devices, interval_s=1, extra=fixed_extra)
        gw = start_gateway(config, tmp_path)
        wait_until(lambda: "connected to broker" in log.read_text(errors="replace"), 20, "connect")
        wait_until(lambda: len(sub.snapshot()) > buffered, 20, "the backlog to arrive")
        assert stop(gw) == 0
    finally:
        if gw is not None:
            stop(gw, signal.SIGKILL)
        stop(sim.proc)
    next_seq = outbox_next_seqs(state)

    def complete() -> bool:
        seqs = verify(sub.snapshot(), gateway).seqs
        return all(seqs.get(s) and seqs[s][-1] == next_seq[s] - 1 for s in ("telemetry", "tx"))

    wait_until(complete, 10, "every seq up to the last one stored")
    sub.stop()
    v = verify(sub.snapshot(), gateway)
    assert outbox_rows(state) == 0
    for stream in ("telemetry", "tx"):
        # From the very first seq: the refused run lost nothing.
        assert_contiguous(v.seqs[stream], first=first[stream], last=next_seq[stream] - 1)
    assert v.devices.keys() == {"m1", "m2"}
    assert v.kinds["meter_read"] >= 4
    assert v.status[0].startswith(b'{"devices":["m1","m2"]')
    assert v.status[-1] == b"offline"


def test_mutual_tls_with_password_wrong_password_buffers_then_all_arrive(tmp_path: Path) -> None:
    """mqtts + client certificate + password; a wrong password first, then the right one."""
    pki = make_pki(tmp_path / "pki")
    users = write_password_file(tmp_path / "mosquitto.passwd", {USER: PASSWORD})
    broker, verifier_port = make_tls_broker(tmp_path, pki, users, require_certificate=True)
    secret = tmp_path / "mqtt.password"
    secret.write_text("not the password\n")
    extra = mqtt_table(pki.ca, secret, pki)
    broker.start()
    try:
        run_broken_then_fixed(
            tmp_path,
            broker,
            verifier_port,
            extra,
            extra,
            lambda: secret.write_text(PASSWORD + "\n"),
            "[code:135] Not authorized",
        )
    finally:
        broker.stop()
    # The broker saw the gateway's certificate and user name on the TLS listener.
    blog = (tmp_path / "mosquitto.log").read_text(errors="replace")
    assert f"u'{USER}'" in blog
    assert f"on port {broker.port}" in blog


def test_untrusted_ca_buffers_then_all_arrive(tmp_path: Path) -> None:
    """The gateway trusts another CA than the one that signed the broker: refused, kept."""
    pki = make_pki(tmp_path / "pki")
    rogue = make_pki(tmp_path / "rogue")
    users = write_password_file(tmp_path / "mosquitto.passwd", {USER: PASSWORD})
    broker, verifier_port = make_tls_broker(tmp_path, pki, users, require_certificate=False)
    secret = tmp_path / "mqtt.password"
    secret.write_text(PASSWORD + "\n")
    broker.start()
    try:
        run_broken_then_fixed(
            tmp_path,
            broker,
            verifier_port,
            mqtt_table(rogue.ca, secret, None),
            mqtt_table(pki.ca, secret, None),
            lambda: None,
            "CERTIFICATE_VERIFY_FAILED",
        )
    finally:
        broker.stop()
