"""SunSpec discovery: find the `SunS` marker and walk the model chain.

A SunSpec device holds, at one of a few base addresses (40000, 50000 or 0 in holding
registers), the marker 0x5375 0x6E53 ("SunS"), followed by models laid end to end: each
starts with its model id and its length L in registers (not counting those two), and the
chain ends with id 0xFFFF. Discovery is a sans-I/O state machine (`Discovery`: ask
`next_read()`, `feed()` the registers) plus a small async driver (`discover`) that takes a
read function, so the same logic serves the gateway and the tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from hw.plan import ReadRequest
from hw.profile import PointSpec, Profile

SUNS_MARKER = (0x5375, 0x6E53)
"""Registers spelling "SunS" at the base address."""

END_MODEL_ID = 0xFFFF
"""Model id that ends the chain."""

DEFAULT_BASES = (40000, 50000, 0)
"""Base addresses tried in order when a profile does not say otherwise."""

MODEL_LENGTHS = {1: 66, 101: 50, 102: 50, 103: 50, 120: 26, 123: 24}
"""Fixed length L of the models this project knows (registers after ID and L)."""

MAX_MODELS = 64
"""Chains longer than this are treated as garbage rather than walked forever."""


class SunSpecError(ValueError):
    """Discovery failed: no marker, a broken chain, or a model the profile needs is absent."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model found in the chain."""

    model_id: int
    """SunSpec model id (1 common, 103 three-phase inverter, ...)."""
    address: int
    """Absolute address of the model's ID register (offset 0 of the model)."""
    length: int
    """L: registers in the model after ID and L."""


@dataclass(frozen=True, slots=True)
class SunSpecMap:
    """Where a device's SunSpec models live."""

    base: int
    """Address of the `SunS` marker."""
    models: tuple[ModelEntry, ...]
    """Models in chain order."""

    @property
    def model_ids(self) -> tuple[int, ...]:
        """Model ids in chain order."""
        return tuple(m.model_id for m in self.models)

    def find(self, model_ids: Sequence[int]) -> ModelEntry | None:
        """The first model in the chain whose id is one of `model_ids`."""
        for entry in self.models:
            if entry.model_id in model_ids:
                return entry
        return None


class Discovery:
    """Sans-I/O SunSpec discovery.

    Loop: `request = d.next_read()`; if it is None discovery is over and `d.result()`
    returns the map or raises; otherwise read the holding registers and call
    `d.feed(registers)`, or `d.feed(None)` if the device rejected the address (Modbus
    exception 2). Transport failures are the caller's to raise.
    """

    def __init__(self, bases: Sequence[int] = DEFAULT_BASES) -> None:
        """Start looking at `bases`, in order."""
        if not bases:
            raise SunSpecError("no base addresses to search for the SunS marker")
        self._bases = tuple(bases)
        self._base_index = 0
        self._base: int | None = None
        self._cursor = 0
        self._models: list[ModelEntry] = []
        self._done = False
        self._error: str | None = None

    def next_read(self) -> ReadRequest | None:
        """The next read to perform, or None when discovery has finished."""
        if self._done:
            return None
        if self._base is None:
            return ReadRequest("holding", self._bases[self._base_index], 2)
        return ReadRequest("holding", self._cursor, 2)

    def feed(self, registers: Sequence[int] | None) -> None:
        """Give the registers read for the last `next_read()`, or None if rejected."""
        if self._done:
            raise SunSpecError("discovery already finished")
        if self._base is None:
            self._feed_marker(registers)
        else:
            self._feed_header(registers)

    def _feed_marker(self, registers: Sequence[int] | None) -> None:
        if registers is not None and tuple(registers) == SUNS_MARKER:
            self._base = self._bases[self._base_index]
            self._cursor = self._base + 2
            return
        self._base_index += 1
        if self._base_index >= len(self._bases):
            self._finish(
                "no SunS marker (0x5375 0x6E53) in holding registers at "
                f"{', '.join(str(b) for b in self._bases)}; is this a SunSpec device and "
                "is the unit id right?"
            )

    def _feed_header(self, registers: Sequence[int] | None) -> None:
        if registers is None or len(registers) != 2:
            self._finish(
                f"model chain broken: cannot read the model header at {self._cursor} "
                f"after models {[m.model_id for m in self._models]}"
            )
            return
        model_id, length = registers[0], registers[1]
        if model_id == END_MODEL_ID:
            self._finish(None)
            return
        if model_id == 0 or len(self._models) >= MAX_MODELS:
            self._finish(
                f"model chain broken at {self._cursor}: id {model_id} after "
                f"{len(self._models)} models; expected a model id or the end marker 0xFFFF"
            )
            return
        known = MODEL_LENGTHS.get(model_id)
        if known is not None and known != length:
            self._finish(
                f"model {model_id} at {self._cursor} has length {length}; SunSpec says {known}"
            )
            return
        self._models.append(ModelEntry(model_id, self._cursor, length))
        self._cursor += 2 + length
        if self._cursor > 0xFFFF - 1:
            self._finish(f"model chain runs past register 65535 after model {model_id}")

    def _finish(self, error: str | None) -> None:
        self._done = True
        self._error = error

    def result(self) -> SunSpecMap:
        """The discovered map.

        Raises:
            SunSpecError: discovery failed or has not finished.
        """
        if not self._done:
            raise SunSpecError("discovery has not finished")
        if self._error is not None:
            raise SunSpecError(self._error)
        if self._base is None:
            raise SunSpecError("no SunS marker found")
        return SunSpecMap(self._base, tuple(self._models))


ReadHolding = Callable[[int, int], Awaitable[Sequence[int] | None]]
"""`await read(address, count)`: registers, or None if the device rejects the address."""


async def discover(read: ReadHolding, bases: Sequence[int] = DEFAULT_BASES) -> SunSpecMap:
    """Run discovery against a device through `read`.

    Raises:
        SunSpecError: no marker or a broken chain. Errors raised by `read` propagate.
    """
    machine = Discovery(bases)
    while (request := machine.next_read()) is not None:
        machine.feed(await read(request.address, request.count))
    return machine.result()


def resolve_profile(profile: Profile, smap: SunSpecMap) -> Profile:
    """Turn a SunSpec profile's (model, offset) points into absolute addresses.

    Points in models the device lacks are dropped, unless they feed a measurement (or
    scale one), in which case the device does not fit the profile.

    Raises:
        SunSpecError: a model a measurement needs is missing, or an offset is beyond L+2.
    """
    needed = {p.name for p in profile.measured_points()}
    points: list[PointSpec] = []
    for spec in profile.points:
        if not spec.models:
            points.append(spec)
            continue
        entry = smap.find(spec.models)
        if entry is None:
            if spec.name in needed:
                raise SunSpecError(
                    f"{profile.name}: point {spec.name!r} needs model "
                    f"{' or '.join(str(m) for m in spec.models)}, but the device has models "
                    f"{list(smap.model_ids)}"
                )
            continue
        if spec.address + spec.count > entry.length + 2:
            raise SunSpecError(
                f"{profile.name}: point {spec.name!r} at offset {spec.address} is beyond "
                f"model {entry.model_id} (length {entry.length})"
            )
        points.append(dataclasses.replace(spec, address=entry.address + spec.address, models=()))
    return dataclasses.replace(profile, points=tuple(points))
