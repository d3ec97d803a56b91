"""The devnet market: which reserves, at what prices, with which risk parameters.

Parameters are close to Aave V3's Ethereum market so that liquidations on the devnet look like
the real ones (bonuses of 4.5–7.5%, a 10% protocol fee on the bonus, an eMode for stablecoins
and one for ETH-correlated assets, an isolated asset with a debt ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass

RAY = 10**27
PRICE_UNIT = 10**8  # the AaveOracle's base currency unit: USD with 8 decimals


@dataclass(frozen=True, slots=True)
class RateModel:
    """DefaultReserveInterestRateStrategy parameters, RAY-scaled."""

    optimal_usage: int
    base_variable: int
    variable_slope1: int
    variable_slope2: int
    stable_slope1: int
    stable_slope2: int
    base_stable_offset: int
    stable_excess_offset: int
    optimal_stable_to_total: int

    def args(self) -> tuple[int, ...]:
        return (self.optimal_usage, self.base_variable, self.variable_slope1, self.variable_slope2,
                self.stable_slope1, self.stable_slope2, self.base_stable_offset,
                self.stable_excess_offset, self.optimal_stable_to_total)


def _pct(x: float) -> int:
    return round(x * 10_000) * RAY // 10_000


STABLE_RATES = RateModel(_pct(0.90), 0, _pct(0.04), _pct(0.60), _pct(0.005), _pct(0.60),
                         _pct(0.01), _pct(0.08), _pct(0.20))
VOLATILE_RATES = RateModel(_pct(0.80), 0, _pct(0.038), _pct(0.80), _pct(0.04), _pct(0.80),
                           _pct(0.02), _pct(0.05), _pct(0.20))


@dataclass(frozen=True, slots=True)
class ReserveSpec:
    symbol: str
    decimals: int
    price: int  # USD, 8 decimals; for a rate-adapted asset, the initial exchange rate × base
    ltv: int  # basis points
    liquidation_threshold: int
    liquidation_bonus: int  # 10500 = 5% bonus
    reserve_factor: int
    liquidation_protocol_fee: int  # share of the bonus, basis points
    rates: RateModel
    emode_category: int = 0
    debt_ceiling: int = 0  # isolation mode when > 0; 2 decimals (USD cents)
    borrowable_in_isolation: bool = False
    rate_base: str | None = None  # priced as rate_base's price × a growing exchange rate
    rate_at_start: int = 0  # 1e18-scaled
    rate_per_second: int = 0
    stable_borrowing: bool = False  # v3.0 still has stable-rate debt


@dataclass(frozen=True, slots=True)
class EModeSpec:
    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str


def usd(x: float) -> int:
    return round(x * PRICE_UNIT)


# ≈ 3.5% a year on a 1.15 rate: 1.15e18 × 0.035 / 31_536_000 s.
_WSTETH_RATE_PER_SECOND = 1_276_000_000

RESERVES: tuple[ReserveSpec, ...] = (
    ReserveSpec("WETH", 18, usd(2000), 8000, 8250, 10500, 1500, 1000, VOLATILE_RATES, emode_category=2),
    ReserveSpec("WBTC", 8, usd(40000), 7000, 7500, 10650, 2000, 1000, VOLATILE_RATES),
    ReserveSpec("USDC", 6, usd(1), 7700, 8000, 10450, 1000, 1000, STABLE_RATES,
                emode_category=1, borrowable_in_isolation=True, stable_borrowing=True),
    ReserveSpec("DAI", 18, usd(1), 7500, 8000, 10500, 1000, 1000, STABLE_RATES,
                emode_category=1, borrowable_in_isolation=True, stable_borrowing=True),
    ReserveSpec("wstETH", 18, 0, 6900, 7900, 10600, 1500, 1000, VOLATILE_RATES, emode_category=2,
                rate_base="WETH", rate_at_start=1_150_000_000_000_000_000,
                rate_per_second=_WSTETH_RATE_PER_SECOND),
    ReserveSpec("LINK", 18, usd(15), 5000, 6500, 10750, 2000, 1000, VOLATILE_RATES,
                debt_ceiling=5_000_000_00),
)

EMODES: tuple[EModeSpec, ...] = (
    EModeSpec(1, 9300, 9500, 10100, "Stablecoins"),
    EModeSpec(2, 9000, 9300, 10100, "ETH correlated"),
)

# Flash-loan premium, basis points: 0.05% in total, of which this share goes to the protocol.
FLASHLOAN_PREMIUM_TOTAL = 5
FLASHLOAN_PREMIUM_TO_PROTOCOL = 4

# Uniswap V2 depth per side of every pool, in USD.
POOL_DEPTH_USD = 20_000_000
