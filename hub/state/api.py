"""HTTP routes over the committed state machine (FastAPI `APIRouter`), mounted by the hub API.

Interface with the node: `state_router(current)` takes a callable returning the node's
committed application (`lambda: node.app`). Each request takes one `view()` of it, so a
response never mixes two heights. A node whose application is not an `EnergyApp` (the
starter `TransferLedger`) answers 503. `hub.api.create_app` mounts it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from hub.state import queries
from hub.state.accounts import ACCOUNT_PATTERN
from hub.state.app import EnergyApp
from hub.state.state import State

__all__ = ["state_router"]

HEX64 = r"^[0-9a-f]{64}$"
ZONE = r"^[a-z0-9][a-z0-9_/-]{0,255}$"


StatementSigs = Callable[[int], list[tuple[str, str, int, str]]]
"""Signatures a node kept for an interval: (validator, statement hash, height, sig)."""


def state_router(
    current: Callable[[], object], statement_sigs: StatementSigs | None = None
) -> APIRouter:
    """Routes for accounts, devices, market, settlement, certificates, governance, params.

    Args:
        current: returns the node's committed application.
        statement_sigs: the node's verified statement signatures by interval (None: none).
    """
    router = APIRouter(prefix="/v1", tags=["state"])

    def view() -> State:
        app = current()
        if not isinstance(app, EnergyApp):
            raise HTTPException(503, detail="this node does not run the energy state machine")
        return app.view()

    @router.get("/accounts/{account}")
    async def get_account(
        account: str = Path(
            ..., pattern=ACCOUNT_PATTERN, description="public key (64 lowercase hex) or pool"
        ),
    ) -> dict[str, Any]:
        """Balance and escrow (satang), committed tx seq, roles, voting weight, gateways."""
        return queries.account_info(view(), account)

    @router.get("/devices/{gateway}")
    async def get_device(
        gateway: str = Path(..., pattern=HEX64, description="gateway key, 64 lowercase hex"),
    ) -> dict[str, Any]:
        """A gateway's registration (owner, zone, devices, suspension) and last reads."""
        found = queries.device_info(view(), gateway)
        if found is None:
            raise HTTPException(404, detail=f"gateway {gateway[:16]}… is not registered")
        return found

    @router.get("/market/book")
    async def get_book(
        interval: int = Query(..., description="delivery interval start, unix ms"),
        zone: str | None = Query(None, pattern=ZONE, description="zone (and sub-zones)"),
    ) -> dict[str, Any]:
        """Open offers (cheapest first) and bids (dearest first) of an interval."""
        return queries.book_view(view(), interval, zone)

    @router.get("/market/orders/{order}")
    async def get_order(order: str) -> dict[str, Any]:
        """One order by id, whatever its status."""
        found = queries.order_info(view(), order)
        if found is None:
            raise HTTPException(404, detail=f"no order {order[:16]}…")
        return found

    @router.get("/market/trades")
    async def get_trades(interval: int = Query(..., description="interval start, unix ms")) -> Any:
        """Trades of an interval in the order they were made."""
        return queries.trades_of(view(), interval)

    @router.get("/market/price")
    async def get_price(
        interval: int = Query(..., description="interval start, unix ms"),
        zone: str = Query(..., pattern=ZONE),
    ) -> dict[str, Any]:
        """Reference price: volume-weighted trade price (satang/kWh) of a zone and interval."""
        return queries.reference_price(view(), interval, zone)

    @router.get("/settlements")
    async def get_settlements(
        interval: int = Query(..., description="interval start, unix ms"),
    ) -> Any:
        """Settlement records of an interval's trades (empty until settled)."""
        return queries.settlements_of(view(), interval)

    @router.get("/statements/{interval}")
    async def get_statement(interval: int) -> dict[str, Any]:
        """The statement of a settled interval, its hash, and the validators' signatures.

        `certified` is true once 2f+1 of the statement's validators signed this very hash
        (each `sig` verifies with `hub.state.settlement.verify_statement`).
        """
        st = view()
        found = queries.statement_of(st, interval)
        if found is None:
            raise HTTPException(404, detail=f"interval {interval} is not settled yet")
        sigs = statement_sigs(interval) if statement_sigs is not None else []
        found.update(queries.statement_certificate(found, sigs))
        return found

    @router.get("/certificates")
    async def get_certificates(
        owner: str | None = Query(None, pattern=HEX64),
        after: str = Query("", max_length=200),
        limit: int = Query(queries.CERTIFICATE_PAGE, ge=1, le=queries.CERTIFICATE_PAGE),
    ) -> Any:
        """Renewable energy certificates (of one owner), in id order, one page at a time.

        At most `limit` (1,000) with ids above `after`. When there are more, the header
        `X-Next-After` holds the id to pass as `after` for the next page.
        """
        page = queries.certificates_of(view(), owner, after, limit + 1)
        if len(page) <= limit:
            return page
        page = page[:limit]
        return JSONResponse(page, headers={"X-Next-After": page[-1]["id"]})

    @router.get("/proposals")
    async def get_proposals() -> Any:
        """Governance proposals with their votes and outcome."""
        return queries.proposals_view(view())

    @router.get("/params")
    async def get_params() -> dict[str, Any]:
        """Chain parameters, per-zone feeder capacities, validator set."""
        return queries.params_view(view())

    return router
