"""UniswapV2Library quotes: worked examples and the constant-product properties."""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from keeper.domain.amm import (
    SwapRevert,
    get_amount_in,
    get_amount_out,
    get_amounts_in,
    get_amounts_out,
    get_reserves,
    sort_tokens,
)
from keeper.domain.wadray import ArithmeticRevert

WETH = "0x00000000000000000000000000000000000000e1"
USDC = "0x0000000000000000000000000000000000000005"
WBTC = "0x00000000000000000000000000000000000000b7"

# 1000 WETH / 2,000,000 USDC and 10 WBTC / 200 WETH, keyed by the sorted pair.
RESERVES = {
    (USDC, WETH): (2_000_000 * 10**6, 1_000 * 10**18),
    (WBTC, WETH): (10 * 10**8, 200 * 10**18),
}


def test_get_amount_out_worked_example() -> None:
    # 1 WETH in: 997e18 * 2e12 // (1000e18 * 1000 + 997e18) = 1994e30 // 1000997e18
    assert get_amount_out(10**18, 1_000 * 10**18, 2_000_000 * 10**6) == 1_992_013_962


def test_get_amount_in_worked_example() -> None:
    # 2000 USDC out: 1000e18 * 2000e6 * 1000 // ((2e12 - 2000e6) * 997) + 1
    assert get_amount_in(2_000 * 10**6, 1_000 * 10**18, 2_000_000 * 10**6) == (
        1_004_013_040_121_365_097
    )


def test_sort_and_reserves() -> None:
    assert sort_tokens(WETH, USDC) == (USDC, WETH)
    assert get_reserves(RESERVES, WETH, USDC) == (1_000 * 10**18, 2_000_000 * 10**6)
    assert get_reserves(RESERVES, USDC, WETH) == (2_000_000 * 10**6, 1_000 * 10**18)
    with pytest.raises(SwapRevert):
        sort_tokens(WETH, WETH)
    with pytest.raises(SwapRevert):
        get_reserves(RESERVES, USDC, WBTC)


def test_paths() -> None:
    amounts = get_amounts_out(10**8, [WBTC, WETH, USDC], RESERVES)
    weth = get_amount_out(10**8, 10 * 10**8, 200 * 10**18)
    usdc = get_amount_out(weth, 1_000 * 10**18, 2_000_000 * 10**6)
    assert amounts == [10**8, weth, usdc]
    back = get_amounts_in(usdc, [WBTC, WETH, USDC], RESERVES)
    assert back[-1] == usdc
    assert back[1] == get_amount_in(usdc, 1_000 * 10**18, 2_000_000 * 10**6)
    assert back[0] == get_amount_in(back[1], 10 * 10**8, 200 * 10**18)
    with pytest.raises(SwapRevert):
        get_amounts_out(1, [WETH], RESERVES)


def test_reverts() -> None:
    with pytest.raises(SwapRevert, match="INSUFFICIENT_INPUT_AMOUNT"):
        get_amount_out(0, 1, 1)
    with pytest.raises(SwapRevert, match="INSUFFICIENT_LIQUIDITY"):
        get_amount_out(1, 0, 1)
    with pytest.raises(SwapRevert, match="INSUFFICIENT_OUTPUT_AMOUNT"):
        get_amount_in(0, 1, 1)
    with pytest.raises(SwapRevert):
        get_amount_in(10, 100, 10)  # the whole reserve cannot be bought


reserve = st.integers(min_value=10**3, max_value=10**30)
amount = st.integers(min_value=1, max_value=10**30)


@given(amount, reserve, reserve)
def test_constant_product_never_decreases(x: int, r_in: int, r_out: int) -> None:
    out = get_amount_out(x, r_in, r_out)
    assert out < r_out
    # The pair's check: (r_in*1000 + x*997) * (r_out - out)*1000 >= r_in*r_out*1000**2 ...
    assert (r_in * 1000 + x * 997) * (r_out - out) >= r_in * r_out * 1000


@given(amount, reserve, reserve)
@example(y=999_999_999_999_996_525_771_171_785_295, r_in=115_792_089_237_317,
         r_out=999_999_999_999_996_525_771_171_785_296)  # found by a CI run of session 20
def test_amount_in_buys_at_least_the_amount_out(y: int, r_in: int, r_out: int) -> None:
    assume(y < r_out)
    if r_in * y * 1000 >= 2**256:
        # The library's SafeMath reverts on the overflowing numerator; so must the quote.
        with pytest.raises(ArithmeticRevert):
            get_amount_in(y, r_in, r_out)
        return
    x = get_amount_in(y, r_in, r_out)
    if x * 997 * r_out >= 2**256:
        # An input that large overflows getAmountOut's numerator: the pair would revert on
        # it, and so does the quote (a 1.2e14-unit reserve paying out all but one unit).
        with pytest.raises(ArithmeticRevert):
            get_amount_out(x, r_in, r_out)
        return
    assert get_amount_out(x, r_in, r_out) >= y
    # getAmountIn is floor(N/D) + 1, the minimal input ceil(N/D) or one more: two wei less
    # is never enough.
    if x > 2:
        assert get_amount_out(x - 2, r_in, r_out) < y
