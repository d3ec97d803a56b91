"""Uniswap V3 integer math: tick math edges, rounding directions, a swap over a hand-made pool."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.domain.amm import SwapRevert
from keeper.domain.uniswap_v3.full_math import (
    UINT256_MAX,
    add_delta,
    div_rounding_up,
    mul_div,
    mul_div_rounding_up,
)
from keeper.domain.uniswap_v3.pool import PoolSnapshot, quote_exact_input, swap_exact_input
from keeper.domain.uniswap_v3.sqrt_price_math import (
    Q96,
    amount0_delta,
    amount1_delta,
    next_sqrt_price_from_input,
)
from keeper.domain.uniswap_v3.swap_math import compute_swap_step
from keeper.domain.uniswap_v3.tick_bitmap import (
    TickWindowExceeded,
    initialized_ticks,
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


def test_tick_range_ends_are_the_contract_constants() -> None:
    assert sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    assert sqrt_ratio_at_tick(0) == Q96
    assert tick_at_sqrt_ratio(MIN_SQRT_RATIO) == MIN_TICK
    assert tick_at_sqrt_ratio(MAX_SQRT_RATIO - 1) == MAX_TICK - 1


def test_tick_math_reverts_outside_its_range() -> None:
    with pytest.raises(SwapRevert, match="T"):
        sqrt_ratio_at_tick(MAX_TICK + 1)
    with pytest.raises(SwapRevert, match="T"):
        sqrt_ratio_at_tick(MIN_TICK - 1)
    with pytest.raises(SwapRevert, match="R"):
        tick_at_sqrt_ratio(MIN_SQRT_RATIO - 1)
    with pytest.raises(SwapRevert, match="R"):
        tick_at_sqrt_ratio(MAX_SQRT_RATIO)


def test_known_sqrt_prices() -> None:
    # Values the v3-core tests pin (TickMath.spec): ticks ±1 and ±50 around 1.0.
    assert sqrt_ratio_at_tick(1) == 79232123823359799118286999568
    assert sqrt_ratio_at_tick(-1) == 79224201403219477170569942574
    assert sqrt_ratio_at_tick(50) == 79426470787362580746886972461
    assert sqrt_ratio_at_tick(-50) == 79030349367926598376800521322


@settings(max_examples=300)
@given(st.integers(MIN_TICK, MAX_TICK - 1))
def test_tick_at_sqrt_ratio_is_the_greatest_tick_at_or_below(tick: int) -> None:
    price = sqrt_ratio_at_tick(tick)
    assert tick_at_sqrt_ratio(price) == tick
    assert tick_at_sqrt_ratio(sqrt_ratio_at_tick(tick + 1) - 1) == tick
    if tick > MIN_TICK:
        assert tick_at_sqrt_ratio(price - 1) == tick - 1


def test_full_math_rounding_and_reverts() -> None:
    assert mul_div(7, 3, 2) == 10
    assert mul_div_rounding_up(7, 3, 2) == 11
    assert mul_div_rounding_up(6, 3, 2) == 9
    assert mul_div(UINT256_MAX, UINT256_MAX, UINT256_MAX) == UINT256_MAX
    with pytest.raises(SwapRevert):
        mul_div(1, 1, 0)
    with pytest.raises(SwapRevert):
        mul_div(UINT256_MAX, 2, 1)
    with pytest.raises(SwapRevert):
        mul_div_rounding_up(UINT256_MAX, UINT256_MAX, UINT256_MAX - 1)
    assert div_rounding_up(7, 2) == 4 and div_rounding_up(0, 5) == 0 and div_rounding_up(3, 0) == 0
    with pytest.raises(SwapRevert, match="LS"):
        add_delta(5, -6)
    with pytest.raises(SwapRevert, match="LA"):
        add_delta(2**128 - 1, 1)


@settings(max_examples=200)
@given(st.integers(MIN_TICK + 1, MAX_TICK - 1), st.integers(MIN_TICK + 1, MAX_TICK - 1),
       st.integers(1, 2**100))
def test_amount_deltas_round_up_by_at_most_one(a: int, b: int, liquidity: int) -> None:
    sa, sb = sqrt_ratio_at_tick(a), sqrt_ratio_at_tick(b)
    for delta in (amount0_delta, amount1_delta):
        down, up = delta(sa, sb, liquidity, False), delta(sa, sb, liquidity, True)
        assert down <= up <= down + 1
        assert delta(sb, sa, liquidity, True) == up  # order of the prices does not matter


def test_next_price_from_input_rounds_toward_the_pool() -> None:
    # Selling token0 moves the price down, rounded up; selling token1 up, rounded down.
    price, liquidity = Q96, 10**18
    down = next_sqrt_price_from_input(price, liquidity, 10**15, True)
    up = next_sqrt_price_from_input(price, liquidity, 10**15, False)
    assert down < price < up
    assert amount0_delta(down, price, liquidity, True) <= 10**15
    assert amount1_delta(price, up, liquidity, True) <= 10**15 + 1
    with pytest.raises(SwapRevert):
        next_sqrt_price_from_input(price, 0, 1, True)


def test_swap_step_takes_the_rest_as_fee_when_it_stops_short() -> None:
    step = compute_swap_step(Q96, sqrt_ratio_at_tick(-600), 10**18, 10**12, 3000)
    assert step.amount_in + step.fee_amount == 10**12
    assert step.sqrt_price_next_x96 > sqrt_ratio_at_tick(-600)
    full = compute_swap_step(Q96, sqrt_ratio_at_tick(-10), 10**18, 10**30, 3000)
    assert full.sqrt_price_next_x96 == sqrt_ratio_at_tick(-10)
    assert full.fee_amount == mul_div_rounding_up(full.amount_in, 3000, 997_000)


def test_bitmap_steps_stop_at_word_ends_and_initialized_ticks() -> None:
    words = {0: (1 << 5) | (1 << 200), -1: 0}
    assert next_initialized_tick_within_one_word(words, 100, 10, True) == (50, True)
    assert next_initialized_tick_within_one_word(words, 49, 10, True) == (0, False)
    assert next_initialized_tick_within_one_word(words, 50, 10, False) == (2000, True)
    assert next_initialized_tick_within_one_word(words, 2000, 10, False) == (2550, False)
    assert next_initialized_tick_within_one_word(words, -1, 10, True) == (-2560, False)
    with pytest.raises(TickWindowExceeded):
        next_initialized_tick_within_one_word(words, 2550, 10, False)
    assert initialized_ticks(0, words[0], 10) == [50, 2000]
    assert initialized_ticks(-1, 1 << 255, 60) == [-60]


def _pool(liquidity_net: dict[int, int], liquidity: int, tick: int = 0) -> PoolSnapshot:
    words: dict[int, int] = {w: 0 for w in range(-2, 2)}
    for t in liquidity_net:
        c = t // 60
        words[c >> 8] |= 1 << (c & 0xFF)
    return PoolSnapshot("0xpool", "0x" + "11" * 20, "0x" + "22" * 20, 3000, 60,
                        sqrt_ratio_at_tick(tick), tick, liquidity, words, liquidity_net)


def test_swap_crosses_ticks_and_runs_out_at_the_window() -> None:
    # Positions on [-600, 600) and [-6000, 6000): selling token0 crosses -600, then sells
    # into the wide one alone; once that runs out too the swap walks off the known words.
    pool = _pool({-600: 10**18, 600: -10**18, -6000: 10**17, 6000: -10**17}, 11 * 10**17)
    small = swap_exact_input(pool, True, 10**15)
    assert small.ticks_crossed == 0 and 0 < small.amount_out < 10**15
    big = swap_exact_input(pool, True, 4 * 10**16)
    assert big.ticks_crossed == 1 and big.liquidity == 10**17 and -6000 < big.tick < -600
    assert big.amount_in == 4 * 10**16
    up = swap_exact_input(pool, False, 4 * 10**16)
    assert up.ticks_crossed == 1 and 600 <= up.tick < 6000
    # Past the last known word the answer is unknown, not zero.
    with pytest.raises(TickWindowExceeded):
        quote_exact_input(pool, pool.token0, 10**20)
    with pytest.raises(SwapRevert, match="AS"):
        swap_exact_input(pool, True, 0)
    with pytest.raises(SwapRevert):
        pool.zero_for_one("0x" + "33" * 20)
