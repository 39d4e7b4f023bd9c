"""Deployment fixtures: the example inventory rendered by the real roles, and a real mosquitto.

`deployment` runs `tests/deploy/render.yml` (site.yml's plays on this machine, every path under
a temporary directory) once per test session; `broker` starts mosquitto on a free loopback port with
the drop-in, password file and ACL that the broker role wrote, behind a throwaway TLS CA.
"""

from __future__ import annotations

import getpass
import grp
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
INVENTORY = ANSIBLE / "inventory.example.yml"
RENDER = Path(__file__).with_name("render.yml")
BIN = Path(sys.executable).parent


def ansible_env(home: Path) -> dict[str, str]:
    """Environment of an ansible run: the project's ansible.cfg, a private ANSIBLE_HOME."""
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }


def ansible_playbook(
    *args: str, home: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the venv's ansible-playbook (fails the test if ansible-core is not installed)."""
    exe = BIN / "ansible-playbook"
    if not exe.exists():
        pytest.fail("ansible-core is not installed in this venv; run .ci/setup (dev extra)")
    return subprocess.run(
        [str(exe), *args],
        env=ansible_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters per host, e.g. {'broker1': {'ok': 18, 'changed': 0, ...}}."""
    hosts: dict[str, dict[str, int]] = {}
    lines = output.split("PLAY RECAP", 1)[-1].splitlines()[1:]
    for line in lines:
        if ":" not in line or "=" not in line:
            continue
        host, counters = line.split(":", 1)
        hosts[host.strip()] = {k: int(v) for k, v in (pair.split("=") for pair in counters.split())}
    return hosts


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("the openssl command is needed to make the test broker's certificate")
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(directory: Path) -> None:
    """ca.crt and server.crt/server.key (SAN IP 127.0.0.1) in `directory`, valid 2 days."""
    directory.mkdir(parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=GridTokenX deploy test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip


@dataclass(frozen=True)
class Deployment:
    """What render.yml wrote for the example inventory."""

    out: Path
    """Everything the roles wrote is under here."""
    vars_file: Path
    """The extra vars that redirect the roles' paths (for re-runs)."""
    home: Path
    """ANSIBLE_HOME of the runs."""
    output: str
    """ansible-playbook's output of the first run."""
    port: int
    """The broker listener's port on 127.0.0.1 (TLS)."""
    inventory: dict[str, object]
    """The example inventory as YAML data."""

    @property
    def credentials(self) -> Path:
        """The controller-side credentials directory."""
        return self.out / "credentials"

    @property
    def ca(self) -> Path:
        """The test CA certificate (the broker's certificate is signed by it)."""
        return self.out / "pki" / "ca.crt"

    @property
    def gateways(self) -> list[str]:
        """Gateway host names of the example inventory."""
        children = self.inventory["all"]["children"]  # type: ignore[index]
        return list(children["gateways"]["hosts"])

    def host_vars(self, host: str) -> dict[str, object]:
        """The host's own variables from the example inventory."""
        children = self.inventory["all"]["children"]  # type: ignore[index]
        for group in children.values():
            if host in (group.get("hosts") or {}):
                return dict(group["hosts"][host])
        raise KeyError(host)

    def config(self, host: str) -> Path:
        """The edge.toml written for gateway `host`."""
        return self.out / host / "etc" / "edge.toml"

    def pubkey(self, host: str) -> str:
        """The gateway public key recorded on the "controller"."""
        return (self.credentials / "gateways" / f"{host}.pub").read_text().strip()

    def password(self, path: str) -> str:
        """A generated password, e.g. `gateways/gw-...` or `validators/hub-egat`."""
        return (self.credentials / "mqtt" / path).read_text().split()[0]


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """Run render.yml once: gateway identities, broker accounts/ACL/drop-in, gateway configs."""
    out = tmp_path_factory.mktemp("deploy")
    home = out / "ansible-home"
    make_ca(out / "pki")
    (out / "conf.d").mkdir()
    port = free_port()
    user = getpass.getuser()
    group = grp.getgrgid(os.getgid()).gr_name
    extra = {
        "gtx_test_out": str(out),
        "gtx_credentials_dir": str(out / "credentials"),
        # Per host, templated by ansible: each gateway gets its own directories.
        "gtx_state_dir": "{{ gtx_test_out }}/{{ inventory_hostname }}/state",
        "gtx_config_dir": "{{ gtx_test_out }}/{{ inventory_hostname }}/etc",
        "gtx_venv": str(Path(sys.executable).parent.parent),
        "gtx_user": user,
        "gtx_group": group,
        "gtx_config_owner": user,
        "gtx_manage_service": False,
        "gtx_mqtt_url": f"mqtts://127.0.0.1:{port}",
        "gtx_mqtt_ca_src": str(out / "pki" / "ca.crt"),
        "gtx_broker_dir": str(out / "broker"),
        "gtx_broker_conf_file": str(out / "conf.d" / "gridtokenx.conf"),
        "gtx_broker_file_owner": user,
        "gtx_broker_file_group": group,
        "gtx_broker_manage_service": False,
        "gtx_broker_port": port,
        "gtx_broker_bind": "127.0.0.1",
        "gtx_broker_cafile_src": str(out / "pki" / "ca.crt"),
        "gtx_broker_certfile_src": str(out / "pki" / "server.crt"),
        "gtx_broker_keyfile_src": str(out / "pki" / "server.key"),
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
    }
    vars_file = out / "vars.json"
    vars_file.write_text(json.dumps(extra))
    run = ansible_playbook(
        "-i", str(INVENTORY), str(RENDER), "-e", f"@{vars_file}", home=home
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return Deployment(
        out=out,
        vars_file=vars_file,
        home=home,
        output=run.stdout + run.stderr,
        port=port,
        inventory=yaml.safe_load(INVENTORY.read_text()),
    )


@pytest.fixture(scope="session")
def broker(deployment: Deployment) -> Iterator[int]:
    """mosquitto with the broker role's drop-in, included like Debian's mosquitto.conf does."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        pytest.fail("mosquitto is not installed; run .ci/setup or apt-get install mosquitto")
    main = deployment.out / "mosquitto.conf"
    log = deployment.out / "mosquitto.log"
    main.write_text(
        # Debian's /etc/mosquitto/mosquitto.conf, pointed at the test directory. As root,
        # mosquitto would drop to user `mosquitto` before reading the test's private files.
        "user root\n"
        "persistence true\n"
        f"persistence_location {deployment.out}/\n"
        f"log_dest file {log}\n"
        f"include_dir {deployment.out / 'conf.d'}\n"
    )
    with (deployment.out / "mosquitto.stderr").open("wb") as stderr:
        proc = subprocess.Popen([exe, "-c", str(main)], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        try:
            wait_port(deployment.port)
        except TimeoutError:
            pytest.fail(
                "mosquitto did not start with the rendered config: "
                + (deployment.out / "mosquitto.stderr").read_text()
                + (log.read_text() if log.exists() else "")
            )
        yield deployment.port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
