"""The hub's HTTP API (FastAPI; OpenAPI at `/openapi.json`).

* `GET  /v1/status`            chain, height, block_hash, state_hash, validators, syncing, ...
* `GET  /v1/blocks/{height}`   hash, header, tx ids, commit certificate (`?full=true`: the
                                whole block too — what peers sync from)
* `GET  /metrics`              the status as Prometheus text
* `GET  /v1/tx/{id}`           pending / committed (height, position) / rejected (reason)
* `POST /v1/tx`                a signed envelope as the raw JSON body; 202 with its id, or
                                400 with the reason it is refused

Handlers are coroutines, so they run on the node's event loop, between its steps: they read
its in-memory state and SQLite store while nothing changes them (FastAPI would run plain
`def` handlers in a thread pool, racing the loop that commits blocks).
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from hub.errors import MempoolFull, TxRejected
from hub.metrics import render_metrics
from hub.state.api import state_router
from wire.canonical import INT_MAX
from wire.errors import InvalidMessage

__all__ = ["NodeView", "create_app"]

MAX_BODY = 65_536


class NodeView(Protocol):
    """What the API needs from a running node."""

    def status(self) -> dict[str, Any]:
        """The status document."""
        ...

    def block_json(self, height: int, *, full: bool) -> dict[str, Any] | None:
        """A stored block as JSON, or None."""
        ...

    def tx_json(self, tx_id: str) -> dict[str, Any] | None:
        """Where a transaction is, or None if unknown."""
        ...

    def submit(self, data: bytes) -> str:
        """Verify and admit a signed transaction; returns its id.

        Raises:
            InvalidMessage: the envelope does not parse or verify.
            TxRejected: the mempool or the application refuses it.
        """
        ...


def create_app(node: NodeView) -> FastAPI:
    """The FastAPI application serving `node`."""
    app = FastAPI(
        title="GridTokenX hub",
        version="1",
        description=(
            "Validator and follower API: chain status, blocks, transactions, accounts, "
            "devices, market, settlement, certificates, governance."
        ),
    )

    @app.get("/v1/status")
    async def get_status() -> dict[str, Any]:
        """Chain id, committed height and hashes, validator set, sync state."""
        return node.status()

    @app.get("/metrics", response_class=PlainTextResponse)
    async def get_metrics() -> str:
        """The status as Prometheus text, for scraping."""
        return render_metrics(node.status())

    @app.get("/v1/blocks/{height}")
    async def get_block(
        # Bounded so that a height no chain can reach is refused here, not by SQLite (500).
        height: int = Path(..., ge=0, le=INT_MAX, description="block height"),
        full: bool = False,
    ) -> dict[str, Any]:
        """A committed block: hash, header, tx ids, commit certificate."""
        block = node.block_json(height, full=full)
        if block is None:
            raise HTTPException(404, detail=f"no block at height {height}")
        return block

    @app.get("/v1/tx/{tx_id}")
    async def get_tx(tx_id: str) -> dict[str, Any]:
        """Status of a transaction by id (SHA-256 hex of its envelope)."""
        found = node.tx_json(tx_id.lower())
        if found is None:
            raise HTTPException(404, detail=f"unknown transaction {tx_id}")
        return found

    @app.post("/v1/tx", status_code=202)
    async def post_tx(request: Request) -> JSONResponse:
        """Submit a signed transaction envelope (the raw JSON object as the body)."""
        data = await request.body()
        if len(data) > MAX_BODY:
            return JSONResponse({"reason": f"body over {MAX_BODY} bytes"}, status_code=413)
        try:
            tx_id = node.submit(data)
        except MempoolFull as exc:
            return JSONResponse({"reason": exc.reason}, status_code=503)
        except TxRejected as exc:
            return JSONResponse({"reason": exc.reason}, status_code=400)
        except InvalidMessage as exc:
            return JSONResponse({"reason": str(exc)}, status_code=400)
        return JSONResponse({"id": tx_id, "status": "pending"}, status_code=202)

    # Accounts, devices, market, settlement, certificates, governance: read from the node's
    # committed application state (503 when the node runs another application).
    app.include_router(
        state_router(
            lambda: getattr(node, "app", None), getattr(node, "statement_signatures", None)
        )
    )
    return app
