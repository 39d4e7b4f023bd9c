"""Block sync over peers' HTTP APIs: find a peer that is ahead, fetch blocks in order.

Nothing fetched is trusted: the node feeds each block and certificate to its core, which
verifies the 2f+1 precommits and re-executes the block before storing it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from hub.errors import SyncError
from wire.consensus import Block, Commit
from wire.errors import InvalidMessage

__all__ = ["fetch_blocks", "peer_heights"]

log = logging.getLogger("gtx.hub.sync")


async def _status(http: httpx.AsyncClient, peer: str) -> dict[str, Any] | None:
    try:
        response = await http.get(f"{peer}/v1/status")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.debug("peer %s: status unavailable: %s", peer, exc)
        return None
    return data


async def peer_heights(http: httpx.AsyncClient, peers: Sequence[str], chain: str) -> dict[str, int]:
    """Committed height of each reachable peer serving `chain`."""
    heights: dict[str, int] = {}
    for peer in peers:
        status = await _status(http, peer)
        if status is not None and status.get("chain") == chain:
            height = status.get("height")
            if isinstance(height, int):
                heights[peer] = height
    return heights


async def fetch_blocks(
    http: httpx.AsyncClient,
    peers: Sequence[str],
    chain: str,
    start: int,
    limit: int = 200,
) -> AsyncIterator[tuple[Block, Commit]]:
    """Blocks `start`, `start`+1, ... (at most `limit`) from one peer that has them.

    Raises:
        SyncError: no reachable peer is at or above `start`, or the chosen peer served
            something that is not a block.
    """
    heights = await peer_heights(http, peers, chain)
    ahead = [p for p, h in heights.items() if h >= start]
    if not ahead:
        tried = ", ".join(peers) or "none configured"
        raise SyncError(f"no peer has block {start} (peers: {tried}; heights {heights})")
    peer = random.choice(ahead)  # noqa: S311 - load spreading, not crypto
    last = min(heights[peer], start + limit - 1)
    for height in range(start, last + 1):
        try:
            response = await http.get(f"{peer}/v1/blocks/{height}", params={"full": "true"})
            response.raise_for_status()
            obj = response.json()
            block = Block.from_json(obj["block"], "block")
            commit = Commit.from_json(obj["commit"], "commit")
        except (httpx.HTTPError, ValueError, KeyError, TypeError, InvalidMessage) as exc:
            raise SyncError(f"peer {peer} failed to serve block {height}: {exc}") from exc
        yield block, commit
