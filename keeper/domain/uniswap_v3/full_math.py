"""FullMath and UnsafeMath of Uniswap V3: products and quotients of uint256 with exact rounding.

Python's integers hold the 512-bit product, so the only work is the contract's checks: a zero
denominator and a result that does not fit 256 bits revert.
"""

from __future__ import annotations

from keeper.domain.amm import SwapRevert

UINT256_MAX = (1 << 256) - 1
UINT160_MAX = (1 << 160) - 1
UINT128_MAX = (1 << 128) - 1


def mul_div(a: int, b: int, denominator: int) -> int:
    """floor(a × b / denominator); reverts when the denominator is 0 or the result overflows."""
    if denominator <= 0:
        raise SwapRevert("FullMath: division by zero")
    result = a * b // denominator
    if result > UINT256_MAX:
        raise SwapRevert("FullMath: result overflows uint256")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """ceil(a × b / denominator), with the same reverts as ``mul_div``."""
    result = mul_div(a, b, denominator)
    if (a * b) % denominator:
        if result >= UINT256_MAX:
            raise SwapRevert("FullMath: rounded result overflows uint256")
        result += 1
    return result


def div_rounding_up(x: int, y: int) -> int:
    """UnsafeMath.divRoundingUp: ceil(x / y); y = 0 gives 0 in the EVM (no revert)."""
    if y == 0:
        return 0
    return -(-x // y)


def to_uint160(x: int) -> int:
    """SafeCast.toUint160."""
    if not 0 <= x <= UINT160_MAX:
        raise SwapRevert("SafeCast: value does not fit uint160")
    return x


def add_delta(liquidity: int, delta: int) -> int:
    """LiquidityMath.addDelta: liquidity + a signed delta, reverting outside uint128 (LS / LA)."""
    result = liquidity + delta
    if result < 0:
        raise SwapRevert("LS")
    if result > UINT128_MAX:
        raise SwapRevert("LA")
    return result
