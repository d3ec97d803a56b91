"""GenericLogic.calculateUserAccountData, with hand-worked examples and properties."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.domain.account import (
    AccountData,
    EModeCategory,
    Market,
    MissingMarketData,
    ReserveState,
    UserAccount,
    UserReserve,
    a_token_balance,
    calculate_user_account_data,
    user_debt,
)
from keeper.domain.interest import SECONDS_PER_YEAR
from keeper.domain.reserve_config import ReserveConfiguration, UserConfiguration
from keeper.domain.wadray import RAY, UINT256_MAX

T0 = 1_700_000_000
WETH = "0x00000000000000000000000000000000000000e1"
WBTC = "0x00000000000000000000000000000000000000b7"
USDC = "0x0000000000000000000000000000000000000005"
WSTETH = "0x00000000000000000000000000000000000000e2"
ETH_SOURCE = "0x00000000000000000000000000000000000000ee"


def usd(x: float) -> int:
    """A price in the oracle's base currency (USD, 8 decimals)."""
    return round(x * 10**8)


def cfg(ltv: int, lt: int, bonus: int, decimals: int, emode: int = 0) -> ReserveConfiguration:
    return ReserveConfiguration(
        ltv=ltv,
        liquidation_threshold=lt,
        liquidation_bonus=bonus,
        decimals=decimals,
        active=True,
        borrowing_enabled=True,
        liquidation_protocol_fee=1000,
        emode_category=emode,
    )


# The devnet's parameters (keeper/devnet/market.py).
RESERVES = {
    0: ReserveState(WETH, 0, cfg(8000, 8250, 10500, 18, emode=2), last_update_timestamp=T0),
    1: ReserveState(WBTC, 1, cfg(7000, 7500, 10650, 8), last_update_timestamp=T0),
    2: ReserveState(USDC, 2, cfg(7700, 8000, 10450, 6, emode=1), last_update_timestamp=T0),
    3: ReserveState(WSTETH, 3, cfg(6900, 7900, 10600, 18, emode=2), last_update_timestamp=T0),
}
PRICES = {WETH: usd(2000), WBTC: usd(40000), USDC: usd(1), WSTETH: usd(2200), ETH_SOURCE: 0}
EMODES = {
    1: EModeCategory(9700, 9750, 10100, label="stablecoins"),
    2: EModeCategory(9000, 9300, 10100, price_source=ETH_SOURCE, label="ETH correlated"),
}


def market(
    prices: Mapping[str, int] | None = None,
    reserves: Mapping[int, ReserveState] | None = None,
    timestamp: int = T0,
) -> Market:
    return Market(
        reserves=RESERVES if reserves is None else reserves,
        prices={**PRICES, **(prices or {})},
        timestamp=timestamp,
        emode_categories=EMODES,
    )


def account(
    collateral: Mapping[str, int],
    debt: Mapping[str, int],
    emode: int = 0,
    stable: Mapping[str, tuple[int, int, int]] | None = None,
) -> UserAccount:
    """Amounts are scaled balances (== balances while indexes are 1 RAY)."""
    ids = {r.asset: r.id for r in RESERVES.values()}
    config = UserConfiguration()
    positions: dict[str, UserReserve] = {}
    stable = stable or {}
    for asset in {*collateral, *debt, *stable}:
        principal, rate, ts = stable.get(asset, (0, 0, 0))
        positions[asset] = UserReserve(
            scaled_a_token_balance=collateral.get(asset, 0),
            scaled_variable_debt=debt.get(asset, 0),
            stable_debt_principal=principal,
            stable_borrow_rate=rate,
            stable_last_update_timestamp=ts,
        )
        if asset in collateral:
            config = config.with_collateral(ids[asset], True)
        if asset in debt or asset in stable:
            config = config.with_borrowing(ids[asset], True)
    return UserAccount(configuration=config, emode_category=emode, reserves=positions)


def test_devnet_position_hf_1_10_then_0_99() -> None:
    # 10 WETH at $2000, 15,000 USDC debt, WETH threshold 82.50%, ltv 80%.
    user = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})
    data = calculate_user_account_data(user, market())
    # collateral = 10e18 * 2000e8 // 1e18 = 20000e8; debt = 15000e6 * 1e8 // 1e6 = 15000e8
    # HF = wadDiv(percentMul(20000e8, 8250), 15000e8) = wadDiv(16500e8, 15000e8) = 1.1e18
    # available = percentMul(20000e8, 8000) - 15000e8 = 1000e8
    assert data == AccountData(
        total_collateral_base=20_000 * 10**8,
        total_debt_base=15_000 * 10**8,
        available_borrows_base=1_000 * 10**8,
        current_liquidation_threshold=8250,
        ltv=8000,
        health_factor=11 * 10**17,
        has_zero_ltv_collateral=False,
    )
    # WETH to $1800: HF = 14850e8 / 15000e8 = 0.99; nothing left to borrow.
    data = calculate_user_account_data(user, market({WETH: usd(1800)}))
    assert data.health_factor == 99 * 10**16
    assert data.available_borrows_base == 0


def test_no_flags_means_no_debt_and_max_health_factor() -> None:
    data = calculate_user_account_data(UserAccount(UserConfiguration()), market())
    assert data == AccountData(0, 0, 0, 0, 0, UINT256_MAX, False)
    # Collateral but no debt: HF is still uint256 max.
    only_supply = calculate_user_account_data(account({WETH: 10**18}, {}), market())
    assert only_supply.health_factor == UINT256_MAX
    assert only_supply.available_borrows_base == 1_600 * 10**8


def test_average_threshold_is_floored() -> None:
    # 10 WETH ($20,000 at 82.50%) + 0.3 WBTC ($12,000 at 75.00%):
    # avgLT = (20000e8*8250 + 12000e8*7500) // 32000e8 = 7968.75 -> 7968
    # avgLtv = (20000e8*8000 + 12000e8*7000) // 32000e8 = 7625
    user = account({WETH: 10 * 10**18, WBTC: 30_000_000}, {USDC: 25_000 * 10**6})
    data = calculate_user_account_data(user, market())
    assert data.total_collateral_base == 32_000 * 10**8
    assert data.current_liquidation_threshold == 7968
    assert data.ltv == 7625
    # HF = wadDiv(percentMul(32000e8, 7968), 25000e8) = 25497.6e8 / 25000e8 = 1.019904
    assert data.health_factor == 1_019_904 * 10**12


def test_emode_overrides_threshold_and_price() -> None:
    # eMode 2 (ETH correlated) with a price source at $1900: it prices wstETH and WETH
    # (both category 2) instead of their own $2200 / $2000; USDC (category 1) keeps $1.
    user = account({WSTETH: 10 * 10**18}, {WETH: 5 * 10**18}, emode=2)
    data = calculate_user_account_data(user, market({ETH_SOURCE: usd(1900)}))
    # collateral = 10 * 1900 = 19000e8 at the category's 93.00% / 90.00%
    # debt = 5 * 1900 = 9500e8; HF = 17670e8 / 9500e8 = 1.86
    assert data.total_collateral_base == 19_000 * 10**8
    assert data.total_debt_base == 9_500 * 10**8
    assert data.current_liquidation_threshold == 9300
    assert data.ltv == 9000
    assert data.health_factor == 186 * 10**16
    # A zero price from the source falls back to each asset's own oracle price.
    data = calculate_user_account_data(user, market({ETH_SOURCE: 0}))
    assert data.total_collateral_base == 22_000 * 10**8
    assert data.total_debt_base == 10_000 * 10**8
    # Outside eMode the asset's own parameters and prices apply.
    plain = account({WSTETH: 10 * 10**18}, {WETH: 5 * 10**18}, emode=0)
    data = calculate_user_account_data(plain, market({ETH_SOURCE: usd(1900)}))
    assert (data.current_liquidation_threshold, data.ltv) == (7900, 6900)
    assert data.total_collateral_base == 22_000 * 10**8


def test_emode_applies_only_to_assets_of_the_category() -> None:
    # eMode 2 user with WETH (category 2) and WBTC (no category) collateral:
    # avgLT = (20000e8*9300 + 40000e8*7500) // 60000e8 = 8100
    user = account({WETH: 10 * 10**18, WBTC: 10**8}, {USDC: 1_000 * 10**6}, emode=2)
    data = calculate_user_account_data(user, market({ETH_SOURCE: usd(2000)}))
    assert data.current_liquidation_threshold == 8100
    assert data.ltv == (20_000 * 9000 + 40_000 * 7000) // 60_000


def test_zero_ltv_and_zero_threshold_collateral() -> None:
    reserves = dict(RESERVES)
    reserves[1] = ReserveState(WBTC, 1, cfg(0, 7500, 10650, 8), last_update_timestamp=T0)
    reserves[3] = ReserveState(WSTETH, 3, cfg(0, 0, 0, 18), last_update_timestamp=T0)
    user = account({WETH: 10 * 10**18, WBTC: 10**8, WSTETH: 10 * 10**18}, {USDC: 10_000 * 10**6})
    data = calculate_user_account_data(user, market(reserves=reserves))
    # wstETH has threshold 0: not collateral at all. WBTC counts toward collateral and the
    # threshold, not toward ltv, and raises the zero-ltv flag.
    assert data.total_collateral_base == 60_000 * 10**8
    assert data.has_zero_ltv_collateral
    assert data.ltv == 20_000 * 8000 // 60_000  # 2666
    assert data.current_liquidation_threshold == (20_000 * 8250 + 40_000 * 7500) // 60_000


def test_collateral_flag_off_means_not_counted() -> None:
    user = account({WETH: 10 * 10**18}, {USDC: 1_000 * 10**6})
    user = UserAccount(
        user.configuration.with_collateral(0, False), user.emode_category, user.reserves
    )
    data = calculate_user_account_data(user, market())
    assert data.total_collateral_base == 0
    assert data.health_factor == 0  # wadDiv(0, debt)


def test_interest_accrues_to_the_block_timestamp() -> None:
    year = T0 + SECONDS_PER_YEAR
    reserves = dict(RESERVES)
    five = 5 * 10**25
    reserves[0] = ReserveState(
        WETH, 0, RESERVES[0].configuration, RAY, five, RAY, 0, last_update_timestamp=T0
    )
    reserves[2] = ReserveState(
        USDC, 2, RESERVES[2].configuration, RAY, 0, RAY, five, last_update_timestamp=T0
    )
    user = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})
    m = market(reserves=reserves, timestamp=year)
    # aWETH: linear 1.05 -> 10.5 WETH; USDC debt: compounded 1.051265681539063650421944
    # -> rayMul(15000e6, ..) = 15768985223 (15768.985222.. rounds half up).
    assert a_token_balance(reserves[0], user.position(WETH), year) == 105 * 10**17
    assert user_debt(reserves[2], user.position(USDC), year).variable == 15_768_985_223
    data = calculate_user_account_data(user, m)
    assert data.total_collateral_base == 21_000 * 10**8
    assert data.total_debt_base == 1_576_898_522_300
    # HF = wadDiv(percentMul(21000e8, 8250) = 17325e8, 15768.985223e8) = 1.098675644310355506
    assert data.health_factor == 1_098_675_644_310_355_506


def test_stable_debt_counts() -> None:
    five = 5 * 10**25
    user = account(
        {WETH: 10 * 10**18}, {USDC: 5_000 * 10**6}, stable={USDC: (1_000 * 10**6, five, T0)}
    )
    m = market(timestamp=T0 + SECONDS_PER_YEAR)
    # stable: 1000e6 * 1.051265681539.. = 1051.265682 USDC; variable index unchanged (rate 0).
    assert user_debt(RESERVES[2], user.position(USDC), m.timestamp).stable == 1_051_265_682
    data = calculate_user_account_data(user, m)
    assert data.total_debt_base == (5_000 * 10**6 + 1_051_265_682) * 10**8 // 10**6


def test_missing_market_data_raises() -> None:
    user = account({WETH: 10**18}, {USDC: 10**6})
    with pytest.raises(MissingMarketData):
        calculate_user_account_data(user, market(reserves={0: RESERVES[0]}))
    m = Market(reserves=RESERVES, prices={WETH: usd(1)}, timestamp=T0)
    with pytest.raises(MissingMarketData):
        calculate_user_account_data(user, m)
    with pytest.raises(MissingMarketData):
        calculate_user_account_data(account({WETH: 1}, {}, emode=9), market())


amounts = st.integers(min_value=1, max_value=10**30)
prices = st.integers(min_value=1, max_value=10**14)


@given(amounts, amounts, prices, prices, prices)
def test_health_factor_monotone_in_collateral_price(
    collateral: int, debt: int, p_debt: int, p1: int, p2: int
) -> None:
    user = account({WETH: collateral}, {USDC: debt})
    low, high = sorted((p1, p2))
    hf_low = calculate_user_account_data(user, market({WETH: low, USDC: p_debt})).health_factor
    hf_high = calculate_user_account_data(user, market({WETH: high, USDC: p_debt})).health_factor
    assert hf_low <= hf_high


@given(amounts, amounts, amounts, prices, prices, prices)
def test_health_factor_antitone_in_debt_price(
    collateral: int, debt_a: int, debt_b: int, p_coll: int, p1: int, p2: int
) -> None:
    user = account({WETH: collateral}, {USDC: debt_a, WBTC: debt_b})
    low, high = sorted((p1, p2))
    hf_low = calculate_user_account_data(user, market({WETH: p_coll, WBTC: low})).health_factor
    hf_high = calculate_user_account_data(user, market({WETH: p_coll, WBTC: high})).health_factor
    assert hf_low >= hf_high
