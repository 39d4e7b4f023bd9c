"""Meter reads: the hash chain of each device, its registers, and equivocation evidence.

A `meter_read` carries a device's cumulative registers at an interval boundary. It is
accepted when the gateway is registered and not suspended, the device is registered with
that source, the boundary is aligned and not in the future, its `prev` is the id of the
device's last read on chain, the registers never decrease, and the increase is one the
device's capacity could produce in the elapsed time.

A read with a valid chain position but impossible values fails (its reason is recorded)
yet still advances the chain, so one bad frame cannot lock a device out for good. The first
read the hub sees of a device (and the first after a reinstatement) may have any `prev`:
reads a gateway signed before it was registered never reached the chain.

Two different reads of one device for one boundary are evidence: the gateway is suspended
automatically and both reads are kept (`evidence` table).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.errors import TxRejected, Unregistered
from hub.state.record import Record
from hub.state.registry import gateway, set_suspended
from wire.envelope import Envelope
from wire.kinds import MeterRead

if TYPE_CHECKING:
    from hub.state.state import State

__all__ = ["MeterEvidence", "MeterState", "Point", "apply_meter_read", "interval_delta"]

ANY_PREV = ""
"""`MeterState.last_id` value meaning: the next read may have any `prev`."""
MS_PER_H = 3_600_000


@dataclass(frozen=True, slots=True)
class Point(Record):
    """A device's registers at one boundary."""

    interval: int
    """Boundary instant (start of the interval that follows), unix ms."""
    import_wh: int
    """Cumulative import register, Wh."""
    export_wh: int
    """Cumulative export register, Wh."""
    id: str
    """Message id of the read."""


@dataclass(frozen=True, slots=True)
class MeterState(Record):
    """What the chain knows of one device (table `meters`, key `gateway/device`)."""

    last_id: str
    """Id of the last read in the device's chain (`""`: the next may have any prev)."""
    last_interval: int
    """Boundary of that read, unix ms."""
    points: tuple[Point, ...]
    """Accepted reads recent enough to settle with, oldest first (the last holds the
    latest accepted registers)."""


@dataclass(frozen=True, slots=True)
class MeterEvidence(Record):
    """Two different signed reads of one device for one boundary (table `evidence`)."""

    gateway: str
    """Gateway that signed both."""
    device: str
    """Device name."""
    interval: int
    """Boundary both claim, unix ms."""
    first: Point
    """The read committed first."""
    second: Point
    """The conflicting read."""
    height: int
    """Height at which the conflict was committed."""


def _key(gw: str, device: str) -> str:
    return f"{gw}/{device}"


def apply_meter_read(st: State, tx: Envelope, body: MeterRead) -> str | None:
    """Apply a `meter_read`.

    Returns:
        None when accepted; a reason when it failed but still had effects (values refused
        but chain advanced, or evidence recorded and the gateway suspended).

    Raises:
        TxRejected: refused with no effect (unregistered, suspended, out of order, ...).
    """
    gw = gateway(st, tx.sender)
    if gw is None:
        raise Unregistered(
            f"unregistered: gateway {tx.sender[:16]}… is not registered; an installer "
            "must register it before its meter reads count"
        )
    if gw.suspended:
        raise TxRejected(f"gateway {tx.sender[:16]}… is suspended ({gw.reason})")
    dev = gw.device(body.device)
    if dev is None:
        names = ", ".join(d.name for d in gw.devices)
        raise TxRejected(f"device {body.device!r} is not registered on this gateway ({names})")
    if dev.source != body.source:
        raise TxRejected(f"device {body.device!r} is registered as {dev.source}, not {body.source}")
    step = st.params.interval_ms
    if body.interval % step:
        raise TxRejected(f"interval {body.interval} is not a boundary of {st.params.interval_s} s")
    if body.interval > st.time_ms:
        raise TxRejected(f"interval {body.interval} is in the future (block time {st.time_ms})")
    key = _key(tx.sender, body.device)
    ms: MeterState | None = st.get("meters", key)
    tid = tx.message_id()
    here = Point(body.interval, body.import_wh, body.export_wh, tid)
    if ms is not None and body.interval <= ms.last_interval:
        for p in ms.points:
            if p.interval == body.interval and p.id != tid:
                return _equivocation(st, tx.sender, body.device, p, here)
        raise TxRejected(
            f"out of order: boundary {body.interval} of {body.device!r} is not after the last "
            f"read's {ms.last_interval}"
        )
    if ms is not None and ms.last_id != ANY_PREV and body.prev != ms.last_id:
        raise TxRejected(
            f"out of order: prev {body.prev[:12]}… of {body.device!r} is not the last committed "
            f"read {ms.last_id[:12]}…; resend the missing reads in seq order"
        )
    problem = _value_problem(ms, body, dev.capacity_w)
    points = ms.points if ms is not None else ()
    if problem is None:
        keep_from = body.interval - 2 * step - st.params.grace_s * 1000
        points = (*(p for p in points if p.interval >= keep_from), here)
    st.put("meters", key, MeterState(last_id=tid, last_interval=body.interval, points=points))
    return problem


def _value_problem(ms: MeterState | None, body: MeterRead, capacity_w: int) -> str | None:
    if ms is None or not ms.points:
        return None
    last = ms.points[-1]
    for name, before, now in (
        ("import_wh", last.import_wh, body.import_wh),
        ("export_wh", last.export_wh, body.export_wh),
    ):
        if now < before:
            return f"{name} went backwards from {before} to {now} Wh; read refused"
        bound = capacity_w * (body.interval - last.interval) // MS_PER_H
        if now - before > bound:
            return (
                f"over capacity: {name} rose {now - before} Wh in "
                f"{(body.interval - last.interval) // 1000} s but {capacity_w} W can produce "
                f"at most {bound} Wh; read refused (fix the device's capacity_w or the meter)"
            )
    return None


def _equivocation(st: State, gw: str, device: str, first: Point, second: Point) -> str:
    reason = (
        f"equivocation: two different reads of {device!r} for boundary {first.interval} "
        f"({first.id[:12]}… and {second.id[:12]}…); gateway suspended, evidence kept"
    )
    ev = MeterEvidence(gw, device, first.interval, first, second, st.height)
    st.put("evidence", f"{gw}/{device}/{first.interval}", ev)
    set_suspended(st, gw, True, f"equivocating meter reads at height {st.height}")
    return reason


def resync(st: State, gw: str) -> None:
    """Let every device of `gw` start a fresh chain (after a reinstatement)."""
    g = gateway(st, gw)
    if g is None:
        return
    for d in g.devices:
        ms = st.get("meters", _key(gw, d.name))
        if ms is not None:
            st.put("meters", _key(gw, d.name), dataclasses.replace(ms, last_id=ANY_PREV))


def interval_delta(st: State, gw: str, device: str, interval: int) -> tuple[int, int] | None:
    """(import, export) Wh of a device in the interval starting at `interval`, or None.

    Known only when reads exist at both boundaries of the interval.
    """
    ms: MeterState | None = st.get("meters", _key(gw, device))
    if ms is None:
        return None
    end = interval + st.params.interval_ms
    start_p = end_p = None
    for p in ms.points:
        if p.interval == interval:
            start_p = p
        elif p.interval == end:
            end_p = p
    if start_p is None or end_p is None:
        return None
    return end_p.import_wh - start_p.import_wh, end_p.export_wh - start_p.export_wh
