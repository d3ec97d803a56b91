"""The size search of the profit model: outcomes by size (each evaluated once, the sizes the
Pool refuses told apart from the pairs it refuses), the variable searched and how it maps to a
debt amount, the edge of the sizes that execute, and the most profitable of those found."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from keeper.domain.account import Market
from keeper.domain.amm import SwapRevert
from keeper.domain.liquidation import VIRTUAL_BALANCE_SHORT, LiquidationQuote, LiquidationRevert
from keeper.domain.wadray import ArithmeticRevert, asset_unit

if TYPE_CHECKING:
    from keeper.domain.profit import Outcome

# Revert reasons that mean "this size is not executable", as opposed to "this pair is not".
SIZE_REVERTS = frozenset({"MUST_NOT_LEAVE_DUST", "INVALID_BURN_AMOUNT", VIRTUAL_BALANCE_SHORT})
# Size reverts of every size from some point up to (and maybe excluding) the largest: the
# search stays below them.
LARGE_SIZE_REVERTS = frozenset({"MUST_NOT_LEAVE_DUST", VIRTUAL_BALANCE_SHORT})


class Sizes:
    """Outcomes by size, each evaluated once; a size that cannot execute is recorded as None
    and its revert kept in ``errors`` (a pair-level revert propagates)."""

    def __init__(self, outcome: Callable[[int], Outcome], to_debt: Callable[[int], int]) -> None:
        self._outcome = outcome
        self._to_debt = to_debt
        self._outcomes: dict[int, Outcome] = {}
        self.errors: list[Exception] = []

    def at_debt(self, d: int) -> Outcome | None:
        """The outcome of repaying ``d`` of the debt, None when that size reverts."""
        if d not in self._outcomes:
            try:
                self._outcomes[d] = self._outcome(d)
            except LiquidationRevert as exc:
                if exc.reason not in SIZE_REVERTS:
                    raise
                self.errors.append(exc)
                return None
            except (SwapRevert, ArithmeticRevert) as exc:
                self.errors.append(exc)
                return None
        return self._outcomes[d]

    def at(self, x: int) -> Outcome | None:
        """The outcome at search variable ``x``."""
        return self.at_debt(self._to_debt(x))

    def profit(self, x: int) -> int | None:
        """The gross profit at search variable ``x``, None when that size reverts."""
        o = self.at(x)
        return None if o is None else o.gross_profit


def most_profitable(found: list[Outcome | None], errors: list[Exception]) -> Outcome:
    # Ties go to the smaller size; with no executable size, the last revert met explains why.
    candidates = [o for o in found if o is not None]
    if not candidates:
        if errors:
            raise errors[-1]
        raise LiquidationRevert("INVALID_AMOUNT", "no executable size")
    return max(candidates, key=lambda o: (o.gross_profit, -o.debt_to_cover))


def refuses_large(error: Exception) -> bool:
    return isinstance(error, LiquidationRevert) and error.reason in LARGE_SIZE_REVERTS


def last_feasible(at: Callable[[int], Outcome | None], lo: int, hi: int) -> int:
    # Largest x in [lo, hi] that executes; 0 when none does. The sizes refused form a prefix
    # (too small to burn a scaled unit: 3.5+ rounds the debt burn down) and a suffix (dust
    # left, or more collateral than the virtual balance): both monotone in the size. Find a
    # feasible anchor by doubling, then bisect to the suffix's edge.
    anchor = lo
    while at(anchor) is None:
        if anchor >= hi:
            return 0
        anchor = min(2 * anchor, hi)
    lo = anchor
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if at(mid) is None:
            hi = mid - 1
        else:
            lo = mid
    return lo


def search_space(
    full: LiquidationQuote, market: Market, collateral_asset: str, debt_asset: str, top: int
) -> tuple[Callable[[int], int], int]:
    """The variable to search, and how it maps to a ``debt_to_cover``.

    The Pool turns a debt amount into collateral by flooring
    ``base = debtPrice * debt * collateralUnit // (collateralPrice * debtUnit)``. When one unit
    of collateral is worth more than one unit of debt (WBTC against DAI: 4e14 DAI wei per
    satoshi) many debt amounts floor to the same collateral, and paying more for the same
    collateral makes the profit a saw-tooth in the debt amount. Searching the collateral
    ``base`` instead, mapped to the least debt that buys it, leaves a smooth curve.
    """
    c_unit = asset_unit(market.reserve_of(collateral_asset).configuration.decimals)
    d_unit = asset_unit(market.reserve_of(debt_asset).configuration.decimals)
    c_price, d_price = full.collateral_price, full.debt_price
    debt_step, collateral_step = c_price * d_unit, d_price * c_unit
    if collateral_step >= debt_step or c_price == 0 or d_price == 0:
        # Each unit of debt buys at least one unit of collateral: search the debt directly.
        return (lambda x: x), top

    def least_debt_for(base: int) -> int:
        return min(-(-base * debt_step // collateral_step), top)

    return least_debt_for, top * collateral_step // debt_step
