"""A cheap upper bound on the profit of every size of one liquidation: what lets the planner
skip the pairs, routes and fundings that cannot beat the best one found (pure, no IO).

Two facts bound the gross profit ``out(c(d)) - d - premium(d)`` of any ``debt_to_cover`` d up
to the largest the Pool takes:

- the collateral the Pool pays is linear in the debt (the bonus-inflated price ratio ``k``,
  floored): ``c(d) <= d * k + 1``, and ``k <= (c_full + 1) / d_full`` from the largest quote,
  whether the close factor or the user's collateral capped it;
- every route is concave with ``out(0) = 0`` (a constant-product pool, a V3 pool crossing
  ticks, a path of them, a split among them), so ``out(c) / c`` falls with ``c``: past a small
  probe ``s``, ``out(c) <= c * (out(s) + 1) / s`` (the +1 undoes the pool's floor), and below
  it ``out(c) <= out(s)``.

So the profit is at most a linear function of d, largest at one end. A few units of margin
cover the Pool's rounding of the protocol fee. Measured on the 1,000-borrower crash: the
planner optimises ~1.3 options an account instead of ~3.8.
"""

from __future__ import annotations

from keeper.domain.amm import SwapRevert
from keeper.domain.liquidation import LiquidationRevert
from keeper.domain.profit import PairQuotes, SwapOut, full_quote

# The probe sells this fraction of the largest seizure: small enough that sizes below it
# cannot matter, large enough that the pool's floor on its answer is a tiny relative error.
_PROBE_FRACTION = 10**4
# Units added for the Pool's rounding (collateral floor, protocol fee, interest index).
_ROUNDING = 4


def profit_ceiling(quotes: PairQuotes, swap: SwapOut | None, max_debt_to_cover: int) -> int | None:
    """At least the gross profit (debt-asset units) of every executable size of this pair up
    to ``max_debt_to_cover``, whatever the flash premium; None when the route cannot be probed
    (its pool refuses even a small sale), so that nothing is skipped on its account.

    Raises LiquidationRevert as ``optimise_liquidation`` does for the pair (healthy account,
    paused reserve, grace period...), or INVALID_AMOUNT when no debt can be covered.
    """
    if max_debt_to_cover <= 0:
        raise LiquidationRevert("INVALID_AMOUNT", "nothing available to repay with")
    full = full_quote(quotes)
    top = min(full.debt_to_cover_actual, max_debt_to_cover)
    if top <= 0:
        raise LiquidationRevert("INVALID_AMOUNT", "no debt can be covered")
    c_full, d_full = full.collateral_to_liquidator, full.debt_to_cover_actual
    # Collateral per unit of debt, from above: k <= k_num / d_full.
    k_num = c_full + _ROUNDING
    if swap is None:
        r_num, r_den, small = 1, 1, 0  # the collateral is the debt asset: no sale
    else:
        probe = max(c_full // _PROBE_FRACTION, 1)
        try:
            sold = swap(probe)
        except SwapRevert:
            return None
        r_num, r_den, small = sold + 1, probe, sold
    # profit(d) <= (d * k + R) * r - d over 1 <= d <= top: linear, so at an end.
    den = d_full * r_den
    slope_num = k_num * r_num - den  # (k * r - 1) * den
    at_top = -(-top * slope_num // den)
    at_one = -(-slope_num // den)
    rounding = -(-_ROUNDING * r_num // r_den)
    return max(small, at_top, at_one) + rounding + _ROUNDING
