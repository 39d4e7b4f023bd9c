"""Prometheus text exposition of a node's status, for `GET /metrics` (pure).

Grid operators scrape every validator and follower: height and block time show a stalled
chain, `round` above 0 shows rounds failing, `syncing` a node catching up, the mempool and
its held part a backlog, and the counters the committed load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wire.prometheus import family, labels

__all__ = ["render_metrics"]


def render_metrics(status: Mapping[str, Any]) -> str:
    """The `GET /v1/status` document as Prometheus text (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: int | float) -> None:
        out.extend(family(name, kind, help_text, [("", str(value))]))

    node = labels(chain=str(status["chain"]), node=str(status["node"]), mode=str(status["mode"]))
    about = "The node: chain, key, validator or follower."
    out.extend(family("gtx_hub_info", "gauge", about, [(node, "1")]))
    since = status.get("since_start", {})
    metric("gtx_hub_height", "gauge", "Height of the committed head.", int(status["height"]))
    metric(
        "gtx_hub_head_time_seconds",
        "gauge",
        "Block time of the committed head, unix seconds.",
        int(status["time_ms"]) / 1000,
    )
    metric("gtx_hub_round", "gauge", "Consensus round at the next height.", int(status["round"]))
    metric("gtx_hub_syncing", "gauge", "1 while catching up from peers.", int(status["syncing"]))
    metric("gtx_hub_validators", "gauge", "Validators in the set.", len(status["validators"]))
    metric("gtx_hub_mempool_txs", "gauge", "Pending transactions.", int(status["mempool"]))
    metric(
        "gtx_hub_mempool_held",
        "gauge",
        "Pending gateway transactions waiting behind a missing seq.",
        int(status.get("mempool_held", 0)),
    )
    metric(
        "gtx_hub_mqtt_connected",
        "gauge",
        "1 while connected to the broker.",
        int(bool(status["mqtt_connected"])),
    )
    metric(
        "gtx_hub_blocks_committed_total",
        "counter",
        "Blocks committed since start.",
        int(since.get("blocks", 0)),
    )
    metric(
        "gtx_hub_txs_ok_total",
        "counter",
        "Transactions executed successfully since start.",
        int(since.get("txs_ok", 0)),
    )
    metric(
        "gtx_hub_txs_failed_total",
        "counter",
        "Transactions in blocks that failed (seq consumed, reason recorded) since start.",
        int(since.get("txs_failed", 0)),
    )
    return "\n".join(out) + "\n"
