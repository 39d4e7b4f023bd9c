"""Every signed message kind of DESIGN.md as a typed, immutable body.

Field names here are the contract; docs/protocol.md documents each one. All quantities are
integers: Wh, W, decivolts, millihertz, satang, satang per kWh, unix milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from wire.errors import InvalidField
from wire.struct import Body, Struct, integer, items, message_kind, required, text

HEX64 = r"[0-9a-f]{64}"
HEX64_HINT = "64 lowercase hex characters"
DEVICE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
DEVICE_HINT = "a device name (letters, digits, _ . -; at most 64)"
# A zone is a path in the grid tree: authority/area/substation/feeder, lowercase segments.
ZONE_SEGMENT = r"[a-z0-9][a-z0-9_-]{0,31}"
ZONE = rf"{ZONE_SEGMENT}(/{ZONE_SEGMENT}){{0,7}}"
ZONE_HINT = "a zone path like 'pea/ayutthaya/sub-01/feeder-3'"
PARAM = r"[a-z][a-z0-9_]{0,63}"

Source = Literal["solar", "wind", "hydro", "biomass", "biogas", "geothermal", "battery", "grid"]
SOURCES: tuple[str, ...] = Source.__args__  # type: ignore[attr-defined]

MAX_ENERGY_WH = 2**53
MAX_POWER_W = 10_000_000_000  # 10 GW: a generous bound on any single declared capacity
MAX_PRICE = 10_000_000  # satang per kWh (100,000 THB/kWh), far above any tariff
MAX_TS = 2**53


@message_kind("telemetry", stream="telemetry")
@dataclass(frozen=True, slots=True)
class Telemetry(Body):
    """A live reading of one device, for grid monitoring (not on chain)."""

    device: str = text(DEVICE, DEVICE_HINT)
    """Device name from the gateway's config."""
    power_w: int = integer(-10_000_000, 10_000_000)
    """Total active power in W, signed as the device reports it."""
    voltage_dv: int = integer(0, 10_000)
    """Voltage in decivolts (0 when the device does not measure it)."""
    frequency_mhz: int = integer(0, 70_000)
    """Grid frequency in millihertz (0 when not measured)."""
    import_wh: int = integer(0, MAX_ENERGY_WH)
    """Cumulative imported energy register in Wh."""
    export_wh: int = integer(0, MAX_ENERGY_WH)
    """Cumulative exported energy register in Wh."""


@message_kind("meter_read", stream="tx")
@dataclass(frozen=True, slots=True)
class MeterRead(Body):
    """Cumulative registers of one device at a delivery-interval boundary; basis of settlement."""

    device: str = text(DEVICE, DEVICE_HINT)
    """Device name as registered."""
    interval: int = integer(0, MAX_TS)
    """Start of the interval this read opens, unix ms (the boundary instant)."""
    import_wh: int = integer(0, MAX_ENERGY_WH)
    """Cumulative imported energy in Wh at the boundary."""
    export_wh: int = integer(0, MAX_ENERGY_WH)
    """Cumulative exported energy in Wh at the boundary."""
    source: Source = required()
    """Energy source of the device."""
    prev: str = text(HEX64, HEX64_HINT)
    """SHA-256 (hex) of the previous meter_read message of this device; 64 zeros for the first."""


@message_kind("offer", stream="tx")
@dataclass(frozen=True, slots=True)
class Offer(Body):
    """A sell order for one delivery interval."""

    interval: int = integer(0, MAX_TS)
    """Start of the delivery interval, unix ms."""
    energy_wh: int = integer(1, MAX_ENERGY_WH)
    """Energy offered in Wh."""
    price: int = integer(0, MAX_PRICE)
    """Limit price in satang per kWh (the lowest the seller accepts)."""
    source: Source = required()
    """Energy source sold."""
    zone: str = text(ZONE, ZONE_HINT)
    """Grid zone of the seller."""
    expires: int = integer(0, MAX_TS)
    """Unix ms after which the order no longer matches."""


@message_kind("bid", stream="tx")
@dataclass(frozen=True, slots=True)
class Bid(Body):
    """A buy order for one delivery interval."""

    interval: int = integer(0, MAX_TS)
    """Start of the delivery interval, unix ms."""
    energy_wh: int = integer(1, MAX_ENERGY_WH)
    """Energy wanted in Wh."""
    price: int = integer(0, MAX_PRICE)
    """Limit price in satang per kWh (the highest the buyer pays, before wheeling)."""
    sources: tuple[Source, ...] = items(1, len(SOURCES))
    """Sources the buyer accepts."""
    zone: str = text(ZONE, ZONE_HINT)
    """Grid zone of the buyer."""
    expires: int = integer(0, MAX_TS)
    """Unix ms after which the order no longer matches."""


@message_kind("cancel", stream="tx")
@dataclass(frozen=True, slots=True)
class Cancel(Body):
    """Cancel the unfilled part of one's own order."""

    order: str = text(HEX64, HEX64_HINT)
    """Id of the offer or bid message (SHA-256 hex)."""


@message_kind("transfer", stream="tx")
@dataclass(frozen=True, slots=True)
class Transfer(Body):
    """Move satang to another account."""

    to: str = text(HEX64, HEX64_HINT)
    """Recipient account (public key hex)."""
    amount: int = integer(1, 2**62)
    """Amount in satang."""


@dataclass(frozen=True, slots=True)
class DeviceEntry(Struct):
    """One device behind a registered gateway."""

    name: str = text(DEVICE, DEVICE_HINT)
    """Device name, as in the gateway's config."""
    source: Source = required()
    """Energy source."""
    capacity_w: int = integer(0, MAX_POWER_W)
    """Nameplate capacity in W (bounds how much energy its reads may claim)."""

    def key(self) -> Any:
        """Devices are identified by name."""
        return self.name


@message_kind("register", stream="tx")
@dataclass(frozen=True, slots=True)
class Register(Body):
    """Bind a gateway key to an owner account, a zone and its devices (installer or authority)."""

    gateway: str = text(HEX64, HEX64_HINT)
    """The gateway's public key."""
    owner: str = text(HEX64, HEX64_HINT)
    """The owner's account (public key hex)."""
    zone: str = text(ZONE, ZONE_HINT)
    """Grid zone: substation/feeder path."""
    devices: tuple[DeviceEntry, ...] = items(1, 32)
    """The devices behind the gateway, names unique."""


ProposalAction = Literal[
    "param_change",
    "authority_add",
    "authority_remove",
    "authority_role",
    "validator_add",
    "validator_remove",
    "emergency",
]
PROPOSAL_ACTIONS: tuple[str, ...] = ProposalAction.__args__  # type: ignore[attr-defined]


@message_kind("proposal", stream="tx")
@dataclass(frozen=True, slots=True)
class Proposal(Body):
    """A governance proposal."""

    action: ProposalAction = required()
    """What the proposal does."""
    target: str = text(r"[A-Za-z0-9_./-]{1,128}", "a parameter name, account key or zone")
    """Parameter name (param_change), account key (authority/validator), or zone (emergency)."""
    value: int = integer(-(2**62), 2**62)
    """New parameter value, or the action's argument (0 when unused)."""
    roles: tuple[str, ...] = items(0, 8, pattern=PARAM, hint="a role name")
    """Roles granted (authority_add, authority_role); empty otherwise."""
    note: str = text(r"[^\x00-\x1f]{0,280}", "at most 280 printable characters")
    """Human-readable reason."""

    def check(self) -> None:
        """Parameter names must be identifiers; key-based actions need a key."""
        if self.action == "param_change" and not re.fullmatch(PARAM, self.target):
            raise InvalidField("target", "must be a parameter name for param_change")
        keyed = (
            "authority_add",
            "authority_remove",
            "authority_role",
            "validator_add",
            "validator_remove",
        )
        if self.action in keyed and not re.fullmatch(HEX64, self.target):
            raise InvalidField("target", f"must be an account key for {self.action}")


@message_kind("vote", stream="tx")
@dataclass(frozen=True, slots=True)
class Vote(Body):
    """A yes/no vote on a proposal."""

    proposal: str = text(HEX64, HEX64_HINT)
    """Id of the proposal message."""
    yes: bool = required()
    """True for yes, false for no."""


CommandAction = Literal["limit_export_w", "curtail_pct", "release"]


@message_kind("command", stream="command")
@dataclass(frozen=True, slots=True)
class Command(Body):
    """A curtailment command from the grid authorities to one gateway or a whole zone.

    One envelope carries one authority's signature; a gateway acts once it holds envelopes
    with an identical body from the quorum of authorities that governance set.
    """

    scope: Literal["gateway", "zone"] = required()
    """Whether `target` names a gateway key or a zone (which includes its sub-zones)."""
    target: str = text(f"{HEX64}|{ZONE}", "a gateway key or a zone path")
    """Gateway public key or zone path."""
    action: CommandAction = required()
    """`limit_export_w` (value in W), `curtail_pct` (value 0-100), or `release` (value 0)."""
    value: int = integer(0, MAX_POWER_W)
    """The action's argument."""
    valid_until: int = integer(0, MAX_TS)
    """Unix ms after which the command lapses and the gateway returns to normal."""

    def check(self) -> None:
        """Values must fit the action."""
        if self.action == "curtail_pct" and self.value > 100:
            raise InvalidField("value", f"curtail_pct must be 0..100, got {self.value}")
        if self.action == "release" and self.value != 0:
            raise InvalidField("value", "must be 0 for release")


CERT_ID = r"cert:[0-9]{1,16}:[0-9]{8}|[0-9a-f]{64}"
CERT_ID_HINT = "a certificate id ('cert:<trade id>' or the 64-hex id of a split-off part)"


@message_kind("cert_transfer", stream="tx")
@dataclass(frozen=True, slots=True)
class CertTransfer(Body):
    """Give part or all of the unclaimed energy of one's certificate to another account."""

    cert: str = text(CERT_ID, CERT_ID_HINT)
    """Certificate id."""
    to: str = text(HEX64, HEX64_HINT)
    """Recipient account."""
    energy_wh: int = integer(1, MAX_ENERGY_WH)
    """Wh to transfer (split off as a new certificate when less than the whole)."""


@message_kind("claim", stream="tx")
@dataclass(frozen=True, slots=True)
class Claim(Body):
    """Claim (retire) renewable energy of one's certificate; every Wh can be claimed once."""

    cert: str = text(CERT_ID, CERT_ID_HINT)
    """Certificate id."""
    energy_wh: int = integer(1, MAX_ENERGY_WH)
    """Wh to claim."""
    beneficiary: str = text(r"[^\x00-\x1f]{0,140}", "at most 140 printable characters")
    """On whose behalf the energy is claimed, for people (may be empty)."""


@message_kind("zone_price", stream="grid")
@dataclass(frozen=True, slots=True)
class ZonePrice(Body):
    """A validator's report of a zone's reference price for one delivery interval.

    Published retained on `gtx/v1/{chain}/grid/{zone}` after each block that adds trades, so
    gateways learn the market price without the hub's HTTP API. Every validator computes the
    same values from the same committed state; `seq` is `height * 65536 + n`.
    """

    zone: str = text(ZONE, ZONE_HINT)
    """The zone (trades in it or its sub-zones count)."""
    interval: int = integer(0, MAX_TS)
    """Start of the delivery interval, unix ms."""
    price: int = integer(0, MAX_PRICE)
    """Volume-weighted trade price, satang per kWh (floor); 0 when nothing traded."""
    energy_wh: int = integer(0, MAX_ENERGY_WH)
    """Energy traded in the zone for the interval so far, Wh."""
    height: int = integer(1, MAX_TS)
    """Committed block height the figures are taken at."""
