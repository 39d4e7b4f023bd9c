"""The ansible playbook: it parses, and its roles write configs the gateway really accepts."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

from edge.config import load_settings
from tests.deploy.conftest import ANSIBLE, INVENTORY, RENDER, Deployment, ansible_playbook, recap
from wire.keys import load_key, public_hex


def test_site_syntax_check(tmp_path: Path) -> None:
    run = ansible_playbook(
        "--syntax-check", str(ANSIBLE / "site.yml"), "-i", str(INVENTORY), home=tmp_path
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING" not in run.stdout + run.stderr


def test_render_run_is_clean(deployment: Deployment) -> None:
    counts = recap(deployment.output)
    assert set(counts) == {"broker1", *deployment.gateways}
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values())
    assert "WARNING" not in deployment.output, deployment.output


def test_edge_toml_of_each_gateway_is_a_valid_config(deployment: Deployment) -> None:
    for host in deployment.gateways:
        inventory = deployment.host_vars(host)
        settings = load_settings(deployment.config(host))  # the loader `gtx edge run` uses

        assert settings.chain == "gtx-local"
        assert settings.zone == inventory["gtx_zone"]
        assert settings.interval_ms == 900_000
        assert [d.name for d in settings.devices] == [
            d["name"]  # type: ignore[index]
            for d in inventory["gtx_devices"]  # type: ignore[attr-defined]
        ]
        # The key was generated on the "device" by the role; the broker knows it as the user.
        key = load_key(settings.key_path)
        assert public_hex(key) == deployment.pubkey(host)
        assert settings.mqtt.username == deployment.pubkey(host)
        assert settings.mqtt.password == deployment.password(f"gateways/{host}")
        assert settings.mqtt.tls
        assert settings.mqtt.ca is not None
        assert Path(settings.mqtt.ca).read_bytes() == deployment.ca.read_bytes()
        assert settings.hub is not None
        assert settings.hub.url == "http://192.0.2.30:8600"
        assert settings.outbox.keep_tx_until == "committed"

        assert stat.S_IMODE(settings.key_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(settings.state_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(deployment.config(host).stat().st_mode) == 0o640
        password_file = deployment.config(host).with_name("mqtt.password")
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o640

    # Per-host inventory values reach the file: metrics on one, a [polling] override on the other.
    first, second = (load_settings(deployment.config(h)) for h in deployment.gateways)
    assert first.metrics_port == 9108
    assert second.metrics_port is None
    assert second.polling.timeout_ms == 500
    assert {d.transport.kind for d in second.devices} == {"rtu", "tcp"}


def test_gtx_edge_check_accepts_the_rendered_config(deployment: Deployment) -> None:
    host = deployment.gateways[0]
    run = subprocess.run(
        [str(Path(sys.executable).parent / "gtx"), "edge", "check", "--json",
         "--config", str(deployment.config(host))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["gateway"] == deployment.pubkey(host)
    assert summary["key_problem"] is None


def test_broker_files(deployment: Deployment) -> None:
    broker = deployment.out / "broker"
    acl = (broker / "acl").read_text()
    assert "pattern write gtx/v1/gtx-local/gw/%u/tx" in acl
    assert "pattern read gtx/v1/gtx-local/gw/%u/inbox" in acl
    assert acl.count("topic readwrite gtx/v1/gtx-local/#") == 4

    users = {line.split(":", 1)[0] for line in (broker / "passwd").read_text().splitlines()}
    assert users == {
        *(deployment.pubkey(h) for h in deployment.gateways),
        "hub-egat", "hub-mea", "hub-pea", "hub-erc",
    }  # fmt: skip
    # Hashed by mosquitto_passwd, and the plain-text copy is gone.
    assert all(
        re.fullmatch(r"[^:]+:\$[67]\$.+", line)
        for line in (broker / "passwd").read_text().splitlines()
    )
    assert not (broker / "passwd.new").exists()
    for name in ("acl", "passwd", "server.key"):
        assert stat.S_IMODE((broker / name).stat().st_mode) == 0o600

    conf = (deployment.out / "conf.d" / "gridtokenx.conf").read_text()
    assert f"listener {deployment.port} 127.0.0.1\n" in conf
    assert "allow_anonymous false\n" in conf
    assert "max_queued_messages 1000000\n" in conf


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    """Idempotent: no new key, no re-hashed password file, so no broker reload or restart."""
    passwd = deployment.out / "broker" / "passwd"
    before = passwd.read_bytes()
    keys = {h: deployment.pubkey(h) for h in deployment.gateways}

    run = ansible_playbook(
        "-i", str(INVENTORY), str(RENDER), "-e", f"@{deployment.vars_file}",
        home=deployment.home,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    counts = recap(run.stdout)
    assert {h: c["changed"] for h, c in counts.items()} == dict.fromkeys(counts, 0), run.stdout
    assert passwd.read_bytes() == before
    assert {h: deployment.pubkey(h) for h in deployment.gateways} == keys


def test_a_bad_device_is_refused_before_install(deployment: Deployment, tmp_path: Path) -> None:
    """`validate: gtx edge check` rejects the rendered file and the installed one stays."""
    host = deployment.gateways[0]
    installed = deployment.config(host).read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "gtx_devices": [
                    {"name": "meter1", "profile": "sdm630", "transport": "tcp://10.0.0.9:502",
                     "poll_ms": 5}
                ]
            }
        )
    )  # fmt: skip
    run = ansible_playbook(
        "-i", str(INVENTORY), str(RENDER), "-e", f"@{deployment.vars_file}", "-e", f"@{bad}",
        "--limit", host, home=deployment.home,
    )  # fmt: skip
    assert run.returncode != 0
    assert "'poll_ms': must be an integer from 100 to 3600000 ms, got 5" in run.stdout
    assert deployment.config(host).read_bytes() == installed
