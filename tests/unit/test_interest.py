"""MathUtils interest and ReserveLogic normalized income/debt, against hand-worked values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.domain.interest import (
    SECONDS_PER_YEAR,
    calculate_compounded_interest,
    calculate_linear_interest,
    normalized_debt,
    normalized_income,
    stable_debt_balance,
)
from keeper.domain.wadray import RAY, ArithmeticRevert

FIVE_PERCENT = 5 * 10**25  # 5% a year, in ray
DAY = 86_400
T0 = 1_700_000_000

rates = st.integers(min_value=0, max_value=10 * RAY)  # up to 1000% APR
elapsed = st.integers(min_value=0, max_value=5 * SECONDS_PER_YEAR)


def test_seconds_per_year_ignores_leap_years() -> None:
    assert SECONDS_PER_YEAR == 31_536_000


def test_linear_interest_one_day_at_5_percent() -> None:
    # RAY + 5e25 * 86400 // 31536000 = RAY + 136986301369863013698630 (floor of 1.3698..e23)
    assert calculate_linear_interest(FIVE_PERCENT, T0, T0 + DAY) == (
        1_000_136_986_301_369_863_013_698_630
    )
    assert calculate_linear_interest(FIVE_PERCENT, T0, T0) == RAY


def test_compounded_interest_one_year_at_5_percent() -> None:
    # exp = 31536000
    # basePowerTwo   = rayMul(5e25, 5e25) // 31536000**2 = 2.5e24 // 9.945e14 = 2513777269
    # basePowerThree = rayMul(2513777269, 5e25) // 31536000 = 125688863 // 31536000 = 3
    # second = exp*(exp-1)*2513777269 // 2        = 1249999960296101334408000
    # third  = exp*(exp-1)*(exp-2)*3 // 6         = 15681578767549087536000
    # RAY + 5e25 + second + third
    expected = (
        RAY + FIVE_PERCENT + 1_249_999_960_296_101_334_408_000 + 15_681_578_767_549_087_536_000
    )
    assert expected == 1_051_265_681_539_063_650_421_944_000
    assert calculate_compounded_interest(FIVE_PERCENT, T0, T0 + SECONDS_PER_YEAR) == expected
    # The three-term expansion undercharges e^0.05 = 1.0512710963760241 slightly, as documented.
    assert expected / RAY < math.exp(0.05)


def test_compounded_interest_short_exponents() -> None:
    assert calculate_compounded_interest(FIVE_PERCENT, T0, T0) == RAY
    # exp = 1: expMinusOne = 0, both higher terms vanish.
    assert calculate_compounded_interest(FIVE_PERCENT, T0, T0 + 1) == (
        RAY + FIVE_PERCENT // SECONDS_PER_YEAR
    )
    # exp = 2: expMinusTwo = 0 (the contract's "exp > 2 ? exp - 2 : 0"), third term vanishes.
    bp2 = (FIVE_PERCENT * FIVE_PERCENT + RAY // 2) // RAY // SECONDS_PER_YEAR**2
    assert calculate_compounded_interest(FIVE_PERCENT, T0, T0 + 2) == (
        RAY + FIVE_PERCENT * 2 // SECONDS_PER_YEAR + 2 * 1 * bp2 // 2
    )


def test_time_going_backwards_reverts() -> None:
    with pytest.raises(ArithmeticRevert):
        calculate_linear_interest(FIVE_PERCENT, T0, T0 - 1)
    with pytest.raises(ArithmeticRevert):
        calculate_compounded_interest(FIVE_PERCENT, T0, T0 - 1)


def test_normalized_income_and_debt() -> None:
    index = 1_020_000_000_000_000_000_000_000_000  # 1.02
    # Same block as the last update: the stored index, no arithmetic at all.
    assert normalized_income(index, FIVE_PERCENT, T0, T0) == index
    assert normalized_debt(index, FIVE_PERCENT, T0, T0) == index
    # One day later: rayMul(1.000136986301369863013698630, 1.02) = 1.020139726027397260273972603
    # (1.02 * 1.000136986.. = 1.0201397260273972602739726026 -> half up at the 27th decimal).
    assert normalized_income(index, FIVE_PERCENT, T0, T0 + DAY) == (
        1_020_139_726_027_397_260_273_972_603
    )
    compounded = calculate_compounded_interest(FIVE_PERCENT, T0, T0 + DAY)
    assert normalized_debt(index, FIVE_PERCENT, T0, T0 + DAY) == (
        (compounded * index + RAY // 2) // RAY
    )


def test_stable_debt_balance() -> None:
    assert stable_debt_balance(0, FIVE_PERCENT, T0, T0 + DAY) == 0
    principal = 1_000 * 10**6  # 1000 USDC
    # One year at 5%: 1000e6 * 1.051265681539063650421944 = 1051265681.539.. -> 1051265682
    assert stable_debt_balance(principal, FIVE_PERCENT, T0, T0 + SECONDS_PER_YEAR) == 1_051_265_682


@given(rates, elapsed)
def test_compounded_at_least_linear(rate: int, dt: int) -> None:
    # (1 + r/T)^n >= 1 + n r / T term by term, and so do the truncated expansions.
    linear = calculate_linear_interest(rate, T0, T0 + dt)
    assert calculate_compounded_interest(rate, T0, T0 + dt) >= linear >= RAY


@given(rates, elapsed, elapsed)
def test_indexes_monotone_in_time(rate: int, dt1: int, dt2: int) -> None:
    a, b = sorted((dt1, dt2))
    assert calculate_compounded_interest(rate, T0, T0 + a) <= (
        calculate_compounded_interest(rate, T0, T0 + b)
    )
    assert normalized_income(RAY, rate, T0, T0 + a) <= normalized_income(RAY, rate, T0, T0 + b)
