"""Renewable energy certificates: minted by settlement, transferable, claimable once.

Settled delivery from a renewable source mints one certificate per trade, owned by the
buyer (the certificate follows the energy), in Wh, with the source, the seller's zone, the
interval and the CO2 it avoided (grid emission factor). An owner may transfer part or all of
the unclaimed energy of a certificate (the transferred part becomes a new certificate whose
id is the transaction id) or claim it (retire it for a beneficiary); every Wh is claimed at
most once, and claimed Wh can no longer be transferred.

The transactions are `cert_transfer` and `claim` (`wire.kinds.CertTransfer`, `Claim`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.errors import TxRejected
from hub.state.record import Record

if TYPE_CHECKING:
    from hub.state.market import Trade
    from hub.state.state import State

__all__ = ["Certificate", "Claim", "claim_certificate", "mint", "transfer_certificate"]


@dataclass(frozen=True, slots=True)
class Certificate(Record):
    """A renewable energy certificate (table `certs`, key: its id)."""

    id: str
    """`cert:<trade id>` when minted; the transfer's tx id when split off."""
    owner: str
    """Account holding it."""
    source: str
    """Energy source."""
    zone: str
    """Zone where the energy was produced."""
    interval: int
    """Delivery interval start, unix ms."""
    energy_wh: int
    """Energy it certifies, Wh."""
    claimed_wh: int
    """Of it claimed (retired), Wh."""
    co2_avoided_g: int
    """CO2 avoided by `energy_wh`, g (rounded down; splits keep the sum)."""
    origin: str
    """Trade id it was minted for."""


@dataclass(frozen=True, slots=True)
class Claim(Record):
    """One claim (retirement) of certificate energy (table `claims`, key: the tx id)."""

    certificate: str
    """Certificate claimed from."""
    owner: str
    """Account that claimed."""
    energy_wh: int
    """Energy claimed, Wh."""
    beneficiary: str
    """For whom (free text, may be empty)."""
    height: int
    """Height of the claim."""


def mint(st: State, trade: Trade, delivered_wh: int, co2_g: int) -> str:
    """Mint the certificate of a settled renewable trade; returns its id."""
    cid = f"cert:{trade.id}"
    cert = Certificate(
        id=cid,
        owner=trade.buyer,
        source=trade.source,
        zone=trade.seller_zone,
        interval=trade.interval,
        energy_wh=delivered_wh,
        claimed_wh=0,
        co2_avoided_g=co2_g,
        origin=trade.id,
    )
    st.put("certs", cid, cert)
    return cid


def _own(st: State, sender: str, cert_id: str, energy_wh: int) -> Certificate:
    cert: Certificate | None = st.get("certs", cert_id)
    if cert is None:
        raise TxRejected(f"no certificate {cert_id!r}")
    if cert.owner != sender:
        raise TxRejected(f"certificate {cert_id!r} belongs to {cert.owner[:16]}…, not to you")
    free = cert.energy_wh - cert.claimed_wh
    if not 0 < energy_wh <= free:
        raise TxRejected(
            f"certificate {cert_id!r} has {free} Wh unclaimed; cannot use {energy_wh} Wh"
        )
    return cert


def transfer_certificate(
    st: State, sender: str, cert_id: str, to: str, energy_wh: int, new_id: str
) -> None:
    """Give `energy_wh` of an unclaimed certificate to `to` (a new certificate `new_id`).

    Raises:
        TxRejected: unknown certificate, not the sender's, or not that much unclaimed.
    """
    cert = _own(st, sender, cert_id, energy_wh)
    if energy_wh == cert.energy_wh:
        st.put("certs", cert_id, dataclasses.replace(cert, owner=to))
        return
    co2_part = cert.co2_avoided_g * energy_wh // cert.energy_wh
    st.put(
        "certs",
        cert_id,
        dataclasses.replace(
            cert,
            energy_wh=cert.energy_wh - energy_wh,
            co2_avoided_g=cert.co2_avoided_g - co2_part,
        ),
    )
    st.put(
        "certs",
        new_id,
        dataclasses.replace(
            cert, id=new_id, owner=to, energy_wh=energy_wh, claimed_wh=0, co2_avoided_g=co2_part
        ),
    )


def claim_certificate(
    st: State, sender: str, cert_id: str, energy_wh: int, claim_id: str, beneficiary: str
) -> None:
    """Claim (retire) `energy_wh` of one's certificate, once and for all.

    Raises:
        TxRejected: unknown certificate, not the sender's, or not that much unclaimed.
    """
    cert = _own(st, sender, cert_id, energy_wh)
    st.put("certs", cert_id, dataclasses.replace(cert, claimed_wh=cert.claimed_wh + energy_wh))
    st.put("claims", claim_id, Claim(cert_id, sender, energy_wh, beneficiary, st.height))
