"""Chain parameters of the state machine: defaults, bounds, genesis overrides, governance.

Every parameter is an integer with its unit in its name. Genesis may override any of them
(`gtx hub init --gate-closure-s 300` writes `gate_closure_s` into genesis params); a
`param_change` proposal changes one later. Genesis names starting with `bft_` belong to
consensus (`hub.config.consensus_params` checks those); every other name must be one of
`BOUNDS` or a `feeder_capacity_wh:<zone>` key, and is range-checked here with a message that
names the fix. An unknown name is refused, never ignored: a typo (or the old `interval_ms`)
would otherwise silently leave the default in force.

Per-feeder capacities are not flat parameters (a zone path is not a parameter name): genesis
sets one with the key `feeder_capacity_wh:<zone>`, and an `emergency` proposal on a zone
changes it (see governance).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from hub.errors import ConfigError, TxRejected
from hub.state.record import Record

__all__ = [
    "BOUNDS",
    "CONSENSUS_PREFIX",
    "FEEDER_PREFIX",
    "Params",
    "ceiling_for",
    "check_param",
    "params_from_genesis",
]

FEEDER_PREFIX = "feeder_capacity_wh:"
"""Genesis param key prefix for a per-zone feeder capacity (Wh per interval)."""
CONSENSUS_PREFIX = "bft_"
"""Genesis param names with this prefix are consensus timing, not state machine parameters."""

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Params(Record):
    """The state machine's parameters (defaults are production values for Thailand)."""

    interval_s: int = 900
    """Delivery interval length, s (15 min)."""
    gate_closure_s: int = 900
    """Orders for an interval close this long before it starts, s."""
    grace_s: int = 300
    """Wait after an interval ends before it is settled (late meter reads), s."""
    horizon_s: int = 7 * DAY_S
    """How far ahead an order's interval may lie, s."""
    price_floor: int = 220
    """Lowest offer price, satang/kWh (utility solar buyback rate, 2.20 THB)."""
    price_ceiling_peak: int = 580
    """Highest bid price in peak hours, satang/kWh (TOU peak retail tariff)."""
    price_ceiling_offpeak: int = 264
    """Highest bid price off peak, satang/kWh (TOU off-peak retail tariff)."""
    peak_start_h: int = 9
    """Local hour at which the peak tariff starts."""
    peak_end_h: int = 22
    """Local hour at which the peak tariff ends."""
    peak_weekdays_only: int = 1
    """1: weekends are off peak; 0: every day has a peak."""
    tz_offset_s: int = 7 * 3600
    """Local time offset from UTC, s (Thailand UTC+7)."""
    imbalance_price: int = 600
    """Price a seller pays per kWh not delivered, satang/kWh."""
    wheeling_per_hop: int = 10
    """Wheeling fee per zone-tree hop between seller and buyer, satang/kWh."""
    wheeling_cap: int = 80
    """Highest wheeling fee whatever the distance, satang/kWh (bids escrow it)."""
    feeder_capacity_wh: int = 1_000_000
    """Energy that may cross one zone's feeder in one interval, Wh (unless set per zone)."""
    emission_factor_g_per_kwh: int = 400
    """Grid emission factor, g CO2 per kWh (avoided by renewable delivery)."""
    tx_fee: int = 0
    """Fee per offer, bid, cancel and transfer, satang (to the validators' fee pool)."""
    gov_voting_s: int = 3600
    """How long a proposal is open for votes, s."""
    gov_timelock_s: int = 600
    """Delay between approval and execution, s (emergency actions skip it)."""
    gov_quorum_bps: int = 5000
    """Share of all voting weight that must vote, basis points."""
    gov_threshold_bps: int = 6666
    """Share of cast weight that must vote yes, basis points."""
    gov_authority_weight: int = 1000
    """Voting weight of each authority."""
    gov_stake_wh_per_vote: int = 1000
    """Settled traded Wh that earn a stakeholder one vote (0: authorities only)."""
    validator_delay_blocks: int = 2
    """Blocks between an approved validator change and the height it applies at."""

    def check(self) -> None:
        """Cross-parameter rules.

        Raises:
            ValueError: with the rule that is broken.
        """
        for name, (lo, hi) in BOUNDS.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
        if self.price_floor > min(self.price_ceiling_peak, self.price_ceiling_offpeak):
            raise ValueError(
                f"price_floor {self.price_floor} is above a price ceiling "
                f"({self.price_ceiling_peak} peak, {self.price_ceiling_offpeak} off peak)"
            )
        if self.peak_start_h > self.peak_end_h:
            raise ValueError("peak_start_h must not be after peak_end_h")

    def with_value(self, name: str, value: int) -> Params:
        """A copy with one parameter changed, checked.

        Raises:
            TxRejected: unknown name or a value the rules refuse.
        """
        if name not in BOUNDS:
            raise TxRejected(f"unknown parameter {name!r}; known: {', '.join(sorted(BOUNDS))}")
        changed = dataclasses.replace(self, **{name: value})
        try:
            changed.check()
        except ValueError as exc:
            raise TxRejected(f"parameter change refused: {exc}") from exc
        return changed

    @property
    def interval_ms(self) -> int:
        """Delivery interval length in ms."""
        return self.interval_s * 1000


_MAX_PRICE = 10_000_000
BOUNDS: dict[str, tuple[int, int]] = {
    "interval_s": (1, DAY_S),
    "gate_closure_s": (0, 7 * DAY_S),
    "grace_s": (0, 7 * DAY_S),
    "horizon_s": (1, 366 * DAY_S),
    "price_floor": (0, _MAX_PRICE),
    "price_ceiling_peak": (0, _MAX_PRICE),
    "price_ceiling_offpeak": (0, _MAX_PRICE),
    "peak_start_h": (0, 24),
    "peak_end_h": (0, 24),
    "peak_weekdays_only": (0, 1),
    "tz_offset_s": (-14 * 3600, 14 * 3600),
    "imbalance_price": (0, _MAX_PRICE),
    "wheeling_per_hop": (0, _MAX_PRICE),
    "wheeling_cap": (0, _MAX_PRICE),
    "feeder_capacity_wh": (0, 2**53),
    "emission_factor_g_per_kwh": (0, 10_000),
    "tx_fee": (0, 2**40),
    "gov_voting_s": (0, 366 * DAY_S),
    "gov_timelock_s": (0, 366 * DAY_S),
    "gov_quorum_bps": (0, 10_000),
    "gov_threshold_bps": (1, 10_000),
    "gov_authority_weight": (0, 2**40),
    "gov_stake_wh_per_vote": (0, 2**53),
    "validator_delay_blocks": (1, 10_000),
}
"""Allowed range of every parameter (inclusive)."""


def _suggest(name: str) -> str:
    """A hint for an unknown parameter name: the known name it most likely means."""
    renamed = {"interval_ms": "interval_s (seconds)", "gate_closure_ms": "gate_closure_s"}
    if name in renamed:
        return f" (did you mean {renamed[name]}?)"
    close = difflib.get_close_matches(name, list(BOUNDS), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def check_param(name: str, value: int) -> None:
    """Check one genesis parameter of the state machine on its own (name and range).

    Raises:
        ConfigError: naming the parameter, its allowed range, or the known names.
    """
    if name.startswith(FEEDER_PREFIX):
        if not name[len(FEEDER_PREFIX) :] or value < 0:
            raise ConfigError(f"params.{name}", "needs a zone path and a capacity >= 0 Wh")
        return
    if name not in BOUNDS:
        raise ConfigError(
            f"params.{name}",
            f"unknown chain parameter{_suggest(name)}; known: {', '.join(sorted(BOUNDS))}, "
            f"{FEEDER_PREFIX}<zone>, and consensus timing {CONSENSUS_PREFIX}<name>",
        )
    lo, hi = BOUNDS[name]
    if not lo <= value <= hi:
        raise ConfigError(f"params.{name}", f"must be in {lo}..{hi}, got {value}")


def params_from_genesis(values: Mapping[str, int]) -> tuple[Params, dict[str, int]]:
    """Parameters and per-zone feeder capacities from genesis params.

    Names starting with `bft_` are skipped (consensus timing, checked by the node config).

    Returns:
        The parameters (defaults where genesis is silent) and `zone -> capacity Wh`.

    Raises:
        ConfigError: an unknown name, a value out of range, or a cross-parameter rule broken.
    """
    known: dict[str, int] = {}
    feeders: dict[str, int] = {}
    for key, value in sorted(values.items()):
        if key.startswith(CONSENSUS_PREFIX):
            continue
        check_param(key, value)
        if key.startswith(FEEDER_PREFIX):
            feeders[key[len(FEEDER_PREFIX) :]] = value
        else:
            known[key] = value
    params = dataclasses.replace(Params(), **known)
    try:
        params.check()
    except ValueError as exc:
        raise ConfigError("params", f"{exc}; fix it in genesis (gtx hub init)") from exc
    return params, feeders


def ceiling_for(params: Params, interval_ms: int) -> int:
    """The bid price ceiling for the interval starting at `interval_ms`, satang/kWh.

    Peak hours are [peak_start_h, peak_end_h) local time, on weekdays only when
    `peak_weekdays_only` is 1 (1970-01-01 was a Thursday).
    """
    local_s = interval_ms // 1000 + params.tz_offset_s
    hour = (local_s // 3600) % 24
    weekday = (local_s // DAY_S + 3) % 7  # 0 = Monday
    peak = params.peak_start_h <= hour < params.peak_end_h
    if params.peak_weekdays_only and weekday >= 5:
        peak = False
    return params.price_ceiling_peak if peak else params.price_ceiling_offpeak
