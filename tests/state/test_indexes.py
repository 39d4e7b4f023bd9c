"""Secondary indexes of the state store follow every write, and certificate pages."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.state.api import state_router
from hub.state.queries import certificates_of
from hub.state.store import Overlay, Store
from tests.state.harness import MIN, T0, Net, pub
from tests.state.test_api_cli import serve

SCHEMA = {"things": int}
INDEXES = {"things": lambda _key, value: str(value % 3)}  # what a thing is found by

WRITES = st.lists(  # (key, value or None to delete), one list per block
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.none() | st.integers(0, 8)), max_size=6),
    max_size=12,
)


def scanned(ov: Overlay, value: str) -> list[str]:
    return [k for k, v in ov.items("things") if str(v % 3) == value]


@settings(max_examples=200, deadline=None)
@given(blocks=WRITES, keep=st.lists(st.booleans(), min_size=12, max_size=12))
def test_lookup_equals_a_scan_in_every_block_and_after_it(
    blocks: list[list[tuple[str, int | None]]], keep: list[bool]
) -> None:
    store = Store(SCHEMA, INDEXES)
    for n, writes in enumerate(blocks):
        ov = Overlay(store)
        for key, value in writes:
            ov.put("things", key, value)
            for v in "012":  # mid-block: the journal's own writes count
                assert ov.lookup("things", v) == scanned(ov, v)
        ov.finish()
        if keep[n]:  # committed, or discarded (a proposal that lost its round)
            store.apply(ov)
        after = Overlay(store)
        for v in "012":
            assert after.lookup("things", v) == scanned(after, v)
    # Restore (load/unload) keeps it too.
    for key in list(store.tables["things"]):
        store.unload("things", key)
        store.load("things", key + "x", 4)
    view = Overlay(store)
    assert view.lookup("things", "1") == scanned(view, "1")
    assert view.lookup("things", "0") == view.lookup("things", "2") == []


def _five_certificates() -> Net:
    """Buyers b1 (3 trades) and b2 (2) of one solar seller, settled: five certificates."""
    net = Net(balances={"b1": 100_000, "b2": 100_000})
    f = "pea/x/f1"
    net.ok(
        net.register("gs", "s", f, ("pv", "solar", 600_000)),
        net.register("g1", "b1", f, ("m", "grid", 600_000)),
        net.register("g2", "b2", f, ("m", "grid", 600_000)),
    )
    x = T0 + 3 * MIN
    orders = [net.offer("gs", x, 500, 300, f)]
    orders += [net.bid(b, x, 50, 300, f) for b in ("b1", "b2", "b1", "b1", "b2")]
    net.ok(*orders)
    net.ok(net.read("gs", "pv", x, 0, 0, "solar"), at=x)
    net.ok(net.read("gs", "pv", x + MIN, 0, 500, "solar"), at=x + MIN)
    net.ok(at=x + MIN + 30_000)  # settled: one certificate per trade, owned by the buyer
    return net


def test_certificates_come_by_owner_and_in_pages() -> None:
    net = _five_certificates()
    view = net.app.view()
    mine: list[dict[str, Any]] = certificates_of(view, pub("b1"))
    assert len(mine) == 3
    assert all(c["owner"] == pub("b1") for c in mine)
    assert [c["id"] for c in mine] == sorted(c["id"] for c in mine)
    assert len(certificates_of(view, pub("b2"))) == 2
    assert certificates_of(view, pub("nobody")) == []
    every = certificates_of(view, None)
    assert [c["id"] for c in every] == sorted(
        c["id"] for c in mine + certificates_of(view, pub("b2"))
    )
    # Pages: from the last id seen, `limit` at a time, until an empty page.
    pages, after = [], ""
    while page := certificates_of(view, None, after, limit=2):
        pages.append(page)
        after = page[-1]["id"]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [c for p in pages for c in p] == every
    assert certificates_of(view, pub("b1"), mine[0]["id"], limit=1) == [mine[1]]


def test_the_api_says_where_the_next_page_starts() -> None:
    net = _five_certificates()
    app = FastAPI()
    app.include_router(state_router(lambda: net.app))
    with serve(app) as url:
        pages, after = [], ""
        while True:
            answer = httpx.get(f"{url}/v1/certificates", params={"after": after, "limit": 2})
            assert answer.status_code == 200
            pages.append([c["id"] for c in answer.json()])
            after = answer.headers.get("x-next-after", "")
            if not after:
                break
            assert after == pages[-1][-1]
        assert [len(p) for p in pages] == [2, 2, 1]
        every = httpx.get(f"{url}/v1/certificates").json()
        assert [c["id"] for c in every] == [i for p in pages for i in p]
        mine = httpx.get(f"{url}/v1/certificates", params={"owner": pub("b2")})
        assert len(mine.json()) == 2
        assert "x-next-after" not in mine.headers
        too_many = httpx.get(f"{url}/v1/certificates", params={"limit": 1001})
        assert too_many.status_code == 422
