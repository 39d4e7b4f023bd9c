"""The device registry: which gateway key belongs to which owner, zone and devices.

A `register` transaction from an account with the `installer` role binds a gateway key to
an owner account, a zone and its devices (source, capacity). Registering a known gateway
again updates it (meter history of devices that keep their name is kept). Only registered,
unsuspended gateways may post `meter_read`; offers and bids come from such a gateway or
from the owner account of one (the prosumer's app). A gateway is suspended automatically on
meter-read equivocation, at once by an authority's `emergency` proposal, or by a vote.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.errors import TxRejected, Unregistered
from hub.state.accounts import INSTALLER, has_role
from hub.state.record import Record
from wire.envelope import Envelope
from wire.kinds import Register

if TYPE_CHECKING:
    from hub.state.state import State

__all__ = [
    "Device",
    "Gateway",
    "Owned",
    "capacity_wh",
    "gateway",
    "party",
    "register",
    "set_suspended",
    "trader_zone_gateways",
]

RENEWABLE = frozenset({"solar", "wind", "hydro", "biomass", "biogas", "geothermal"})
"""Sources whose settled delivery mints certificates."""


@dataclass(frozen=True, slots=True)
class Device(Record):
    """One device behind a gateway."""

    name: str
    """Device name, as in the gateway's config."""
    source: str
    """Energy source (`solar`, `grid`, ...)."""
    capacity_w: int
    """Nameplate capacity, W."""


@dataclass(frozen=True, slots=True)
class Gateway(Record):
    """A registered gateway (table `gateways`, key: the gateway's public key)."""

    owner: str
    """Owner account (receives nothing automatically; it may trade for the gateway)."""
    zone: str
    """Zone path of the site."""
    devices: tuple[Device, ...]
    """Devices behind the gateway."""
    installer: str
    """Account that registered it last."""
    height: int
    """Height of the last registration."""
    suspended: bool = False
    """Whether the gateway is suspended (no reads, no orders)."""
    reason: str = ""
    """Why it is suspended."""

    def device(self, name: str) -> Device | None:
        """The device called `name`, or None."""
        for d in self.devices:
            if d.name == name:
                return d
        return None


@dataclass(frozen=True, slots=True)
class Owned(Record):
    """The gateways an owner account owns (table `owners`)."""

    gateways: tuple[str, ...] = ()
    """Gateway keys, sorted."""


def gateway(st: State, key: str) -> Gateway | None:
    """The registration of gateway `key`, or None."""
    gw = st.get("gateways", key)
    return gw if isinstance(gw, Gateway) else None


def owned(st: State, owner: str) -> tuple[str, ...]:
    """Gateways owned by `owner`."""
    rec = st.get("owners", owner)
    return rec.gateways if rec is not None else ()


def _set_owned(st: State, owner: str, gateways: set[str]) -> None:
    st.put("owners", owner, Owned(tuple(sorted(gateways))) if gateways else None)


def register(st: State, tx: Envelope, body: Register) -> None:
    """Apply a `register` transaction.

    Raises:
        TxRejected: the sender is not an installer.
    """
    if not has_role(st, tx.sender, INSTALLER):
        raise TxRejected(
            f"{tx.sender[:16]}… may not register gateways: it lacks the installer role "
            "(an authority grants it with an authority_add or authority_role proposal)"
        )
    old = gateway(st, body.gateway)
    devices = tuple(Device(d.name, d.source, d.capacity_w) for d in body.devices)
    gw = Gateway(
        owner=body.owner,
        zone=body.zone,
        devices=devices,
        installer=tx.sender,
        height=st.height,
        suspended=old.suspended if old is not None else False,
        reason=old.reason if old is not None else "",
    )
    if old is not None:
        if old.owner != body.owner:
            _set_owned(st, old.owner, set(owned(st, old.owner)) - {body.gateway})
        for d in old.devices:
            new = gw.device(d.name)
            if new is None or new.source != d.source:
                st.put("meters", f"{body.gateway}/{d.name}", None)
    st.put("gateways", body.gateway, gw)
    _set_owned(st, body.owner, set(owned(st, body.owner)) | {body.gateway})


def set_suspended(st: State, key: str, suspended: bool, reason: str) -> None:
    """Suspend (or reinstate) gateway `key`.

    Raises:
        TxRejected: the gateway is not registered.
    """
    gw = gateway(st, key)
    if gw is None:
        raise TxRejected(f"gateway {key[:16]}… is not registered")
    st.put("gateways", key, dataclasses.replace(gw, suspended=suspended, reason=reason))


def party(st: State, key: str) -> str:
    """The trading party behind `key`: a gateway's owner, or the account itself."""
    gw = gateway(st, key)
    return gw.owner if gw is not None else key


def trader_zone_gateways(st: State, sender: str, zone: str, what: str) -> tuple[str, ...]:
    """The unsuspended gateways an order from `sender` in `zone` speaks for.

    A gateway speaks for itself; an owner account for all its gateways in that zone.

    Raises:
        TxRejected: unregistered sender, suspended gateway, or a zone it has no site in.
    """
    gw = gateway(st, sender)
    if gw is not None:
        if gw.suspended:
            raise TxRejected(f"gateway {sender[:16]}… is suspended ({gw.reason}); no {what}")
        if gw.zone != zone:
            raise TxRejected(f"zone {zone!r} is not the gateway's registered zone {gw.zone!r}")
        return (sender,)
    mine = owned(st, sender)
    if not mine:
        raise Unregistered(
            f"unregistered: {sender[:16]}… is neither a registered gateway nor the owner of "
            f"one; an installer must register it before it may {what}"
        )
    here = []
    for key in mine:
        g = gateway(st, key)
        if g is not None and g.zone == zone and not g.suspended:
            here.append(key)
    if not here:
        raise TxRejected(f"no unsuspended gateway of {sender[:16]}… is registered in {zone!r}")
    return tuple(here)


def capacity_wh(st: State, gateways: tuple[str, ...], source: str) -> int:
    """Energy the devices of `source` behind `gateways` can produce in one interval, Wh."""
    total_w = 0
    for key in gateways:
        gw = gateway(st, key)
        if gw is not None:
            total_w += sum(d.capacity_w for d in gw.devices if d.source == source)
    return total_w * st.params.interval_s // 3600
