"""How the token events change one user's record (pure: a record in, a record out).

Scaled balances move by the scaled delta the token itself computed (see
``keeper.protocols.aave_v3.events``); stable debt is the token's stored principal, rate and
timestamp; a position with nothing left in it is dropped, so that the holders index only lists
users with a balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from keeper.domain.account import ReserveState, UserReserve
from keeper.domain.reserve_config import UserConfiguration
from keeper.protocols.aave_v3.book_state import A_TOKEN, VARIABLE_DEBT, BookError, UserRecord


def with_position(rec: UserRecord, asset: str, pos: UserReserve) -> UserRecord:
    """``rec`` holding ``pos`` in ``asset`` (or nothing there, when ``pos`` is empty)."""
    positions = dict(rec.positions)
    if pos.scaled_a_token_balance or pos.scaled_variable_debt or pos.stable_debt_principal:
        positions[asset] = pos
    else:
        positions.pop(asset, None)
    return replace(rec, positions=positions)


def with_scaled_delta(rec: UserRecord, asset: str, kind: str, delta: int, *, user: str,
                      token: str) -> UserRecord:
    """``rec`` after a scaled aToken or variable-debt balance change of ``delta``."""
    pos = rec.positions.get(asset, UserReserve())
    if kind == A_TOKEN:
        value = pos.scaled_a_token_balance + delta
        pos = replace(pos, scaled_a_token_balance=value)
    elif kind == VARIABLE_DEBT:
        value = pos.scaled_variable_debt + delta
        pos = replace(pos, scaled_variable_debt=value)
    else:
        return rec
    if value < 0:
        # The token would have reverted; the book missed an event. Fail loudly: a
        # silently wrong balance is worse than a re-index.
        raise BookError(f"scaled balance of {user} in {token} would be {value}")
    return with_position(rec, asset, pos)


def with_stable_debt(rec: UserRecord, asset: str, principal: int, rate: int | None,
                     timestamp: int) -> UserRecord:
    """``rec`` after a stable debt mint or burn left ``principal`` (``rate`` None: unchanged)."""
    pos = rec.positions.get(asset, UserReserve())
    if principal == 0:
        # A full repay clears the user's rate and timestamp in the token.
        pos = replace(pos, stable_debt_principal=0, stable_borrow_rate=0,
                      stable_last_update_timestamp=0)
    else:
        pos = replace(
            pos,
            stable_debt_principal=principal,
            stable_borrow_rate=pos.stable_borrow_rate if rate is None else rate,
            stable_last_update_timestamp=timestamp,
        )
    return with_position(rec, asset, pos)


def configuration_of(rec: UserRecord, reserves: Mapping[str, ReserveState]) -> UserConfiguration:
    """The Pool's configuration bits of a record: collateral from the flags the events set,
    borrowing wherever the user holds debt (see the book's module docstring for why)."""
    data = 0
    for asset in rec.collateral:
        r = reserves.get(asset)
        if r is not None:
            data |= 1 << (r.id * 2 + 1)
    for asset, pos in rec.positions.items():
        r = reserves.get(asset)
        if r is not None and (pos.scaled_variable_debt or pos.stable_debt_principal):
            data |= 1 << (r.id * 2)
    return UserConfiguration(data)
