"""Interest accrual as Aave V3 computes it (MathUtils, ReserveLogic, StableDebtToken).

v3.0 expands the compounding in three separately truncated terms; the 3.5+ Pools compute the
same series from ``x = rate * n / T`` (``compounded_interest_short``). ``normalized_debt`` picks
by revision.

Timestamps are unix seconds; rates and indexes are rays. ``now`` is the block timestamp the
contract would see: the keeper passes the timestamp of the block it evaluates against.
"""

from __future__ import annotations

import functools

from keeper.domain.revision import AaveRevision
from keeper.domain.wadray import RAY, UINT256_MAX, ArithmeticRevert, check_uint256, ray_mul

SECONDS_PER_YEAR = 365 * 24 * 60 * 60


def _elapsed(last_update_timestamp: int, now: int) -> int:
    # Checked subtraction in the contract: a "now" before the last update is a revert there, and a
    # bug in our book here, so it must not silently produce a negative exponent.
    if now < last_update_timestamp:
        raise ArithmeticRevert(f"timestamp {now} is before last update {last_update_timestamp}")
    return now - last_update_timestamp


def calculate_linear_interest(rate: int, last_update_timestamp: int, now: int) -> int:
    """MathUtils.calculateLinearInterest: ``RAY + rate * elapsed / SECONDS_PER_YEAR`` (floor)."""
    result = check_uint256(rate * _elapsed(last_update_timestamp, now), "linear interest")
    return check_uint256(RAY + result // SECONDS_PER_YEAR, "linear interest")


def calculate_compounded_interest(rate: int, last_update_timestamp: int, now: int) -> int:
    """MathUtils.calculateCompoundedInterest: the 3-term binomial expansion of (1+r/T)^n.

    Term by term as v3.0 writes it, including where it divides (and so truncates):
    ``RAY + rate*n/T + n(n-1)*(rate²/T²)/2 + n(n-1)(n-2)*(rate³/T³)/6``, with
    ``rate²/T² = rayMul(rate, rate) // T²`` and ``rate³/T³ = rayMul(rate²/T², rate) // T``.
    """
    exp = _elapsed(last_update_timestamp, now)
    if exp == 0:
        return RAY
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    base_power_two = ray_mul(rate, rate) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base_power_three = ray_mul(base_power_two, rate) // SECONDS_PER_YEAR

    second_term = check_uint256(exp * exp_minus_one * base_power_two, "second term") // 2
    third_term = (
        check_uint256(exp * exp_minus_one * exp_minus_two * base_power_three, "third term") // 6
    )
    first_term = check_uint256(rate * exp, "first term") // SECONDS_PER_YEAR
    return check_uint256(RAY + first_term + second_term + third_term, "compounded interest")


def compounded_interest_short(rate: int, last_update_timestamp: int, now: int) -> int:
    """MathUtils.calculateCompoundedInterest of the 3.5+ Pools:
    ``RAY + x + rayMul(x, x/2 + rayMul(x, x/6))`` with ``x = rate * n / T`` (floor).

    The Solidity sums in an ``unchecked`` block: the additions wrap modulo 2**256 there, and so
    they do here (only the rayMuls revert on overflow).
    """
    exp = _elapsed(last_update_timestamp, now)
    if exp == 0:
        return RAY
    x = (rate * exp & UINT256_MAX) // SECONDS_PER_YEAR
    inner = (x // 2 + ray_mul(x, x // 6)) & UINT256_MAX
    return (RAY + x + ray_mul(x, inner)) & UINT256_MAX


# Pure functions of a reserve's state and a timestamp, asked for the same reserve and second
# many times over: a liquidation quote asks for the debt index three times, and the 10,000-
# borrower crash's planning asked 83,703 times of a handful of (reserve, second) keys.
_INDEX_CACHE = 4096


@functools.lru_cache(maxsize=_INDEX_CACHE)
def normalized_income(
    liquidity_index: int, liquidity_rate: int, last_update_timestamp: int, now: int
) -> int:
    """ReserveLogic.getNormalizedIncome: the liquidity index as of ``now`` (ray).

    Supply interest accrues linearly between index updates.
    """
    if last_update_timestamp == now:
        return liquidity_index
    return ray_mul(
        calculate_linear_interest(liquidity_rate, last_update_timestamp, now), liquidity_index
    )


@functools.lru_cache(maxsize=_INDEX_CACHE)
def normalized_debt(
    variable_borrow_index: int,
    variable_borrow_rate: int,
    last_update_timestamp: int,
    now: int,
    revision: AaveRevision = AaveRevision.V3_0,
) -> int:
    """ReserveLogic.getNormalizedDebt: the variable borrow index as of ``now`` (ray).

    Borrow interest compounds (binomial approximation) between index updates.
    """
    if last_update_timestamp == now:
        return variable_borrow_index
    compound = (
        compounded_interest_short if revision.has_directed_rounding
        else calculate_compounded_interest
    )
    return ray_mul(
        compound(variable_borrow_rate, last_update_timestamp, now), variable_borrow_index
    )


def stable_debt_balance(
    principal: int, stable_rate: int, last_update_timestamp: int, now: int
) -> int:
    """StableDebtToken.balanceOf: the user's stable principal compounded at their own rate.

    ``principal`` is the stored (non-scaled) balance, ``stable_rate`` the user's rate and
    ``last_update_timestamp`` the user's timestamp, all as the token stores them per user.
    """
    if principal == 0:
        return 0
    return ray_mul(
        principal, calculate_compounded_interest(stable_rate, last_update_timestamp, now)
    )
