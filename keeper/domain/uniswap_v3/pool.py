"""An exact-input swap over a snapshot of a Uniswap V3 pool, as UniswapV3Pool.swap runs it.

The snapshot holds what the swap reads: slot0's price and tick, the in-range liquidity, the fee
and tick spacing, the tick bitmap words around the price and the ``liquidityNet`` of every
initialized tick in them. A swap that would step into a word outside the snapshot raises
``TickWindowExceeded`` rather than guess what lies there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from keeper.domain.amm import SwapRevert
from keeper.domain.uniswap_v3.full_math import add_delta
from keeper.domain.uniswap_v3.swap_math import compute_swap_step
from keeper.domain.uniswap_v3.tick_bitmap import (
    TickWindowExceeded,
    next_initialized_tick_within_one_word,
)
from keeper.domain.uniswap_v3.tick_math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    sqrt_ratio_at_tick,
    tick_at_sqrt_ratio,
)

INT256_MAX = (1 << 255) - 1


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """What a swap of one Uniswap V3 pool reads, at one block. Addresses are lower-case."""

    address: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    words: Mapping[int, int] = field(default_factory=dict)
    """Tick bitmap words by word position; only these words are known."""
    liquidity_net: Mapping[int, int] = field(default_factory=dict)
    """liquidityNet of every initialized tick in ``words``."""

    def zero_for_one(self, token_in: str) -> bool:
        """Whether selling ``token_in`` sells token0."""
        token_in = token_in.lower()
        if token_in == self.token0:
            return True
        if token_in == self.token1:
            return False
        raise SwapRevert(f"{token_in} is not a token of pool {self.address}")


@dataclass(frozen=True, slots=True)
class SwapResult:
    amount_in: int
    """Input consumed (the whole amount unless the price limit stopped the swap)."""
    amount_out: int
    sqrt_price_x96: int
    known_tick: int | None
    """The pool's tick when known without a log (after a crossing, or unmoved); None when the
    swap ended between two ticks."""
    liquidity: int
    ticks_crossed: int

    @property
    def tick(self) -> int:
        """The pool's tick after the swap. Worked out only when asked: a quote needs the
        output alone, and the log of the price was a third of a V3 quote's time (517k calls,
        4.5 s of the 1,000-borrower crash's planning under a profiler)."""
        if self.known_tick is not None:
            return self.known_tick
        return tick_at_sqrt_ratio(self.sqrt_price_x96)


def swap_exact_input(pool: PoolSnapshot, zero_for_one: bool, amount_in: int,
                     sqrt_price_limit_x96: int = 0) -> SwapResult:
    """UniswapV3Pool.swap with a positive ``amountSpecified``: the output and the pool after.

    A limit of 0 means none, as QuoterV2 and SwapRouter pass it (MIN/MAX_SQRT_RATIO ± 1).
    """
    if amount_in <= 0 or amount_in > INT256_MAX:
        raise SwapRevert("AS")
    limit = sqrt_price_limit_x96 or (MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1)
    if zero_for_one:
        if not (MIN_SQRT_RATIO < limit < pool.sqrt_price_x96):
            raise SwapRevert("SPL")
    elif not (pool.sqrt_price_x96 < limit < MAX_SQRT_RATIO):
        raise SwapRevert("SPL")
    remaining, out = amount_in, 0
    sqrt_price, tick, liquidity, crossed = pool.sqrt_price_x96, pool.tick, pool.liquidity, 0
    final: int | None = tick  # the tick, while it is known without a log
    while remaining != 0 and sqrt_price != limit:
        start = sqrt_price
        tick_next, initialized = next_initialized_tick_within_one_word(
            pool.words, tick, pool.tick_spacing, zero_for_one)
        tick_next = max(MIN_TICK, min(MAX_TICK, tick_next))
        price_next = sqrt_ratio_at_tick(tick_next)
        beyond = price_next < limit if zero_for_one else price_next > limit
        step = compute_swap_step(sqrt_price, limit if beyond else price_next, liquidity,
                                 remaining, pool.fee)
        sqrt_price = step.sqrt_price_next_x96
        remaining -= step.amount_in + step.fee_amount
        out += step.amount_out
        if sqrt_price == price_next:
            if initialized:
                net = _liquidity_net(pool, tick_next)
                liquidity = add_delta(liquidity, -net if zero_for_one else net)
                crossed += 1
            tick = tick_next - 1 if zero_for_one else tick_next
            final = tick
        elif sqrt_price != start:
            # Between two ticks: all the input is in, or the limit is hit, so the loop ends
            # here and only the result's tick depends on it (see SwapResult.tick).
            final = None
    return SwapResult(amount_in - remaining, out, sqrt_price, final, liquidity, crossed)


def _liquidity_net(pool: PoolSnapshot, tick: int) -> int:
    try:
        return pool.liquidity_net[tick]
    except KeyError:
        raise TickWindowExceeded(f"tick {tick} of {pool.address} is not in the snapshot") from None


def quote_exact_input(pool: PoolSnapshot, token_in: str, amount_in: int) -> int:
    """The exact output of selling ``amount_in`` of ``token_in`` in the pool, all of it.

    A swap the price limit stops short (the pool runs out of liquidity) raises SwapRevert:
    the liquidator would be left holding unsold collateral.
    """
    result = swap_exact_input(pool, pool.zero_for_one(token_in), amount_in)
    if result.amount_in != amount_in:
        raise SwapRevert(f"pool {pool.address} has liquidity for {result.amount_in} of "
                         f"{amount_in} only")
    if result.amount_out <= 0:
        raise SwapRevert(f"pool {pool.address}: zero output")
    return result.amount_out
