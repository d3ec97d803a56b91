"""The Aave v3.6 devnet market: today's six reserves, plus what changed after v3.0.

The reserves, prices, decimals and risk parameters are those of ``market`` (so both revisions
show the same positions); this module adds what v3.6 configures differently:

- one interest rate strategy for all reserves, with per-reserve rate data in basis points;
- liquid eMode: a category lists its collateral and borrowable reserves (bitmaps), and one
  collateral (wstETH) sits in two categories with different borrowables;
- no stable-rate debt;
- a liquidation grace period on one reserve (LINK), as after an unpause on a live market.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.devnet import market

AAVE_VERSION = "3.6"


@dataclass(frozen=True, slots=True)
class RateData:
    """DefaultReserveInterestRateStrategyV2 rate data, in basis points."""

    optimal_usage_ratio: int
    base_variable_borrow_rate: int
    variable_rate_slope1: int
    variable_rate_slope2: int

    def args(self) -> tuple[int, int, int, int]:
        return (self.optimal_usage_ratio, self.base_variable_borrow_rate,
                self.variable_rate_slope1, self.variable_rate_slope2)


def _bps(ray: int) -> int:
    return ray * 10_000 // market.RAY


def rate_data(model: market.RateModel) -> RateData:
    """The v3.0 model's variable-rate curve, as v3.6 rate data."""
    return RateData(_bps(model.optimal_usage), _bps(model.base_variable),
                    _bps(model.variable_slope1), _bps(model.variable_slope2))


@dataclass(frozen=True, slots=True)
class EModeCategory:
    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str
    collateral: tuple[str, ...]
    borrowable: tuple[str, ...]


EMODES: tuple[EModeCategory, ...] = (
    EModeCategory(1, 9300, 9500, 10100, "Stablecoins", ("USDC", "DAI"), ("USDC", "DAI")),
    EModeCategory(2, 9000, 9300, 10100, "ETH correlated", ("WETH", "wstETH"), ("WETH",)),
    # The same collateral as category 2, borrowing stablecoins at a better LTV than outside
    # eMode: a liquidator must read the user's category, not the reserve's.
    EModeCategory(3, 7500, 8000, 10550, "wstETH for stablecoins", ("wstETH",), ("USDC", "DAI")),
)

# A reserve's "home" category in the manifest (the first that lists it as collateral): what
# the scenario planner and a v3.0-style reader expect in ReserveInfo.emode_category.
EMODE_OF: dict[str, int] = {}
for _e in EMODES:
    for _sym in _e.collateral:
        EMODE_OF.setdefault(_sym, _e.id)

# Liquidations of positions involving this reserve revert until the period ends.
GRACE_PERIOD_RESERVE = "LINK"
GRACE_PERIOD_SECONDS = 4 * 3600  # the configurator's MAX_GRACE_PERIOD

# v3.6 sends the whole flash-loan premium to the protocol (no split).
FLASHLOAN_PREMIUM = market.FLASHLOAN_PREMIUM_TOTAL
