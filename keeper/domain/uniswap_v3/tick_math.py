"""TickMath: the sqrt price of a tick, sqrt(1.0001^tick) in Q64.96, and the tick of a price.

``sqrt_ratio_at_tick`` multiplies, in Q128.128, the factor of each set bit of |tick| (each
factor is 1/sqrt(1.0001)^(2^i), truncated as the contract's table holds it), inverts for a
positive tick and rounds up into Q64.96: the same integers as the contract. ``tick_at_sqrt_ratio``
is defined by the contract as the greatest tick whose sqrt price is at most the given one; we
compute exactly that (a float estimate, corrected by the exact function), not the contract's
log2 series, which has the same result by its own specification.
"""

from __future__ import annotations

import functools
import math

from keeper.domain.amm import SwapRevert
from keeper.domain.uniswap_v3.full_math import UINT256_MAX

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
Q96 = 1 << 96

# 1/sqrt(1.0001)^(2^i) in Q128.128 for bit i of |tick| (bit 0's is applied as the start value).
_BIT_FACTORS: tuple[int, ...] = (
    0xFFFCB933BD6FAD37AA2D162D1A594001,
    0xFFF97272373D413259A46990580E213A,
    0xFFF2E50F5F656932EF12357CF3C7FDCC,
    0xFFE5CACA7E10E4E61C3624EAA0941CD0,
    0xFFCB9843D60F6159C9DB58835C926644,
    0xFF973B41FA98C081472E6896DFB254C0,
    0xFF2EA16466C96A3843EC78B326B52861,
    0xFE5DEE046A99A2A811C461F1969C3053,
    0xFCBE86C7900A88AEDCFFC83B479AA3A4,
    0xF987A7253AC413176F2B074CF7815E54,
    0xF3392B0822B70005940C7A398E4B70F3,
    0xE7159475A2C29B7443B29C7FA6E889D9,
    0xD097F3BDFD2022B8845AD8F792AA5825,
    0xA9F746462D870FDF8A65DC1F90E061E5,
    0x70D869A156D2A1B890BB3DF62BAF32F7,
    0x31BE135F97D08FD981231505542FCFA6,
    0x9AA508B5B7A84E1C677DE54F3E99BC9,
    0x5D6AF8DEDB81196699C329225EE604,
    0x2216E584F5FA1EA926041BEDFE98,
    0x48A170391F7DC42444E8FA2,
)
_LOG_SQRT_BASE = math.log(1.0001) / 2


@functools.lru_cache(maxsize=1 << 16)
def sqrt_ratio_at_tick(tick: int) -> int:
    """TickMath.getSqrtRatioAtTick: sqrt(1.0001^tick) × 2^96, rounded up; reverts 'T' past
    the tick range. Cached: a quote asks for the same few ticks again and again (1.55M calls,
    4.3 s of the 1,000-borrower crash's planning under a profiler)."""
    abs_tick = abs(tick)
    if abs_tick > MAX_TICK:
        raise SwapRevert("T")
    ratio = _BIT_FACTORS[0] if abs_tick & 1 else 1 << 128
    for bit in range(1, len(_BIT_FACTORS)):
        if abs_tick & (1 << bit):
            ratio = (ratio * _BIT_FACTORS[bit]) >> 128
    if tick > 0:
        ratio = UINT256_MAX // ratio
    return (ratio >> 32) + (1 if ratio & 0xFFFFFFFF else 0)


def tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """TickMath.getTickAtSqrtRatio: the greatest tick with ``sqrt_ratio_at_tick(tick)`` at most
    ``sqrt_price_x96``; reverts 'R' outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO)."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise SwapRevert("R")
    # log of a big int without float overflow: shift to 53 significant bits first.
    shift = max(sqrt_price_x96.bit_length() - 53, 0)
    log_price = math.log(sqrt_price_x96 >> shift) + (shift - 96) * math.log(2)
    tick = max(MIN_TICK, min(MAX_TICK, math.floor(log_price / _LOG_SQRT_BASE)))
    # The float estimate is within a tick or two; the exact function settles it.
    while tick > MIN_TICK and sqrt_ratio_at_tick(tick) > sqrt_price_x96:
        tick -= 1
    while tick < MAX_TICK and sqrt_ratio_at_tick(tick + 1) <= sqrt_price_x96:
        tick += 1
    return tick
