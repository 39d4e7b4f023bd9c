"""The bus scheduler's decisions: who is polled next on one bus, and when. Pure.

RS-485 is half duplex, so a bus carries one request at a time; the shell (`edge.bus`) asks
`next_poll` which device is due, reads it, and feeds the outcome back through
`after_success` or `after_failure`. Time is always an argument (unix ms).

Policy:

- A healthy device is polled on a grid of its `poll_ms` (so polls of devices with the same
  period line up) and also at every delivery-interval boundary, so a `meter_read` carries
  the counters of the boundary instant.
- A failed poll is retried after `retry_backoff_ms`, doubling per consecutive failure; the
  retry is scheduled, not done on the spot, so other devices on the bus go in between.
- After `degraded_after` consecutive failures a device is *degraded*: polled only every
  `degraded_poll_ms`, and never ahead of a healthy device that is due at the same time.
  One good answer makes it healthy again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge.intake import next_boundary

MAX_BACKOFF_MS = 60_000
"""Longest retry delay of a device that is not yet degraded."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Timing of one bus."""

    interval_ms: int
    """Delivery interval (polls also happen at its boundaries)."""
    retry_backoff_ms: int
    """First retry delay after a failure."""
    degraded_after: int
    """Consecutive failures that make a device degraded."""
    degraded_poll_ms: int
    """Poll period of a degraded device."""


@dataclass(frozen=True, slots=True)
class Health:
    """One device's standing on its bus."""

    poll_ms: int
    """Normal poll period."""
    due_ms: int = 0
    """When it should be polled next, unix ms."""
    failures: int = 0
    """Consecutive failed polls."""
    degraded: bool = False
    """Whether it stopped answering and is polled rarely."""
    last_ok_ms: int | None = None
    """Time of the last good reading, unix ms."""
    last_error: str = ""
    """The last failure, as an operator-facing sentence."""
    polls: int = 0
    """Polls attempted."""
    errors: int = 0
    """Polls failed (including rejected readings)."""


def next_poll(healths: Mapping[str, Health], order: Sequence[str]) -> tuple[str, int]:
    """The device to poll next and when (unix ms).

    Earliest due first; at equal due times healthy before degraded, then config order.

    Raises:
        ValueError: `order` is empty.
    """
    if not order:
        raise ValueError("a bus needs at least one device")
    best = min(
        range(len(order)),
        key=lambda i: (healths[order[i]].due_ms, healths[order[i]].degraded, i),
    )
    name = order[best]
    return name, healths[name].due_ms


def _aligned(now_ms: int, period_ms: int) -> int:
    return (now_ms // period_ms + 1) * period_ms


def after_success(health: Health, policy: Policy, now_ms: int) -> Health:
    """The device answered with a sane reading at `now_ms`."""
    due = min(_aligned(now_ms, health.poll_ms), next_boundary(now_ms, policy.interval_ms))
    return dataclasses.replace(
        health,
        due_ms=due,
        failures=0,
        degraded=False,
        last_ok_ms=now_ms,
        polls=health.polls + 1,
    )


def after_failure(health: Health, policy: Policy, now_ms: int, reason: str) -> Health:
    """The poll at `now_ms` failed (no answer, exception, garbage or an insane reading)."""
    failures = health.failures + 1
    degraded = failures >= policy.degraded_after
    if degraded:
        due = now_ms + max(policy.degraded_poll_ms, health.poll_ms)
    else:
        backoff = min(policy.retry_backoff_ms * 2 ** (failures - 1), MAX_BACKOFF_MS)
        due = now_ms + max(backoff, 1)
    return dataclasses.replace(
        health,
        due_ms=due,
        failures=failures,
        degraded=degraded,
        last_error=reason,
        polls=health.polls + 1,
        errors=health.errors + 1,
    )


def became_degraded(before: Health, after: Health) -> bool:
    """Whether this outcome just turned the device degraded (log it once)."""
    return after.degraded and not before.degraded
