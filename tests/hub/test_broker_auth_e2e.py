"""Hub validators on the production broker: TLS, a password file, no anonymous clients, an ACL.

The broker is configured as ansible's `broker` role makes it (`make_hub_broker`): one TLS
listener with a throwaway CA made in `tmp_path`, `allow_anonymous false`, and an ACL in which
each validator's user name has readwrite on `gtx/v1/{chain}/#` and nothing else. Three
validators log in with their accounts and commit; the fourth has a wrong password, logs the
refusal once at ERROR and keeps running; once its password file is fixed and it is restarted
it catches up, votes, and every validator holds the same blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.hubnet import HubNet, wait_until
from tests.support import (
    Broker,
    make_hub_broker,
    make_pki,
    write_acl_file,
    write_password_file,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

CHAIN = "gtx-auth"
USERS = [f"hub-{i}" for i in range(4)]
PASSWORDS = {name: f"pw-{name}-correct" for name in USERS}  # throwaway test credentials


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Broker]:
    bdir = tmp_path / "broker"
    bdir.mkdir()
    pki = make_pki(bdir / "pki", client_cn="unused")
    passwd = write_password_file(bdir / "passwd", PASSWORDS)
    acl = write_acl_file(bdir / "acl", CHAIN, USERS)
    broker = make_hub_broker(bdir, pki, passwd, acl)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _same_chain(net: HubNet, upto: int) -> None:
    for height in range(1, upto + 1):
        hashes = {net.block(i, height)["hash"] for i in range(4)}
        assert len(hashes) == 1, f"height {height}: validators disagree: {hashes}"


def test_validators_over_tls_password_and_acl(tmp_path: Path, tls_broker: Broker) -> None:
    ca = tls_broker.conf.parent / "pki" / "ca.crt"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    mqtt = []
    for i, name in enumerate(USERS):
        password = "wrong password" if i == 3 else PASSWORDS[name]
        (secrets / name).write_text(password + "\n")
        mqtt.append({"username": name, "password_file": str(secrets / name), "ca": str(ca)})
    net = HubNet(tmp_path, f"mqtts://127.0.0.1:{tls_broker.port}", chain=CHAIN, mqtt=mqtt)
    try:
        net.start_all()
        wait_until("v0..v2 at height 3", lambda: min(net.heights([0, 1, 2])) >= 3, 40)

        # v3 is refused: one ERROR naming the cause and the config keys; it keeps running.
        wait_until("v3 logs the refusal", lambda: "unavailable" in net.log(3), 10)
        proc = net.procs[3]
        assert proc is not None
        assert proc.poll() is None, net.log(3)
        errors = [line for line in net.log(3).splitlines() if " ERROR " in line]
        assert len(errors) == 1, errors
        assert "not authori" in errors[0].lower(), errors[0]
        assert "password_file" in errors[0]
        status = net.status(3)
        assert status is not None
        assert status["mqtt_connected"] is False

        # Fix its password file, restart it: it catches up and votes.
        (secrets / USERS[3]).write_text(PASSWORDS[USERS[3]] + "\n")
        net.stop(3)
        net.start(3)
        wait_until(
            "v3 connected and caught up",
            lambda: (
                (net.status(3) or {}).get("mqtt_connected") is True
                and net.height(3) >= max(net.heights([0, 1, 2])) - 1
            ),
            20,
        )
        net.stop(0)  # without v0, commits need v3's votes: its publishes pass the ACL
        h = max(net.heights([1, 2, 3]))
        wait_until("v1, v2, v3 commit", lambda: min(net.heights([1, 2, 3])) >= h + 2, 15)
        net.start(0)
        wait_until("v0 back", lambda: net.height(0) >= h + 2, 15)
        _same_chain(net, h + 2)
    finally:
        net.close()
