"""The state routes and `gtx tx` against a real uvicorn server on 127.0.0.1.

The server is the hub's own FastAPI application (`hub.api.create_app`) over a stand-in node
whose `POST /v1/tx` executes and commits a one-transaction block at once; `GET /v1/tx/{id}`
reports the outcome, and the state routes are those every validator serves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from hub.api import create_app
from hub.state.txcli import add_tx_parser
from tests.state.harness import CHAIN, MIN, T0, Net, key
from wire.envelope import parse
from wire.keys import save_key


class StandIn:
    """A node for `hub.api.create_app` (`NodeView`) whose `submit` commits at once."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.app = net.app
        self.outcomes: dict[str, dict[str, Any]] = {}

    def status(self) -> dict[str, Any]:
        return {"chain": CHAIN, "height": self.net.height}

    def block_json(self, height: int, *, full: bool) -> dict[str, Any] | None:
        return None

    def tx_json(self, tx_id: str) -> dict[str, Any] | None:
        return self.outcomes.get(tx_id)

    def submit(self, data: bytes) -> str:
        env = parse(data, CHAIN)
        self.net.app.check_tx(env)
        (res,) = self.net.block(env)
        self.outcomes[res.tx_id] = {
            "id": res.tx_id,
            "status": "committed" if res.ok else "rejected",
            "reason": res.reason,
        }
        return res.tx_id


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def hub() -> Iterator[tuple[str, StandIn]]:
    net = Net(balances={"buyer": 5_000})
    stand = StandIn(net)
    with serve(create_app(stand)) as url:
        yield url, stand


def gtx_tx(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_tx_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tx", *argv])
    code: int = args.func(args)
    return code


def _keyfile(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.key"
    save_key(key(name), path)
    return str(path)


def test_cli_register_offer_bid_and_routes(
    hub: tuple[str, StandIn], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, stand = hub
    net = stand.net
    auth, buyer = _keyfile(tmp_path, "auth"), _keyfile(tmp_path, "buyer")
    gw = net.genesis.validators[0]  # any 64-hex key will do as a gateway id
    from tests.state.harness import pub

    zone = "pea/a/f1"
    assert (
        gtx_tx(
            [
                "register",
                "--key",
                auth,
                "--hub",
                url,
                "--gateway",
                pub("gw"),
                "--owner",
                pub("seller"),
                "--zone",
                zone,
                "--device",
                "pv:solar:6000",
                "--wait",
            ]
        )
        == 0
    )
    assert (
        gtx_tx(
            [
                "register",
                "--key",
                auth,
                "--hub",
                url,
                "--gateway",
                pub("gwb"),
                "--owner",
                pub("buyer"),
                "--zone",
                zone,
                "--device",
                "m:grid:6000",
            ]
        )
        == 0
    )
    x = T0 + 3 * MIN
    net.ok(net.offer("gw", x, 50, 300, zone), net.bid("buyer", x, 10, 100, zone))
    capsys.readouterr()
    assert (
        gtx_tx(
            [
                "bid",
                "--key",
                buyer,
                "--hub",
                url,
                "--interval",
                str(x),
                "--energy-wh",
                "30",
                "--price",
                "350",
                "--zone",
                zone,
                "--sources",
                "solar",
                "--wait",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "committed"
    # a bid over the ceiling: refused at admission, exit 1 with the reason
    assert (
        gtx_tx(
            [
                "bid",
                "--key",
                buyer,
                "--hub",
                url,
                "--interval",
                str(x),
                "--energy-wh",
                "1",
                "--price",
                "9999",
                "--zone",
                zone,
                "--sources",
                "solar",
            ]
        )
        == 1
    )
    assert "over ceiling" in json.loads(capsys.readouterr().out)["reason"]
    with httpx.Client(base_url=url) as http:
        acct = http.get(f"/v1/accounts/{pub('buyer')}").json()
        assert acct["seq"] > 1_000_000  # time-based seq from the CLI
        assert http.get(f"/v1/devices/{pub('gw')}").json()["zone"] == zone
        assert http.get(f"/v1/devices/{gw}").status_code == 404
        book = http.get("/v1/market/book", params={"interval": x, "zone": "pea"}).json()
        assert [o["remaining_wh"] for o in book["offers"]] == [20]
        trades = http.get("/v1/market/trades", params={"interval": x}).json()
        assert [t["energy_wh"] for t in trades] == [30]
        price = http.get("/v1/market/price", params={"interval": x, "zone": zone}).json()
        assert price["price"] == 300
        assert http.get("/v1/settlements", params={"interval": x}).json() == []
        assert http.get(f"/v1/statements/{x}").status_code == 404
        assert http.get("/v1/certificates").json() == []
        assert http.get("/v1/proposals").json() == []
        assert http.get("/v1/params").json()["params"]["interval_s"] == 60


def test_cli_claim_refuses_a_malformed_certificate_id(
    hub: tuple[str, StandIn], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _stand = hub
    code = gtx_tx(
        [
            "claim",
            "--key",
            _keyfile(tmp_path, "buyer"),
            "--hub",
            url,
            "--cert",
            "c",
            "--energy-wh",
            "1",
        ]
    )
    assert code == 2  # refused before anything is sent
    assert "cert" in capsys.readouterr().err


def test_routes_refuse_malformed_keys_and_heights(hub: tuple[str, StandIn]) -> None:
    # Not a key, not a height a chain can reach: a 4xx that names the parameter, never an
    # empty account with 200 or a 500 from an integer too large for the chain store.
    url, _stand = hub
    with httpx.Client(base_url=url) as http:
        for path in ("/v1/accounts/xyz", f"/v1/accounts/{'A' * 64}", "/v1/devices/xyz"):
            r = http.get(path)
            assert r.status_code == 422, path
            assert r.json()["detail"][0]["loc"][0] == "path"
        for named in ("pool:fees", "pool:rounding", "grid:pea"):  # accounts that are no key
            assert http.get(f"/v1/accounts/{named}").status_code == 200, named
        r = http.get("/v1/blocks/99999999999999999999999")
        assert r.status_code == 422
        assert http.get("/v1/blocks/-1").status_code == 422
