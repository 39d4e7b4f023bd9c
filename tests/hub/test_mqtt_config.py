"""hub.toml `[mqtt]`: the edge.toml names, checked at start, and `gtx hub init`'s broker options."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import MqttSettings, load_settings
from hub.errors import ConfigError
from hub.localnet import init_network
from hub.transport import client_options
from tests.support import make_pki


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_pki(directory)
    return directory


def _config(tmp_path: Path, mqtt: str) -> Path:
    if not (tmp_path / "net").exists():
        init_network(tmp_path / "net", validators=1, chain="gtx-cfg")
    cfg = tmp_path / "net" / "v0" / "hub.toml"
    text = cfg.read_text()
    head, _, rest = text.partition("[mqtt]\n")
    _, _, tail = rest.partition("\n\n")
    cfg.write_text(f"{head}[mqtt]\n{mqtt}\n\n{tail}")
    return cfg


def test_defaults_and_plain_url(tmp_path: Path) -> None:
    m = load_settings(_config(tmp_path, 'url = "mqtt://broker.example.net"')).mqtt
    assert m == MqttSettings("broker.example.net", 1883, keepalive_s=10)
    assert m.keepalive_s == 10
    assert m.username is None
    assert m.password is None


def test_tls_credentials_and_relative_files(tmp_path: Path, pki_dir: Path) -> None:
    cfg = _config(tmp_path, "")
    vdir = cfg.parent
    (vdir / "mqtt.password").write_text("s3cret\n")
    for name in ("ca.crt", "client.crt", "client.key"):
        (vdir / name).write_bytes((pki_dir / name).read_bytes())
    _config(
        tmp_path,
        'url = "mqtts://broker.example.net"\nusername = "hub-egat"\n'
        'password_file = "mqtt.password"\nca = "ca.crt"\ncert = "client.crt"\n'
        'key = "client.key"\nkeepalive_s = 30',
    )
    m = load_settings(cfg).mqtt
    assert (m.host, m.port, m.tls, m.url) == (
        "broker.example.net",
        8883,
        True,
        "mqtts://broker.example.net:8883",
    )
    assert (m.username, m.password, m.keepalive_s) == ("hub-egat", "s3cret", 30)
    assert m.ca == vdir / "ca.crt"
    opts = client_options(m, "gtx-hub-x")
    assert opts["username"] == "hub-egat"
    assert opts["password"] == "s3cret"
    assert opts["clean_session"] is False
    assert opts["keepalive"] == 30
    assert opts["tls_params"].ca_certs == str(vdir / "ca.crt")
    assert opts["tls_params"].cert_reqs == ssl.CERT_REQUIRED
    assert client_options(MqttSettings("h", 1883), "id")["tls_params"] is None


@pytest.mark.parametrize(
    ("mqtt", "key", "words"),
    [
        ('url = "http://x"', "mqtt.url", "mqtt://HOST:PORT or mqtts://HOST:PORT"),
        ('url = "mqtt://x:99999"', "mqtt.url", "bad port"),
        ('url = "mqtt://x"\nuser = "a"', "mqtt.user", "unknown key"),
        ('url = "mqtt://x"\nca = "ca.crt"', "mqtt.ca", "need an mqtts:// url"),
        ('url = "mqtts://x"\nca = "nope.crt"', "mqtt.ca", "does not exist"),
        ('url = "mqtts://x"\nca = "hub.toml"', "mqtt.ca", "not a PEM CA bundle"),
        ('password = "a"\npassword_file = "hub.toml"', "mqtt.password_file", "not both"),
        ('password_file = "missing"', "mqtt.password_file", "cannot read"),
        ('username = ""', "mqtt.username", "non-empty string"),
        ("keepalive_s = 2", "mqtt.keepalive_s", "5 to 3600"),
        ("keepalive_s = true", "mqtt.keepalive_s", "5 to 3600"),
    ],
)
def test_bad_mqtt_tables_name_the_key(tmp_path: Path, mqtt: str, key: str, words: str) -> None:
    cfg = _config(tmp_path, mqtt)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.key == key
    assert words in str(info.value)


def test_cert_without_key(tmp_path: Path, pki_dir: Path) -> None:
    cfg = _config(tmp_path, "")
    (cfg.parent / "c.crt").write_bytes((pki_dir / "client.crt").read_bytes())
    _config(tmp_path, 'url = "mqtts://x"\ncert = "c.crt"')
    with pytest.raises(ConfigError, match="cert and key go together") as info:
        load_settings(cfg)
    assert info.value.key == "mqtt.key"


def test_init_writes_accounts_and_ca(
    tmp_path: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passwords = tmp_path / "validators"
    passwords.mkdir()
    for name in ("hub-a", "hub-b"):
        (passwords / name).write_text(f"pw-{name}\n")
    args = ["hub", "init", "--validators", "2", "--chain", "gtx-i", "--dir", str(tmp_path / "n")]
    args += ["--mqtt", "mqtts://broker.example.net:8883", "--mqtt-ca", str(pki_dir / "ca.crt")]
    args += ["--mqtt-user", "hub-a", "--mqtt-user", "hub-b"]
    assert main([*args, "--mqtt-password-dir", str(passwords)]) == 0
    for i, name in enumerate(("hub-a", "hub-b")):
        vdir = tmp_path / "n" / f"v{i}"
        m = load_settings(vdir / "hub.toml").mqtt
        assert (m.username, m.password, m.ca) == (name, f"pw-{name}", vdir / "mqtt-ca.crt")
        assert (vdir / "mqtt.password").stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    # Inconsistent options are refused before anything is written.
    bad = ["hub", "init", "--validators", "2", "--chain", "gtx-i", "--dir", str(tmp_path / "m")]
    assert main([*bad, "--mqtt-user", "hub-a", "--mqtt-password-dir", str(passwords)]) == 2
    assert "one per validator" in capsys.readouterr().err
    assert main([*bad, "--mqtt-ca", str(pki_dir / "ca.crt")]) == 2
    assert "mqtts://" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
