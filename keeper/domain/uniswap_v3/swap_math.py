"""SwapMath.computeSwapStep: one step of a swap within a range of constant liquidity."""

from __future__ import annotations

from dataclasses import dataclass

from keeper.domain.uniswap_v3.full_math import mul_div, mul_div_rounding_up
from keeper.domain.uniswap_v3.sqrt_price_math import (
    amount0_delta,
    amount1_delta,
    next_sqrt_price_from_input,
    next_sqrt_price_from_output,
)

FEE_DENOMINATOR = 1_000_000


@dataclass(frozen=True, slots=True)
class SwapStep:
    sqrt_price_next_x96: int
    amount_in: int
    amount_out: int
    fee_amount: int


def compute_swap_step(
    sqrt_price_current_x96: int, sqrt_price_target_x96: int, liquidity: int,
    amount_remaining: int, fee_pips: int,
) -> SwapStep:
    """How far the price moves toward the target, what goes in (less the fee), what comes out
    and the fee, for ``amount_remaining`` (> 0 exact input, < 0 exact output)."""
    zero_for_one = sqrt_price_current_x96 >= sqrt_price_target_x96
    exact_in = amount_remaining >= 0
    amount_in = amount_out = 0
    if exact_in:
        remaining_less_fee = mul_div(amount_remaining, FEE_DENOMINATOR - fee_pips, FEE_DENOMINATOR)
        amount_in = (amount0_delta(sqrt_price_target_x96, sqrt_price_current_x96, liquidity, True)
                     if zero_for_one else
                     amount1_delta(sqrt_price_current_x96, sqrt_price_target_x96, liquidity, True))
        if remaining_less_fee >= amount_in:
            sqrt_next = sqrt_price_target_x96
        else:
            sqrt_next = next_sqrt_price_from_input(sqrt_price_current_x96, liquidity,
                                                   remaining_less_fee, zero_for_one)
    else:
        amount_out = (amount1_delta(sqrt_price_target_x96, sqrt_price_current_x96, liquidity, False)
                      if zero_for_one else
                      amount0_delta(sqrt_price_current_x96, sqrt_price_target_x96, liquidity, False))
        if -amount_remaining >= amount_out:
            sqrt_next = sqrt_price_target_x96
        else:
            sqrt_next = next_sqrt_price_from_output(sqrt_price_current_x96, liquidity,
                                                    -amount_remaining, zero_for_one)
    reached = sqrt_price_target_x96 == sqrt_next
    if zero_for_one:
        if not (reached and exact_in):
            amount_in = amount0_delta(sqrt_next, sqrt_price_current_x96, liquidity, True)
        if not (reached and not exact_in):
            amount_out = amount1_delta(sqrt_next, sqrt_price_current_x96, liquidity, False)
    else:
        if not (reached and exact_in):
            amount_in = amount1_delta(sqrt_price_current_x96, sqrt_next, liquidity, True)
        if not (reached and not exact_in):
            amount_out = amount0_delta(sqrt_price_current_x96, sqrt_next, liquidity, False)
    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining  # the output never exceeds what was asked
    if exact_in and sqrt_next != sqrt_price_target_x96:
        fee_amount = amount_remaining - amount_in  # the rest of the input is the fee
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, FEE_DENOMINATOR - fee_pips)
    return SwapStep(sqrt_next, amount_in, amount_out, fee_amount)
