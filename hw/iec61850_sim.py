"""A simulated IEC 61850 energy meter: an MMS server built on libiec61850 (`pyiec61850`).

The data model is built at run time (no SCL file) and follows IEC 61850-7-4:

```
<ied_name><ld_name>            e.g. GTXMeterLD0, the MMS domain a client names
  LLN0    Mod, Beh, Health (ENS, stVal 1 = on / ok), NamPlt (LPL)
  MMXU1   TotW  (MV)   total active power, W          TotW.mag.f        [MX]
          Hz    (MV)   frequency, Hz                  Hz.mag.f          [MX]
          PhV   (WYE)  phase-to-neutral voltage, V    PhV.phsA.cVal.mag.f (and phsB, phsC)
          W     (WYE)  per-phase active power, W      W.phsA.cVal.mag.f (and phsB, phsC)
  MMTR1   SupWh (BCR)  energy supplied (exported), Wh SupWh.actVal INT64 [ST]
          DmdWh (BCR)  energy demanded (imported), Wh DmdWh.actVal INT64 [ST]
```

Every value has its quality `q` and timestamp `t` beside it. Values are pushed in with
`Iec61850MeterServer.update`; the server holds no physics of its own. A quantity that the
pushed `Measurements` leaves as `None` keeps its last value and gets quality *invalid*, so
a client can tell "not measured" from zero. Until the first update every quality is
invalid.

Sign convention: `TotW` is reported exactly as `Measurements.power_w` is given (for a meter,
positive = import).

libiec61850 serves from its own C threads, which never call back into Python, so a client
in the same process (tests) works. It needs a concrete TCP port (port 0 is refused here).
"""

from __future__ import annotations

import signal
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pyiec61850 as iec

from hw import physics
from hw.measurement import Measurements

DEFAULT_IED_NAME: Final = "GTXMeter"
"""IED name; with the LD inst it forms the MMS domain name (`GTXMeterLD0`)."""
DEFAULT_LD_NAME: Final = "LD0"
"""Logical device inst."""
DEFAULT_INTERVAL_MS: Final = 1000
"""How often `serve` pushes a new reading into the model."""

_INT64_MAX: Final = 2**63 - 1

# Phase keys of `Measurements.phases` that have a point in the model. Phase 1 voltage is
# `Measurements.voltage_dv` itself (PhV.phsA), so it has no phase key.
PHASE_POINTS: Final[dict[str, str]] = {
    "power_l1_w": "MMXU1.W.phsA",
    "power_l2_w": "MMXU1.W.phsB",
    "power_l3_w": "MMXU1.W.phsC",
    "voltage_l2_dv": "MMXU1.PhV.phsB",
    "voltage_l3_dv": "MMXU1.PhV.phsC",
}
"""`Measurements.phases` key -> data object (relative to the LD) that carries it."""


@dataclass(frozen=True, slots=True)
class _Point:
    """One measured quantity's attributes in the model."""

    value: Any
    """DataAttribute of the value (FLOAT32 `mag.f` / `cVal.mag.f`, or INT64 `actVal`)."""
    quality: Any
    """DataAttribute `q`."""
    timestamp: Any
    """DataAttribute `t`."""
    is_counter: bool
    """True for a BCR INT64 Wh counter, False for a FLOAT32 analogue value."""
    scale: int
    """Integer units per SI unit: 1 for W and Wh, 10 for decivolts, 1000 for millihertz."""


class Iec61850MeterServer:
    """An MMS server exposing one meter's MMXU and MMTR logical nodes.

    Use as a context manager or call `start` and `stop`. `update` may be called from any
    thread while the server runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 102,
        ld_name: str = DEFAULT_LD_NAME,
        *,
        ied_name: str = DEFAULT_IED_NAME,
    ) -> None:
        """Describe the server; nothing is opened until `start`.

        Args:
            host: IP address to listen on (`127.0.0.1` for loopback only); `""` or
                `0.0.0.0` listens on every interface.
            port: TCP port, 1-65535 (102 is the MMS standard port and needs root).
            ld_name: logical device inst, e.g. `LD0`.
            ied_name: IED name; the MMS domain is `ied_name + ld_name`.

        Raises:
            ValueError: a name or the port is unusable, with what to change.
        """
        if not 1 <= port <= 65535:
            raise ValueError(
                f"iec61850 server port {port} is out of range: libiec61850 needs a concrete "
                "port 1-65535 (it cannot bind port 0; pick a free port first)"
            )
        for what, name in (("ld_name", ld_name), ("ied_name", ied_name)):
            if not name or not name.isascii() or not name.replace("_", "").isalnum():
                raise ValueError(
                    f"iec61850 server {what} {name!r} must be non-empty ASCII letters, digits "
                    "or underscores (it becomes part of the MMS domain name)"
                )
        if len(ied_name + ld_name) > 64:
            raise ValueError(
                f"iec61850 domain name {ied_name + ld_name!r} is longer than the 64 characters "
                "MMS allows; shorten ied_name or ld_name"
            )
        self.host = host
        self.port = port
        self.ld_name = ld_name
        self.ied_name = ied_name
        self._model: Any = None
        self._server: Any = None
        self._points: dict[str, _Point] = {}
        self._lock = threading.Lock()

    @property
    def domain(self) -> str:
        """MMS domain (full logical device name) a client names, e.g. `GTXMeterLD0`."""
        return self.ied_name + self.ld_name

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None and bool(iec.IedServer_isRunning(self._server))

    def __enter__(self) -> Iec61850MeterServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Build the data model and start listening.

        Raises:
            RuntimeError: the server is already started.
            OSError: libiec61850 could not listen on host:port (port in use, address not
                local, or a privileged port without root).
        """
        with self._lock:
            if self._server is not None:
                raise RuntimeError(f"iec61850 server {self._label()} is already started")
            model = iec.IedModel_create(self.ied_name)
            self._points = _build_model(model, self.ld_name, self.domain)
            server = iec.IedServer_create(model)
            iec.IedServer_setServerIdentity(server, "GridTokenX", "iec61850-meter sim", "1")
            if self.host not in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
                iec.IedServer_setLocalIpAddress(server, self.host)
            iec.IedServer_start(server, self.port)
            if not iec.IedServer_isRunning(server):
                iec.IedServer_destroy(server)
                iec.IedModel_destroy(model)
                self._points = {}
                raise OSError(
                    f"iec61850 server {self._label()} could not listen: the port is in use, "
                    "the address is not on this host, or the port is below 1024 without root"
                )
            self._model = model
            self._server = server
            self._set_initial_values()

    def stop(self) -> None:
        """Stop listening, close client connections and free the model. Idempotent."""
        with self._lock:
            server, model = self._server, self._model
            self._server = self._model = None
            self._points = {}
        if server is not None:
            iec.IedServer_stop(server)
            iec.IedServer_destroy(server)
        if model is not None:
            iec.IedModel_destroy(model)

    def update(self, measurements: Measurements, ts_ms: int) -> None:
        """Publish one reading: every value, its quality and its timestamp, atomically.

        A client never sees half an update for a single request. `None` quantities and
        phase points missing from `measurements.phases` keep their old value and become
        quality invalid. Phase keys without a point in the model (see `PHASE_POINTS`) are
        ignored.

        Args:
            measurements: the reading, in integer units.
            ts_ms: time of the reading, unix milliseconds; becomes every `t`.

        Raises:
            RuntimeError: the server is not started.
            ValueError: a counter is negative or beyond INT64, or ts_ms is negative.
        """
        if ts_ms < 0:
            raise ValueError(f"ts_ms must be unix milliseconds >= 0, got {ts_ms}")
        values = _values_by_point(measurements)
        for name in ("import_wh", "export_wh"):
            wh = getattr(measurements, name)
            if wh is not None and not 0 <= wh <= _INT64_MAX:
                raise ValueError(
                    f"{name}={wh} cannot be served: an MMTR counter is a non-negative INT64"
                )
        with self._lock:
            server = self._server
            if server is None:
                raise RuntimeError(f"iec61850 server {self._label()} is not started")
            iec.IedServer_lockDataModel(server)
            try:
                for key, point in self._points.items():
                    _write_point(server, point, values.get(key), ts_ms)
            finally:
                iec.IedServer_unlockDataModel(server)

    def invalidate(self, ts_ms: int) -> None:
        """Mark every value quality invalid, as a meter does on an internal fault.

        Args:
            ts_ms: time of the fault, unix milliseconds.

        Raises:
            RuntimeError: the server is not started.
        """
        self.update(Measurements(), ts_ms)

    def _set_initial_values(self) -> None:
        """LLN0 status and name plate; measured values invalid until the first update."""
        server, model = self._server, self._model
        prefix = f"{self.domain}/LLN0."
        iec.IedServer_lockDataModel(server)
        try:
            for name in ("Mod", "Beh", "Health"):
                attr = _attribute(model, prefix + name + ".stVal")
                iec.IedServer_updateInt32AttributeValue(server, attr, 1)  # on / Ok
            for name, text in (("vendor", "GridTokenX"), ("swRev", "1")):
                attr = _attribute(model, prefix + "NamPlt." + name)
                iec.IedServer_updateVisibleStringAttributeValue(server, attr, text)
            for point in self._points.values():
                _write_point(server, point, None, 0)
        finally:
            iec.IedServer_unlockDataModel(server)

    def _label(self) -> str:
        return f"{self.host or '*'}:{self.port} {self.domain}"


def _build_model(model: Any, ld_name: str, domain: str) -> dict[str, _Point]:
    """Create LD, LLN0, MMXU1 and MMTR1 under `model`; return the points by `_values` key."""
    ld = iec.LogicalDevice_create(ld_name, model)
    lln0 = iec.toModelNode(iec.LogicalNode_create("LLN0", ld))
    for name in ("Mod", "Beh", "Health"):
        iec.CDC_ENS_create(name, lln0, 0)
    iec.CDC_LPL_create("NamPlt", lln0, 0)
    mmxu = iec.toModelNode(iec.LogicalNode_create("MMXU1", ld))
    iec.CDC_MV_create("TotW", mmxu, 0, False)
    iec.CDC_MV_create("Hz", mmxu, 0, False)
    iec.CDC_WYE_create("PhV", mmxu, 0)
    iec.CDC_WYE_create("W", mmxu, 0)
    mmtr = iec.toModelNode(iec.LogicalNode_create("MMTR1", ld))
    iec.CDC_BCR_create("SupWh", mmtr, 0)
    iec.CDC_BCR_create("DmdWh", mmtr, 0)

    def analogue(obj: str, value: str, scale: int) -> _Point:
        base = f"{domain}/{obj}."
        return _Point(
            value=_attribute(model, base + value),
            quality=_attribute(model, base + "q"),
            timestamp=_attribute(model, base + "t"),
            is_counter=False,
            scale=scale,
        )

    def counter(obj: str) -> _Point:
        base = f"{domain}/{obj}."
        return _Point(
            value=_attribute(model, base + "actVal"),
            quality=_attribute(model, base + "q"),
            timestamp=_attribute(model, base + "t"),
            is_counter=True,
            scale=1,
        )

    points = {
        "power_w": analogue("MMXU1.TotW", "mag.f", 1),
        "voltage_dv": analogue("MMXU1.PhV.phsA", "cVal.mag.f", 10),
        "frequency_mhz": analogue("MMXU1.Hz", "mag.f", 1000),
        "import_wh": counter("MMTR1.DmdWh"),
        "export_wh": counter("MMTR1.SupWh"),
    }
    for key, obj in PHASE_POINTS.items():
        points[key] = analogue(obj, "cVal.mag.f", 10 if key.endswith("_dv") else 1)
    return points


def _attribute(model: Any, reference: str) -> Any:
    """The DataAttribute at `reference`; a missing one is a bug in `_build_model`."""
    node = iec.IedModel_getModelNodeByObjectReference(model, reference)
    if node is None:
        raise RuntimeError(f"bug: the dynamic IEC 61850 model has no attribute {reference}")
    return iec.toDataAttribute(node)


def _values_by_point(measurements: Measurements) -> dict[str, int | None]:
    """The integer value for every point key, `None` where not measured."""
    values: dict[str, int | None] = {
        "power_w": measurements.power_w,
        "voltage_dv": measurements.voltage_dv,
        "frequency_mhz": measurements.frequency_mhz,
        "import_wh": measurements.import_wh,
        "export_wh": measurements.export_wh,
    }
    for key in PHASE_POINTS:
        values[key] = measurements.phases.get(key)
    return values


def _write_point(server: Any, point: _Point, value: int | None, ts_ms: int) -> None:
    """Write value, quality and timestamp of one point; the data model must be locked."""
    if value is None:
        iec.IedServer_updateQuality(server, point.quality, iec.QUALITY_VALIDITY_INVALID)
    else:
        if point.is_counter:
            iec.IedServer_updateInt64AttributeValue(server, point.value, value)
        else:
            iec.IedServer_updateFloatAttributeValue(server, point.value, value / point.scale)
        iec.IedServer_updateQuality(server, point.quality, iec.QUALITY_VALIDITY_GOOD)
    iec.IedServer_updateUTCTimeAttributeValue(server, point.timestamp, ts_ms)


# --- the `gtx sim --device iec61850-meter` loop ------------------------------------------


def serve(
    host: str,
    port: int,
    *,
    ld_name: str = DEFAULT_LD_NAME,
    lat: float = physics.BANGKOK_LAT,
    lon: float = physics.BANGKOK_LON,
    seed: int = 0,
    stop_event: threading.Event | None = None,
    interval_ms: int = DEFAULT_INTERVAL_MS,
) -> None:
    """Run a simulated meter until `stop_event` is set, SIGTERM or Ctrl-C.

    Prints one line `ready iec61850-meter <host>:<port> ld=<domain>` to stdout once the
    server listens, then pushes a new reading every `interval_ms`.

    Args:
        host: IP address to listen on (`127.0.0.1` for loopback only).
        port: TCP port.
        ld_name: logical device inst; the domain is `GTXMeter<ld_name>`.
        lat: site latitude in degrees, for the PV model.
        lon: site longitude in degrees, for the PV model.
        seed: seed of the deterministic household-load and grid model.
        stop_event: set it to stop (from another thread); None to run until a signal.
        interval_ms: update period in milliseconds.

    Raises:
        OSError: the server could not listen on host:port.
    """
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    stop = stop_event if stop_event is not None else threading.Event()
    source = PhysicsMeter(lat=lat, lon=lon, seed=seed).reading
    restore = _stop_on_sigterm(stop)
    try:
        with Iec61850MeterServer(host, port, ld_name) as server:
            now = _now_ms()
            server.update(source(now), now)
            print(f"ready iec61850-meter {host}:{port} ld={server.domain}", flush=True)
            while not stop.wait(interval_ms / 1000):
                now = _now_ms()
                server.update(source(now), now)
    except KeyboardInterrupt:
        pass
    finally:
        restore()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _stop_on_sigterm(stop: threading.Event) -> Callable[[], None]:
    """Make SIGTERM set `stop` (main thread only); return a function restoring the old one."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


class PhysicsMeter:
    """A household meter driven by `hw.physics`: load minus rooftop PV, grid V and f.

    Positive power is import. Single phase: `phases` is empty, so the per-phase points
    are served with quality invalid. Not thread-safe; `serve` calls it from one thread.
    """

    def __init__(
        self,
        *,
        lat: float = physics.BANGKOK_LAT,
        lon: float = physics.BANGKOK_LON,
        seed: int = 0,
        pv_rated_w: int = 5000,
        start_import_wh: int = 1_000_000,
        start_export_wh: int = 500_000,
    ) -> None:
        """Describe the site.

        Args:
            lat: latitude, degrees north.
            lon: longitude, degrees east.
            seed: seed of clouds, load noise and grid wander.
            pv_rated_w: rated PV power in W.
            start_import_wh: import counter at the first reading, Wh.
            start_export_wh: export counter at the first reading, Wh.
        """
        self._pv = physics.PvArray(rated_w=pv_rated_w, lat=lat, lon=lon, seed=seed)
        self._load = physics.HouseholdLoad(seed=seed)
        self._grid = physics.Grid(seed=seed)
        self._start = (start_import_wh, start_export_wh)
        self._energy: physics.EnergyIntegrator | None = None
        self._last_power_w = 0

    def reading(self, ts_ms: int) -> Measurements:
        """The reading at `ts_ms` (unix ms); counters integrate the previous power.

        Args:
            ts_ms: unix milliseconds, normally increasing between calls.

        Returns:
            The meter's integer measurements.
        """
        if self._energy is None:
            self._energy = physics.EnergyIntegrator.starting_at(*self._start, ts_ms)
        else:
            # The power held since the previous reading is what flowed until now.
            self._energy = self._energy.advance(self._last_power_w, ts_ms)
        power_w = self._load.power_w(ts_ms) - self._pv.power_w(ts_ms)
        self._last_power_w = power_w
        return Measurements(
            power_w=power_w,
            voltage_dv=self._grid.voltage_dv(ts_ms),
            frequency_mhz=self._grid.frequency_mhz(ts_ms),
            import_wh=self._energy.import_wh,
            export_wh=self._energy.export_wh,
        )
