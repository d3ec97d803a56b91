"""WadRayMath / PercentageMath: half-up rounding and the contracts' overflow guards."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.domain.wadray import (
    HALF_PERCENTAGE_FACTOR,
    HALF_RAY,
    HALF_WAD,
    PERCENTAGE_FACTOR,
    RAY,
    UINT256_MAX,
    WAD,
    ArithmeticRevert,
    percent_div,
    percent_mul,
    ray_div,
    ray_mul,
    ray_to_wad,
    wad_div,
    wad_mul,
    wad_to_ray,
)
from keeper.errors import KeeperError

uint128 = st.integers(min_value=0, max_value=2**128 - 1)
positive_uint128 = st.integers(min_value=1, max_value=2**128 - 1)
bps = st.integers(min_value=0, max_value=2**16 - 1)


def half_up(x: Fraction) -> int:
    """Round a non-negative rational half up, the reference for every operation here."""
    floor = x.numerator // x.denominator
    return floor + 1 if x - floor >= Fraction(1, 2) else floor


def test_constants() -> None:
    assert (WAD, HALF_WAD, RAY, HALF_RAY) == (10**18, 5 * 10**17, 10**27, 5 * 10**26)
    assert (PERCENTAGE_FACTOR, HALF_PERCENTAGE_FACTOR) == (10_000, 5_000)


def test_worked_examples() -> None:
    # 1.5 wad * 2.5 wad = 3.75 wad
    assert wad_mul(15 * 10**17, 25 * 10**17) == 375 * 10**16
    # 1 wei * 0.5 wad = 0.5 wei -> rounds half UP to 1; 1 wei * 0.4999.. wad -> 0
    assert wad_mul(1, HALF_WAD) == 1
    assert wad_mul(1, HALF_WAD - 1) == 0
    # 2 / 3 in wad: 666666666666666666.67 -> ...667
    assert wad_div(2, 3) == 666_666_666_666_666_667
    # 1 ray / 3 rays = 0.333.. ray, floor (the remainder 1/3 < 1/2)
    assert ray_div(RAY, 3 * RAY) == 333_333_333_333_333_333_333_333_333
    assert ray_mul(RAY + 1, RAY + 1) == RAY + 2  # 1 + 2e-27 + 1e-54 rounds to 1 + 2e-27
    # 10_000 * 33.33% = 3333; 1 * 50.00% = 0.5 -> 1 (half up); 1 * 49.99% -> 0
    assert percent_mul(10_000, 3_333) == 3_333
    assert percent_mul(1, 5_000) == 1
    assert percent_mul(1, 4_999) == 0
    # 7500 / 105.00% = 7142.857.. -> 7143
    assert percent_div(7_500, 10_500) == 7_143
    assert ray_to_wad(1_499_999_999) == 1
    assert ray_to_wad(1_500_000_000) == 2  # remainder exactly half: up
    assert wad_to_ray(3) == 3 * 10**9


def test_division_by_zero_reverts() -> None:
    for fn in (wad_div, ray_div, percent_div):
        with pytest.raises(ArithmeticRevert):
            fn(1, 0)
    assert issubclass(ArithmeticRevert, KeeperError)
    assert issubclass(ArithmeticRevert, ValueError)


def test_overflow_guards_are_the_contracts() -> None:
    # rayMul reverts iff a > (MAX - HALF_RAY) / b: the exact boundary.
    b = 3 * RAY
    limit = (UINT256_MAX - HALF_RAY) // b
    assert ray_mul(limit, b) == (limit * b + HALF_RAY) // RAY
    with pytest.raises(ArithmeticRevert):
        ray_mul(limit + 1, b)
    assert ray_mul(UINT256_MAX, 0) == 0  # b == 0 never reverts
    limit = (UINT256_MAX - b // 2) // RAY
    assert ray_div(limit, b) > 0
    with pytest.raises(ArithmeticRevert):
        ray_div(limit + 1, b)
    with pytest.raises(ArithmeticRevert):
        wad_mul((UINT256_MAX - HALF_WAD) // 7 + 1, 7)
    with pytest.raises(ArithmeticRevert):
        wad_div((UINT256_MAX - 1) // WAD + 1, 3)
    with pytest.raises(ArithmeticRevert):
        percent_mul((UINT256_MAX - HALF_PERCENTAGE_FACTOR) // 10_500 + 1, 10_500)
    with pytest.raises(ArithmeticRevert):
        percent_div((UINT256_MAX - 5_250) // PERCENTAGE_FACTOR + 1, 10_500)
    with pytest.raises(ArithmeticRevert):
        wad_to_ray(UINT256_MAX // 10**9 + 1)
    with pytest.raises(ArithmeticRevert):
        ray_mul(-1, 1)


@given(uint128, uint128)
def test_wad_ray_mul_are_half_up(a: int, b: int) -> None:
    assert wad_mul(a, b) == half_up(Fraction(a * b, WAD))
    assert ray_mul(a, b) == half_up(Fraction(a * b, RAY))


@given(uint128, positive_uint128)
def test_wad_ray_div_are_half_up(a: int, b: int) -> None:
    # half_up of a*WAD/b differs from the contract's (a*WAD + b//2)//b only for odd b at exactly
    # .5, which cannot happen (an odd denominator never yields a half); so they agree everywhere.
    assert wad_div(a, b) == half_up(Fraction(a * WAD, b))
    assert ray_div(a, b) == half_up(Fraction(a * RAY, b))


@given(uint128, bps)
def test_percent_mul_is_half_up(value: int, percentage: int) -> None:
    assert percent_mul(value, percentage) == half_up(Fraction(value * percentage, 10_000))


@given(uint128, st.integers(min_value=1, max_value=2**16 - 1))
def test_percent_div_matches_contract_formula(value: int, percentage: int) -> None:
    # For even percentages this is exactly half up; for odd ones the contract adds
    # floor(percentage/2), which still rounds half up because a .5 cannot occur.
    assert percent_div(value, percentage) == half_up(Fraction(value * 10_000, percentage))


@given(uint128, st.integers(min_value=RAY, max_value=100 * RAY))
def test_ray_div_undoes_ray_mul_within_one(a: int, b: int) -> None:
    assert abs(ray_div(ray_mul(a, b), b) - a) <= 1


@given(st.integers(min_value=0, max_value=UINT256_MAX // 10**9))
def test_ray_to_wad_inverts_wad_to_ray(a: int) -> None:
    assert ray_to_wad(wad_to_ray(a)) == a
