"""The gateway's state as one value, rendered for `gtx edge status` and Prometheus. Pure.

The daemon builds a `Snapshot` from the buses, the uplink and the outbox; this module renders
it as JSON (the status file), as text for people, and as Prometheus exposition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wire.prometheus import family, labels

STALE_AFTER_MS = 15_000
"""A status file older than this means the daemon is not running (it writes every 2 s)."""

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
"""Upper bounds of the publish-latency histogram (PUBLISH to PUBACK), ms."""


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One device's health."""

    name: str
    """Device name."""
    bus: str
    """Bus it is polled on."""
    describe: str
    """Operator-facing identity (profile, transport, unit)."""
    state: str
    """`ok`, `failing` (recent failures), `degraded` (polled rarely) or `unknown`."""
    polls: int
    """Polls attempted since start."""
    errors: int
    """Failed polls since start (no answer, exception, garbage, rejected)."""
    rejected: int
    """Readings that answered but failed the sanity checks."""
    last_ok_ms: int | None
    """Time of the last good reading, unix ms."""
    last_error: str
    """The last failure."""
    error_kinds: Mapping[str, int] = field(default_factory=dict)
    """Failures by error class (DeviceTimeout, ModbusException, FrameError ...)."""


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative-bucket histogram of integer milliseconds."""

    counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS_MS) + 1)
    """Observations per bucket (the last is +Inf), not cumulative."""
    total_ms: int = 0
    """Sum of observations, ms."""

    def observe(self, value_ms: int) -> Histogram:
        """The histogram with one more observation."""
        index = next(
            (i for i, bound in enumerate(LATENCY_BUCKETS_MS) if value_ms <= bound),
            len(LATENCY_BUCKETS_MS),
        )
        counts = list(self.counts)
        counts[index] += 1
        return Histogram(tuple(counts), self.total_ms + value_ms)


@dataclass(frozen=True, slots=True)
class CommitStatus:
    """What the gateway knows of its tx stream on chain (`keep_tx_until = "committed"`)."""

    hub_url: str
    """The validator API asked."""
    committed_seq: int | None
    """Last committed seq of the tx stream, None before the first answer."""
    awaiting: int
    """tx messages the broker acknowledged that are not committed yet."""
    errors: int
    """Failed questions since start."""
    last_error: str | None
    """The last failure, None once the hub answers again."""
    registered: bool | None = None
    """Whether the hub knows this gateway as registered; None before it said."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole gateway at one instant."""

    gateway: str
    """Public key, 64 hex."""
    chain: str
    """Chain id."""
    zone: str
    """Grid zone."""
    pid: int
    """Daemon process id."""
    started_ms: int
    """Daemon start, unix ms."""
    now_ms: int
    """When the snapshot was taken."""
    broker_connected: bool
    """Whether the uplink is connected."""
    broker_url: str
    """Broker address."""
    devices: tuple[DeviceStatus, ...]
    """Every configured device."""
    outbox: Mapping[str, int]
    """Messages waiting per stream."""
    outbox_unpublished: int
    """Messages without a PUBACK yet."""
    outbox_bytes: int
    """Payload bytes in the outbox."""
    published: Mapping[str, int]
    """Messages acknowledged by the broker since start, per stream."""
    last_publish_ms: int | None
    """Last PUBACK, unix ms."""
    thinned: int
    """Telemetry messages dropped by the quota since start."""
    latency: Histogram
    """PUBLISH-to-PUBACK latency."""
    commits: CommitStatus | None = None
    """Commit tracking, None unless tx messages are kept until committed."""


def to_obj(s: Snapshot) -> dict[str, Any]:
    """The snapshot as a JSON object (what `status.json` holds)."""
    return {
        "gateway": s.gateway,
        "chain": s.chain,
        "zone": s.zone,
        "pid": s.pid,
        "started_ms": s.started_ms,
        "now_ms": s.now_ms,
        "broker": {"connected": s.broker_connected, "url": s.broker_url},
        "devices": [
            {
                "name": d.name,
                "bus": d.bus,
                "describe": d.describe,
                "state": d.state,
                "polls": d.polls,
                "errors": d.errors,
                "rejected": d.rejected,
                "last_ok_ms": d.last_ok_ms,
                "last_error": d.last_error,
                "error_kinds": dict(d.error_kinds),
            }
            for d in s.devices
        ],
        "outbox": {
            "messages": dict(s.outbox),
            "unpublished": s.outbox_unpublished,
            "bytes": s.outbox_bytes,
            "thinned": s.thinned,
        },
        "published": dict(s.published),
        "last_publish_ms": s.last_publish_ms,
        "commits": None
        if s.commits is None
        else {
            "hub_url": s.commits.hub_url,
            "committed_seq": s.commits.committed_seq,
            "awaiting": s.commits.awaiting,
            "errors": s.commits.errors,
            "last_error": s.commits.last_error,
            "registered": s.commits.registered,
        },
    }


def _ago(now_ms: int, then_ms: int | None) -> str:
    if then_ms is None:
        return "never"
    seconds = max(0, now_ms - then_ms) // 1000
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _broker_state(connected: bool, running: bool) -> str:
    # A stopped daemon holds no connection, whatever its last status said.
    if not running:
        was = "connected" if connected else "disconnected"
        return f"NOT CONNECTED (daemon not running; {was} when it last wrote its status)"
    return "connected" if connected else "DISCONNECTED"


def describe(obj: Mapping[str, Any], now_ms: int) -> str:
    """Human-readable status from a `to_obj` object (possibly read back from disk)."""
    age = now_ms - int(obj.get("now_ms", 0))
    running = age <= STALE_AFTER_MS
    lines = [
        f"gateway {obj['gateway']} on chain {obj['chain']}, zone {obj['zone']}",
        f"daemon: {'running' if running else 'NOT RUNNING'} (pid {obj['pid']}, "
        f"status written {_ago(now_ms, obj.get('now_ms'))})",
        f"broker: {obj['broker']['url']} {_broker_state(obj['broker']['connected'], running)}",
        f"outbox: {obj['outbox']['unpublished']} unpublished, "
        + ", ".join(f"{k} {v}" for k, v in obj["outbox"]["messages"].items())
        + f", {obj['outbox']['bytes']} bytes, {obj['outbox']['thinned']} thinned",
        f"last publish: {_ago(now_ms, obj.get('last_publish_ms'))}",
    ]
    commits = obj.get("commits")
    if commits:
        seq = commits["committed_seq"]
        known = {True: "registered", False: "NOT registered yet", None: "registration unknown"}
        line = (
            f"chain: {known[commits.get('registered')]}, "
            f"committed tx seq {'unknown' if seq is None else seq}, "
            f"{commits['awaiting']} tx awaiting commit (asking {commits['hub_url']})"
        )
        if commits["last_error"]:
            line += f"\n    {commits['last_error']}"
        lines.append(line)
    lines.append("devices:")
    for d in obj["devices"]:
        line = (
            f"  {d['name']:<16} {d['state']:<9} last read {_ago(now_ms, d['last_ok_ms'])}, "
            f"{d['polls']} polls, {d['errors']} errors, {d['rejected']} rejected"
        )
        if d["state"] != "ok" and d["last_error"]:
            line += f"\n    {d['last_error']}"
        lines.append(line)
    return "\n".join(lines)


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def render_metrics(s: Snapshot) -> str:
    """Prometheus text exposition (version 0.0.4) of the snapshot."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, str]]) -> None:
        out.extend(family(name, kind, help_text, samples))

    devs = s.devices
    metric(
        "gtx_edge_polls_total",
        "counter",
        "Device polls attempted.",
        [(labels(device=d.name), str(d.polls)) for d in devs],
    )
    metric(
        "gtx_edge_poll_errors_total",
        "counter",
        "Failed polls by error kind.",
        [
            (labels(device=d.name, kind=k), str(n))
            for d in devs
            for k, n in sorted(d.error_kinds.items())
        ],
    )
    metric(
        "gtx_edge_readings_rejected_total",
        "counter",
        "Readings that failed the sanity checks (never published).",
        [(labels(device=d.name), str(d.rejected)) for d in devs],
    )
    metric(
        "gtx_edge_last_read_timestamp_seconds",
        "gauge",
        "Unix time of the last good reading.",
        [(labels(device=d.name), _seconds(d.last_ok_ms)) for d in devs if d.last_ok_ms is not None],
    )
    metric(
        "gtx_edge_device_degraded",
        "gauge",
        "1 if the device is degraded (polled rarely).",
        [(labels(device=d.name), "1" if d.state == "degraded" else "0") for d in devs],
    )
    metric(
        "gtx_edge_outbox_messages",
        "gauge",
        "Messages waiting in the outbox.",
        [(labels(stream=k), str(v)) for k, v in sorted(s.outbox.items())],
    )
    metric(
        "gtx_edge_outbox_unpublished",
        "gauge",
        "Messages without a PUBACK yet.",
        [("", str(s.outbox_unpublished))],
    )
    metric(
        "gtx_edge_outbox_bytes",
        "gauge",
        "Payload bytes in the outbox.",
        [("", str(s.outbox_bytes))],
    )
    metric(
        "gtx_edge_outbox_thinned_total",
        "counter",
        "Telemetry dropped by the quota.",
        [("", str(s.thinned))],
    )
    metric(
        "gtx_edge_published_total",
        "counter",
        "Messages acknowledged by the broker.",
        [(labels(stream=k), str(v)) for k, v in sorted(s.published.items())],
    )
    metric(
        "gtx_edge_broker_connected",
        "gauge",
        "1 while connected to the broker.",
        [("", "1" if s.broker_connected else "0")],
    )
    if s.commits is not None:
        metric(
            "gtx_edge_tx_awaiting_commit",
            "gauge",
            "tx messages acknowledged by the broker, not yet committed by the chain.",
            [("", str(s.commits.awaiting))],
        )
        metric(
            "gtx_edge_hub_errors_total",
            "counter",
            "Failed questions to the hub about committed transactions.",
            [("", str(s.commits.errors))],
        )
        if s.commits.registered is not None:
            metric(
                "gtx_edge_registered",
                "gauge",
                "1 once the hub knows this gateway as registered (its reads count).",
                [("", "1" if s.commits.registered else "0")],
            )
    if s.last_publish_ms is not None:
        metric(
            "gtx_edge_last_publish_timestamp_seconds",
            "gauge",
            "Unix time of the last PUBACK.",
            [("", _seconds(s.last_publish_ms))],
        )
    samples: list[tuple[str, str]] = []
    running = 0
    for bound, count in zip((*LATENCY_BUCKETS_MS, None), s.latency.counts, strict=True):
        running += count
        le = "+Inf" if bound is None else _seconds(bound)
        samples.append((labels(le=le), str(running)))
    out.append("# HELP gtx_edge_publish_latency_seconds PUBLISH to PUBACK latency.")
    out.append("# TYPE gtx_edge_publish_latency_seconds histogram")
    out.extend(f"gtx_edge_publish_latency_seconds_bucket{lb} {v}" for lb, v in samples)
    out.append(f"gtx_edge_publish_latency_seconds_sum {_seconds(s.latency.total_ms)}")
    out.append(f"gtx_edge_publish_latency_seconds_count {running}")
    return "\n".join(out) + "\n"
