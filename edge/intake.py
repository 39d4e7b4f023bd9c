"""What happens to one reading before it is signed: sanity checks and interval reads. Pure.

`take_reading` is fed a device's memory (what the gateway remembers of it, also across
restarts), a fresh `Measurements` and the time; it returns the bodies to sign and the new
memory, or the problems that keep the reading from ever being published.

Rules:

- Values must lie inside the profile's physical limits (`hw.decode.plausibility_problems`).
- Cumulative registers (import_wh, export_wh) never go backwards. A reading whose counters
  are below the last accepted ones is rejected, and the memory keeps the old values, so a
  single garbage frame cannot lower the reference.
- `meter_read` is due at the first accepted reading in a delivery interval the device has no
  meter_read for yet; its `interval` is the interval's start (the boundary instant). A
  gateway that was down across several boundaries writes one for the current interval only:
  it cannot know the counters at instants it did not observe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hw.decode import plausibility_problems
from hw.measurement import Measurements
from hw.profile import Profile
from wire.kinds import MeterRead, Source, Telemetry

GENESIS = "0" * 64
"""`prev` of a device's first meter_read."""


@dataclass(frozen=True, slots=True)
class DeviceMemory:
    """What the gateway remembers of one device (persisted in the outbox database)."""

    import_wh: int | None = None
    """Last accepted cumulative import register, Wh."""
    export_wh: int | None = None
    """Last accepted cumulative export register, Wh."""
    read_interval: int | None = None
    """Interval start (unix ms) of the last meter_read written, or None."""
    read_id: str = GENESIS
    """Message id of the last meter_read written (the next one's `prev`)."""


@dataclass(frozen=True, slots=True)
class Intake:
    """The outcome of one reading."""

    problems: tuple[str, ...]
    """Why the reading was rejected; empty when accepted."""
    memory: DeviceMemory
    """The device's memory after this reading (unchanged when rejected)."""
    telemetry: Telemetry | None = None
    """Telemetry body to sign, when accepted."""
    meter_read: MeterRead | None = None
    """Interval read to sign (its `prev` is already set), when one is due."""

    @property
    def accepted(self) -> bool:
        """Whether the reading passed every check."""
        return not self.problems


def interval_start(now_ms: int, interval_ms: int) -> int:
    """Start (unix ms) of the delivery interval containing `now_ms`."""
    return now_ms - now_ms % interval_ms


def next_boundary(now_ms: int, interval_ms: int) -> int:
    """The first interval boundary strictly after `now_ms`."""
    return interval_start(now_ms, interval_ms) + interval_ms


def reading_problems(profile: Profile, memory: DeviceMemory, reading: Measurements) -> list[str]:
    """Every reason to reject `reading`, as sentences; empty when it is sane."""
    problems = plausibility_problems(profile, reading)
    for name, before, now in (
        ("import_wh", memory.import_wh, reading.import_wh),
        ("export_wh", memory.export_wh, reading.export_wh),
    ):
        if before is not None and now is not None and now < before:
            problems.append(f"{name} went backwards from {before} to {now} Wh")
        if before is not None and now is None:
            problems.append(f"{name} missing although the device reported it before")
    return problems


def take_reading(
    profile: Profile,
    device: str,
    source: Source,
    memory: DeviceMemory,
    reading: Measurements,
    now_ms: int,
    interval_ms: int,
) -> Intake:
    """Check a reading and decide what to sign.

    Args:
        profile: the device's profile (physical limits).
        device: device name, as in the config.
        source: the device's energy source, for meter_read.
        memory: what the gateway remembers of the device.
        reading: the fresh measurements.
        now_ms: when the reading was taken, unix ms.
        interval_ms: delivery interval length, ms.

    Returns:
        Rejected with problems, or accepted with a telemetry body and maybe a meter_read.
    """
    problems = reading_problems(profile, memory, reading)
    if problems:
        return Intake(problems=tuple(problems), memory=memory)
    fields = reading.as_body_fields()
    telemetry = Telemetry(device=device, **fields)
    memory = dataclasses.replace(
        memory,
        import_wh=reading.import_wh if reading.import_wh is not None else memory.import_wh,
        export_wh=reading.export_wh if reading.export_wh is not None else memory.export_wh,
    )
    start = interval_start(now_ms, interval_ms)
    meter_read = None
    if memory.read_interval is None or start > memory.read_interval:
        meter_read = MeterRead(
            device=device,
            interval=start,
            import_wh=fields["import_wh"],
            export_wh=fields["export_wh"],
            source=source,
            prev=memory.read_id,
        )
    return Intake(problems=(), memory=memory, telemetry=telemetry, meter_read=meter_read)


def after_meter_read(memory: DeviceMemory, read: MeterRead, message_id: str) -> DeviceMemory:
    """The memory once `read` was signed and stored as message `message_id`."""
    return dataclasses.replace(memory, read_interval=read.interval, read_id=message_id)
