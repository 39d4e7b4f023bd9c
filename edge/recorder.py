"""From a reading to signed, stored messages: intake checks, signing, the outbox transaction.

`Recorder` is what every bus calls with a fresh reading. It runs the pure intake
(`edge.intake.take_reading`): a reading that fails a sanity check is logged, counted and
never signed. An accepted one becomes a `telemetry` body and, at an interval boundary, a
`meter_read`; both are signed under freshly allocated seqs and stored in one outbox
transaction in the outbox thread, and the uplink is woken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nacl.signing import SigningKey

from edge.config import DeviceSettings, Settings
from edge.intake import DeviceMemory, take_reading
from edge.outbox import OutboxThread
from hw.measurement import Measurements
from wire.envelope import Envelope, sign
from wire.struct import Body

log = logging.getLogger("gtx.edge.recorder")


class Recorder:
    """Turns readings into stored, signed messages."""

    def __init__(
        self,
        settings: Settings,
        key: SigningKey,
        store: OutboxThread,
        memories: dict[str, DeviceMemory],
        on_stored: Callable[[], None],
    ) -> None:
        """A recorder signing with `key` into `store`, starting from the persisted memories."""
        self.settings = settings
        self.key = key
        self.store = store
        self.memories = memories
        self.on_stored = on_stored
        self.signed = 0
        """Messages signed and stored since start."""
        self.meter_reads = 0
        """meter_read messages among them."""

    async def __call__(
        self, device: DeviceSettings, reading: Measurements, now_ms: int
    ) -> tuple[str, ...]:
        """Check, sign and store one reading taken at `now_ms`.

        Returns:
            The problems that rejected the reading; empty when it was stored.

        Raises:
            OutboxError: the outbox cannot be written (the daemon stops; systemd restarts it).
        """
        memory = self.memories.get(device.name, DeviceMemory())
        intake = take_reading(
            device.spec,
            device.name,
            device.source,
            memory,
            reading,
            now_ms,
            self.settings.interval_ms,
        )
        if not intake.accepted:
            return intake.problems
        bodies: list[Body] = []
        if intake.telemetry is not None:
            bodies.append(intake.telemetry)
        if intake.meter_read is not None:
            bodies.append(intake.meter_read)
        chain = self.settings.chain
        key = self.key

        def signer(body: Body, seq: int) -> Envelope:
            return sign(key, chain, body, seq, now_ms)

        envelopes, stored = await self.store.call(
            self.store.outbox.store, device.name, bodies, intake.memory, signer
        )
        self.memories[device.name] = stored
        self.signed += len(envelopes)
        if intake.meter_read is not None:
            self.meter_reads += 1
            log.info(
                "%s: meter_read for interval %d: import %d Wh, export %d Wh",
                device.name,
                intake.meter_read.interval,
                intake.meter_read.import_wh,
                intake.meter_read.export_wh,
            )
        self.on_stored()
        return ()
