"""Accounts: balance and escrow in satang, the per-sender tx seq, roles, named accounts.

An account is a public key (64 hex) or a named account that nobody signs for:
`pool:fees` (transaction fees, shared by the validators), `pool:rounding` (the remainders of
every division that rounds down), and `grid:<authority>` (wheeling fees and imbalance
charges of a grid operator). Money only moves between accounts, so the sum of all balances
and escrows is constant; a seller's imbalance charge may leave a balance negative (a debt
the account must clear before it can bid or transfer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.errors import HubError, TxRejected
from hub.state.record import Record
from wire.kinds import HEX64, ZONE_SEGMENT

if TYPE_CHECKING:
    from hub.state.state import State

__all__ = [
    "ACCOUNT_PATTERN",
    "FEE_POOL",
    "ROUNDING",
    "Account",
    "Roles",
    "account",
    "charge_fee",
    "credit",
    "debit",
    "distribute_fees",
    "has_role",
    "lock",
    "move",
    "release",
]

FEE_POOL = "pool:fees"
"""Transaction fees, paid out to the validators block by block."""
ROUNDING = "pool:rounding"
"""Where the remainder of every division that rounds down goes."""
ACCOUNT_PATTERN = rf"^({HEX64}|pool:(fees|rounding)|grid:{ZONE_SEGMENT})$"
"""Every account id there is: a public key, one of the pools, or a zone authority's
`grid:<authority>` (`hub.state.zones.operator_account`)."""
AUTHORITY = "authority"
"""Role: votes with authority weight, may propose anything, may suspend a gateway at once."""
INSTALLER = "installer"
"""Role: may register gateways."""


@dataclass(frozen=True, slots=True)
class Account(Record):
    """One account's money and counters."""

    balance: int = 0
    """Spendable satang (negative only after an imbalance charge)."""
    escrow: int = 0
    """Satang locked by open bids and unsettled trades."""
    seq: int = 0
    """Last `tx`-stream seq committed from this key (0 when none)."""
    traded_wh: int = 0
    """Settled energy bought or sold, Wh (stakeholder voting weight)."""


@dataclass(frozen=True, slots=True)
class Roles(Record):
    """The roles an account holds."""

    roles: tuple[str, ...] = ()
    """Role names, sorted (e.g. `authority`, `installer`)."""


def account(st: State, key: str) -> Account:
    """The account `key` (an empty one when unknown)."""
    acct = st.get("accounts", key)
    return acct if acct is not None else Account()


def _put(st: State, key: str, acct: Account) -> None:
    st.put("accounts", key, None if acct == Account() else acct)


def credit(st: State, key: str, amount: int) -> None:
    """Add `amount` satang to the balance of `key`."""
    if amount:
        acct = account(st, key)
        _put(st, key, dataclasses.replace(acct, balance=acct.balance + amount))


def debit(st: State, key: str, amount: int) -> None:
    """Take `amount` satang from the balance of `key` (may go negative; callers check)."""
    credit(st, key, -amount)


def move(st: State, src: str, dst: str, amount: int) -> None:
    """Move `amount` satang from the balance of `src` to that of `dst`."""
    if amount and src != dst:
        debit(st, src, amount)
        credit(st, dst, amount)


def lock(st: State, key: str, amount: int) -> None:
    """Move `amount` satang of `key` from balance to escrow."""
    acct = account(st, key)
    _put(
        st,
        key,
        dataclasses.replace(acct, balance=acct.balance - amount, escrow=acct.escrow + amount),
    )


def release(st: State, key: str, amount: int, pay_to: str | None = None, paid: int = 0) -> None:
    """Unlock `amount` satang of `key`'s escrow: `paid` of it goes to `pay_to`, the rest back.

    Raises:
        HubError: (a bug) escrow would go negative.
    """
    acct = account(st, key)
    if amount > acct.escrow or paid > amount:
        raise HubError(f"escrow of {key[:12]} would go negative: {acct.escrow} - {amount}")
    _put(
        st,
        key,
        dataclasses.replace(
            acct, escrow=acct.escrow - amount, balance=acct.balance + amount - paid
        ),
    )
    if paid and pay_to is not None:
        credit(st, pay_to, paid)


def bump_seq(st: State, key: str, seq: int) -> None:
    """Record `seq` as the last committed seq of `key`."""
    acct = account(st, key)
    _put(st, key, dataclasses.replace(acct, seq=seq))


def add_traded(st: State, key: str, wh: int) -> None:
    """Count `wh` of settled trade towards the stakeholder weight of `key` (and the total)."""
    if wh:
        acct = account(st, key)
        _put(st, key, dataclasses.replace(acct, traded_wh=acct.traded_wh + wh))
        per = st.params.gov_stake_wh_per_vote
        gained = (acct.traded_wh + wh) // per - acct.traded_wh // per if per else 0
        if gained:
            meta = st.meta()
            st.set_meta(dataclasses.replace(meta, stake_weight=meta.stake_weight + gained))


def recount_stake_weight(st: State) -> None:
    """Recount `Meta.stake_weight` over all accounts (after `gov_stake_wh_per_vote` changed)."""
    per = st.params.gov_stake_wh_per_vote
    total = 0
    if per:
        for _key, acct in st.ov.items("accounts"):
            total += acct.traded_wh // per
    st.set_meta(dataclasses.replace(st.meta(), stake_weight=total))


def require_funds(st: State, key: str, amount: int, what: str) -> None:
    """Refuse unless `key` can spend `amount` satang.

    Raises:
        TxRejected: the balance is short, saying by how much.
    """
    have = account(st, key).balance
    if have < amount:
        raise TxRejected(
            f"unfunded: {what} needs {amount} satang but the balance is {have}; "
            f"transfer at least {amount - have} satang to {key[:16]}… first"
        )


def charge_fee(st: State, key: str) -> None:
    """Take the transaction fee from `key` into the fee pool (funds checked beforehand)."""
    move(st, key, FEE_POOL, st.params.tx_fee)


def distribute_fees(st: State, validators: tuple[str, ...]) -> None:
    """Share the fee pool equally among `validators`; the remainder stays in the pool."""
    pool = account(st, FEE_POOL).balance
    if not validators or pool < len(validators):
        return
    each = pool // len(validators)
    for v in validators:
        move(st, FEE_POOL, v, each)


def roles(st: State, key: str) -> tuple[str, ...]:
    """Roles held by `key`."""
    rec = st.get("roles", key)
    return rec.roles if rec is not None else ()


def has_role(st: State, key: str, role: str) -> bool:
    """Whether `key` holds `role`."""
    return role in roles(st, key)


def set_roles(st: State, key: str, names: tuple[str, ...]) -> None:
    """Replace the roles of `key` (empty removes it from the role table)."""
    st.put("roles", key, Roles(tuple(sorted(set(names)))) if names else None)
