"""Uniswap V2 swap quotes, integer for integer as UniswapV2Library computes them (0.3% fee)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

from keeper.domain.wadray import check_uint256
from keeper.errors import KeeperError


class SwapRevert(KeeperError, ValueError):
    """The router would revert this quote; the message is UniswapV2Library's."""


PairReserves = Mapping[tuple[str, str], tuple[int, int]]
"""Reserves by pair, keyed ``(token0, token1)`` in Uniswap's sorted order, as getReserves()."""


def sort_tokens(token_a: str, token_b: str) -> tuple[str, str]:
    """UniswapV2Library.sortTokens: order two token addresses by numeric value."""
    if int(token_a, 16) == int(token_b, 16):
        raise SwapRevert("UniswapV2Library: IDENTICAL_ADDRESSES")
    token0, token1 = (
        (token_a, token_b) if int(token_a, 16) < int(token_b, 16) else (token_b, token_a)
    )
    if int(token0, 16) == 0:
        raise SwapRevert("UniswapV2Library: ZERO_ADDRESS")
    return token0, token1


def get_reserves(reserves: PairReserves, token_a: str, token_b: str) -> tuple[int, int]:
    """UniswapV2Library.getReserves: the pair's reserves ordered as (token_a, token_b)."""
    token0, token1 = sort_tokens(token_a, token_b)
    try:
        reserve0, reserve1 = reserves[(token0, token1)]
    except KeyError:
        raise SwapRevert(f"no pair for {token0}/{token1}") from None
    return (reserve0, reserve1) if token_a == token0 else (reserve1, reserve0)


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: the output for ``amount_in`` after the 0.3% fee (floor)."""
    if amount_in <= 0:
        raise SwapRevert("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise SwapRevert("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    amount_in_with_fee = check_uint256(amount_in * 997, "amountIn")
    numerator = check_uint256(amount_in_with_fee * reserve_out, "numerator")
    denominator = check_uint256(reserve_in * 1000 + amount_in_with_fee, "denominator")
    return numerator // denominator


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountIn: the input needed for ``amount_out`` (floor + 1)."""
    if amount_out <= 0:
        raise SwapRevert("UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise SwapRevert("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    if amount_out >= reserve_out:
        # SafeMath sub underflow, or a division by zero at equality: the pair cannot pay it out.
        raise SwapRevert("UniswapV2Library: amountOut exceeds reserve")
    numerator = check_uint256(reserve_in * amount_out * 1000, "numerator")
    denominator = (reserve_out - amount_out) * 997
    return numerator // denominator + 1


def get_amounts_out(amount_in: int, path: Sequence[str], reserves: PairReserves) -> list[int]:
    """UniswapV2Library.getAmountsOut: the amount after each hop of ``path`` (first = input)."""
    if len(path) < 2:
        raise SwapRevert("UniswapV2Library: INVALID_PATH")
    amounts = [amount_in]
    for token_in, token_out in pairwise(path):
        reserve_in, reserve_out = get_reserves(reserves, token_in, token_out)
        amounts.append(get_amount_out(amounts[-1], reserve_in, reserve_out))
    return amounts


def get_amounts_in(amount_out: int, path: Sequence[str], reserves: PairReserves) -> list[int]:
    """UniswapV2Library.getAmountsIn: the amount needed before each hop (last = output)."""
    if len(path) < 2:
        raise SwapRevert("UniswapV2Library: INVALID_PATH")
    amounts = [amount_out]
    for i in range(len(path) - 1, 0, -1):
        reserve_in, reserve_out = get_reserves(reserves, path[i - 1], path[i])
        amounts.insert(0, get_amount_in(amounts[0], reserve_in, reserve_out))
    return amounts
