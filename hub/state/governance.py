"""Governance: proposals, weighted votes, quorum and threshold, time-lock, execution.

Who votes, with what weight: an account with the `authority` role has
`gov_authority_weight`; every account has one vote per `gov_stake_wh_per_vote` Wh of
settled trade (market participation; 0 turns stakeholder votes off); the two add up. A
proposal may come from anyone with weight. It is open for `gov_voting_s`.

A proposal is approved when the votes cast reach `gov_quorum_bps` of all weight and the yes
votes `gov_threshold_bps` of the votes cast: as soon as the outcome is certain (yes alone
reaches the threshold of all weight), else when voting ends. It executes automatically at
the first block at or after approval + `gov_timelock_s` (emergency actions: at once).
Validator changes take effect `validator_delay_blocks` after execution.

Actions: `param_change` (target: parameter, value), `authority_add` / `authority_role`
(target: key, roles; default `authority`), `authority_remove` (target: key),
`validator_add` / `validator_remove` (target: key), `emergency` with a zone target (value:
that zone's feeder capacity in Wh per interval; -1 restores the default) or with a gateway
key (value 1 suspends, 0 reinstates). An authority's emergency suspension of a gateway
executes at once, like a breaker trip; reinstating takes a vote.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hub.errors import TxRejected
from hub.state.accounts import (
    AUTHORITY,
    INSTALLER,
    account,
    has_role,
    recount_stake_weight,
    roles,
    set_roles,
)
from hub.state.meters import resync
from hub.state.record import Record
from hub.state.registry import gateway, set_suspended
from wire.envelope import Envelope
from wire.kinds import HEX64, ZONE, Vote
from wire.kinds import Proposal as ProposalBody

if TYPE_CHECKING:
    from hub.state.state import State

__all__ = [
    "Proposal",
    "ValidatorChange",
    "VoteRecord",
    "apply_validator_changes",
    "govern",
    "propose",
    "vote",
    "weight",
]

KNOWN_ROLES = frozenset({AUTHORITY, INSTALLER})
PStatus = Literal["open", "approved", "rejected", "executed", "failed"]


@dataclass(frozen=True, slots=True)
class ValidatorChange(Record):
    """A validator set change waiting for its height."""

    height: int
    """Applies after the block at this height."""
    action: str
    """`validator_add` or `validator_remove`."""
    key: str
    """Validator public key."""


@dataclass(frozen=True, slots=True)
class Proposal(Record):
    """A governance proposal (table `proposals`, key: its tx id)."""

    id: str
    """Tx id of the proposal."""
    proposer: str
    """Account that proposed it."""
    action: str
    """What it does."""
    target: str
    """Parameter name, account key or zone."""
    value: int
    """New value or argument."""
    roles: tuple[str, ...]
    """Roles granted."""
    note: str
    """Reason, for people."""
    height: int
    """Height it was submitted at."""
    deadline_ms: int
    """Voting ends, unix ms."""
    status: PStatus
    """`open`, `approved`, `rejected`, `executed` or `failed`."""
    yes: int = 0
    """Yes weight cast."""
    no: int = 0
    """No weight cast."""
    voters: int = 0
    """Number of votes."""
    due_ms: int = 0
    """When an approved proposal executes, unix ms."""
    executed_height: int = 0
    """Height of execution (or failure, or rejection)."""
    result: str = ""
    """What happened."""


@dataclass(frozen=True, slots=True)
class VoteRecord(Record):
    """One vote (table `votes`, key `proposal/voter`)."""

    yes: bool
    """Yes or no."""
    weight: int
    """Weight counted."""
    height: int
    """Height of the vote."""


def weight(st: State, key: str) -> int:
    """Voting weight of `key` now."""
    p = st.params
    w = p.gov_authority_weight if has_role(st, key, AUTHORITY) else 0
    if p.gov_stake_wh_per_vote:
        w += account(st, key).traded_wh // p.gov_stake_wh_per_vote
    return w


def total_weight(st: State) -> int:
    """All voting weight there is."""
    p = st.params
    total = st.meta().stake_weight  # kept as trades settle (accounts.add_traded)
    for _key, rec in st.ov.items("roles"):  # a handful of authorities and installers
        if AUTHORITY in rec.roles:
            total += p.gov_authority_weight
    return total


def _check_action(st: State, body: ProposalBody) -> None:
    meta = st.meta()
    target, value = body.target, body.value
    if body.action == "param_change":
        st.params.with_value(target, value)
    elif body.action in ("authority_add", "authority_role"):
        unknown = set(body.roles) - KNOWN_ROLES
        if unknown:
            raise TxRejected(f"unknown roles {sorted(unknown)}; known: {sorted(KNOWN_ROLES)}")
    elif body.action == "authority_remove":
        if not roles(st, target):
            raise TxRejected(f"{target[:16]}… holds no role to remove")
    elif body.action == "validator_add":
        if target in meta.validators:
            raise TxRejected(f"{target[:16]}… is already a validator")
    elif body.action == "validator_remove":
        if target not in meta.validators:
            raise TxRejected(f"{target[:16]}… is not a validator")
        if len(meta.validators) == 1:
            raise TxRejected("cannot remove the last validator")
    elif body.action == "emergency":
        if re.fullmatch(HEX64, target):
            if gateway(st, target) is None or value not in (0, 1):
                raise TxRejected("emergency on a gateway needs a registered key and value 1 or 0")
        elif re.fullmatch(ZONE, target):
            if value < -1:
                raise TxRejected("emergency on a zone needs a capacity >= 0 Wh, or -1 to restore")
        else:
            raise TxRejected(f"emergency target {target!r} is neither a gateway key nor a zone")


def propose(st: State, tx: Envelope, body: ProposalBody) -> None:
    """Apply a `proposal`.

    Raises:
        TxRejected: the sender has no voting weight, or the action could never execute.
    """
    if weight(st, tx.sender) <= 0:
        raise TxRejected(
            f"{tx.sender[:16]}… has no voting weight: only authorities and accounts with "
            "settled trades may propose"
        )
    _check_action(st, body)
    prop = Proposal(
        id=tx.message_id(),
        proposer=tx.sender,
        action=body.action,
        target=body.target,
        value=body.value,
        roles=tuple(sorted(set(body.roles))),
        note=body.note,
        height=st.height,
        deadline_ms=st.time_ms + st.params.gov_voting_s * 1000,
        status="open",
    )
    immediate = (
        body.action == "emergency"
        and re.fullmatch(HEX64, body.target) is not None
        and body.value == 1
        and has_role(st, tx.sender, AUTHORITY)
    )
    if immediate:
        prop = dataclasses.replace(prop, status="approved", due_ms=st.time_ms, result="immediate")
        prop = _execute(st, prop)
    else:
        meta = st.meta()
        st.set_meta(dataclasses.replace(meta, proposals=(*meta.proposals, prop.id)))
    st.put("proposals", prop.id, prop)


def vote(st: State, tx: Envelope, body: Vote) -> None:
    """Apply a `vote` and decide the proposal early when the outcome is certain.

    Raises:
        TxRejected: unknown or closed proposal, no weight, or a second vote.
    """
    prop: Proposal | None = st.get("proposals", body.proposal)
    if prop is None:
        raise TxRejected(f"no proposal {body.proposal[:16]}… on chain")
    if prop.status != "open" or st.time_ms >= prop.deadline_ms:
        raise TxRejected(f"proposal {body.proposal[:16]}… is closed for votes ({prop.status})")
    w = weight(st, tx.sender)
    if w <= 0:
        raise TxRejected(f"{tx.sender[:16]}… has no voting weight")
    key = f"{prop.id}/{tx.sender}"
    if st.get("votes", key) is not None:
        raise TxRejected(f"{tx.sender[:16]}… already voted on {prop.id[:16]}…")
    st.put("votes", key, VoteRecord(body.yes, w, st.height))
    prop = dataclasses.replace(
        prop,
        yes=prop.yes + (w if body.yes else 0),
        no=prop.no + (0 if body.yes else w),
        voters=prop.voters + 1,
    )
    st.put("proposals", prop.id, _decide(st, prop, final=False))


def _decide(st: State, prop: Proposal, final: bool) -> Proposal:
    p = st.params
    total = total_weight(st)
    cast = prop.yes + prop.no
    quorum = cast * 10_000 >= p.gov_quorum_bps * total
    thr = p.gov_threshold_bps
    if quorum and prop.yes * 10_000 >= thr * max(total, 1):
        approved = True
    elif prop.no * 10_000 > (10_000 - thr) * total:
        approved = False
    elif final:
        approved = quorum and cast > 0 and prop.yes * 10_000 >= thr * cast
    else:
        return prop
    if not approved:
        return dataclasses.replace(
            prop,
            status="rejected",
            executed_height=st.height,
            result=f"rejected: yes {prop.yes}, no {prop.no} of {total} weight",
        )
    delay = 0 if prop.action == "emergency" else p.gov_timelock_s * 1000
    return dataclasses.replace(prop, status="approved", due_ms=st.time_ms + delay)


def govern(st: State) -> None:
    """Begin-block duty: close votes that ended, execute approved proposals that are due."""
    meta = st.meta()
    keep = []
    for pid in meta.proposals:
        prop: Proposal = st.get("proposals", pid)
        before = prop
        if prop.status == "open" and st.time_ms >= prop.deadline_ms:
            prop = _decide(st, prop, final=True)
        if prop.status == "approved" and st.time_ms >= prop.due_ms:
            prop = _execute(st, prop)
        if prop is not before:  # an unchanged proposal is not written (nor stored) again
            st.put("proposals", pid, prop)
        if prop.status in ("open", "approved"):
            keep.append(pid)
    meta = st.meta()
    if tuple(keep) != meta.proposals:
        st.set_meta(dataclasses.replace(meta, proposals=tuple(keep)))


def _execute(st: State, prop: Proposal) -> Proposal:
    target, value = prop.target, prop.value
    try:
        if prop.action == "param_change":
            st.set_params(st.params.with_value(target, value))
            if target == "gov_stake_wh_per_vote":
                recount_stake_weight(st)
        elif prop.action in ("authority_add", "authority_role"):
            granted = prop.roles or (AUTHORITY,)
            have = roles(st, target) if prop.action == "authority_add" else ()
            set_roles(st, target, (*have, *granted))
        elif prop.action == "authority_remove":
            _remove_authority(st, target)
        elif prop.action in ("validator_add", "validator_remove"):
            meta = st.meta()
            change = ValidatorChange(
                st.height + st.params.validator_delay_blocks, prop.action, target
            )
            st.set_meta(dataclasses.replace(meta, pending=(*meta.pending, change)))
        elif re.fullmatch(HEX64, target):
            set_suspended(
                st, target, value == 1, f"emergency proposal {prop.id[:12]}" if value else ""
            )
            if value == 0:
                resync(st, target)
        else:
            st.put("feeders", target, None if value == -1 else value)
    except TxRejected as exc:
        return dataclasses.replace(
            prop, status="failed", executed_height=st.height, result=exc.reason
        )
    return dataclasses.replace(
        prop, status="executed", executed_height=st.height, result="executed"
    )


def _remove_authority(st: State, target: str) -> None:
    others = [k for k, r in st.ov.items("roles") if AUTHORITY in r.roles and k != target]
    if not others:
        raise TxRejected("cannot remove the last authority")
    set_roles(st, target, ())


def apply_validator_changes(st: State) -> None:
    """End-block duty: apply validator changes whose height has come."""
    meta = st.meta()
    if not any(c.height <= st.height for c in meta.pending):
        return
    validators = set(meta.validators)
    pending = []
    for c in meta.pending:
        if c.height > st.height:
            pending.append(c)
        elif c.action == "validator_add":
            validators.add(c.key)
        elif len(validators) > 1:
            validators.discard(c.key)
    st.set_meta(
        dataclasses.replace(meta, validators=tuple(sorted(validators)), pending=tuple(pending))
    )
