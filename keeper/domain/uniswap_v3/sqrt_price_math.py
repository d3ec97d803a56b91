"""SqrtPriceMath: the next sqrt price after adding or removing an amount, and the amounts of
token0 and token1 between two sqrt prices, rounded always in the pool's favour."""

from __future__ import annotations

from keeper.domain.amm import SwapRevert
from keeper.domain.uniswap_v3.full_math import (
    UINT160_MAX,
    UINT256_MAX,
    div_rounding_up,
    mul_div,
    mul_div_rounding_up,
    to_uint160,
)

RESOLUTION = 96
Q96 = 1 << RESOLUTION


def next_sqrt_price_from_amount0_rounding_up(
    sqrt_price_x96: int, liquidity: int, amount: int, add: bool
) -> int:
    """The price after ``amount`` of token0 enters (``add``) or leaves the pool, rounded up:
    L·√P / (L ± x·√P), or the overflow-safe L / (L/√P ± x) form when x·√P overflows."""
    if amount == 0:
        return sqrt_price_x96
    numerator1 = liquidity << RESOLUTION
    product = amount * sqrt_price_x96
    if add:
        if product <= UINT256_MAX:
            denominator = numerator1 + product
            if denominator <= UINT256_MAX:
                return mul_div_rounding_up(numerator1, sqrt_price_x96, denominator)
        return div_rounding_up(numerator1, numerator1 // sqrt_price_x96 + amount)
    if product > UINT256_MAX or numerator1 <= product:
        raise SwapRevert("SqrtPriceMath: token0 output exceeds the price range")
    return to_uint160(mul_div_rounding_up(numerator1, sqrt_price_x96, numerator1 - product))


def next_sqrt_price_from_amount1_rounding_down(
    sqrt_price_x96: int, liquidity: int, amount: int, add: bool
) -> int:
    """The price after ``amount`` of token1 enters (``add``) or leaves the pool, rounded down:
    √P ± y / L."""
    if add:
        quotient = ((amount << RESOLUTION) // liquidity if amount <= UINT160_MAX
                    else mul_div(amount, Q96, liquidity))
        return to_uint160(sqrt_price_x96 + quotient)
    quotient = (div_rounding_up(amount << RESOLUTION, liquidity) if amount <= UINT160_MAX
                else mul_div_rounding_up(amount, Q96, liquidity))
    if sqrt_price_x96 <= quotient:
        raise SwapRevert("SqrtPriceMath: token1 output exceeds the price range")
    return sqrt_price_x96 - quotient


def next_sqrt_price_from_input(
    sqrt_price_x96: int, liquidity: int, amount_in: int, zero_for_one: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromInput: rounds so the price does not pass the target."""
    if sqrt_price_x96 <= 0 or liquidity <= 0:
        raise SwapRevert("SqrtPriceMath: zero price or liquidity")
    if zero_for_one:
        return next_sqrt_price_from_amount0_rounding_up(sqrt_price_x96, liquidity, amount_in, True)
    return next_sqrt_price_from_amount1_rounding_down(sqrt_price_x96, liquidity, amount_in, True)


def next_sqrt_price_from_output(
    sqrt_price_x96: int, liquidity: int, amount_out: int, zero_for_one: bool
) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromOutput."""
    if sqrt_price_x96 <= 0 or liquidity <= 0:
        raise SwapRevert("SqrtPriceMath: zero price or liquidity")
    if zero_for_one:
        return next_sqrt_price_from_amount1_rounding_down(sqrt_price_x96, liquidity, amount_out,
                                                          False)
    return next_sqrt_price_from_amount0_rounding_up(sqrt_price_x96, liquidity, amount_out, False)


def amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """Token0 between two prices: L·(√B − √A) / (√A·√B), in the given rounding."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if sqrt_a <= 0:
        raise SwapRevert("SqrtPriceMath: zero price")
    numerator1 = liquidity << RESOLUTION
    numerator2 = sqrt_b - sqrt_a
    if round_up:
        return div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """Token1 between two prices: L·(√B − √A), in the given rounding."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)
