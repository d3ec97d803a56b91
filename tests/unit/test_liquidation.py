"""LiquidationLogic (v3.0, and the v3.3 close-factor/dust rules) against worked examples."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.domain.account import ReserveState, UserAccount
from keeper.domain.liquidation import (
    AaveRules,
    CollateralToLiquidate,
    LiquidationRevert,
    available_collateral_to_liquidate,
    close_factor,
    quote_liquidation_call,
)
from keeper.domain.wadray import RAY, UINT256_MAX
from tests.unit.test_account import (
    ETH_SOURCE,
    RESERVES,
    T0,
    USDC,
    WBTC,
    WETH,
    WSTETH,
    account,
    market,
    usd,
)

WEI = 10**18
MAX = UINT256_MAX


def devnet_user() -> UserAccount:
    # 10 WETH collateral, 15,000 USDC debt: HF 1.10 at $2000, 0.99 at $1800.
    return account({WETH: 10 * WEI}, {USDC: 15_000 * 10**6})


def test_close_factor_threshold() -> None:
    assert close_factor(95 * 10**16 + 1) == 5000
    assert close_factor(95 * 10**16) == 10000  # "HF > 0.95 ? 50% : 100%": 0.95 itself is 100%
    assert close_factor(0) == 10000


def test_devnet_liquidation_half_the_debt_for_4_354166_weth() -> None:
    quote = quote_liquidation_call(devnet_user(), market({WETH: usd(1800)}), WETH, USDC, MAX)
    assert quote.health_factor == 99 * 10**16
    # Close factor 50% (HF 0.99 > 0.95): percentMul(15000e6, 5000) = 7500e6.
    assert quote.max_liquidatable_debt == 7_500 * 10**6
    assert quote.debt_to_cover_actual == 7_500 * 10**6
    # baseCollateral = 1e8 * 7500e6 * 1e18 // (1800e8 * 1e6)  = 4166666666666666666
    # with bonus     = percentMul(base, 10500)                = 4374999999999999999
    # bonus part     = 4374999999999999999 - percentDiv(.., 10500)
    #                = 4374999999999999999 - 4166666666666666666 = 208333333333333333
    # protocol fee   = percentMul(208333333333333333, 1000)   = 20833333333333333
    # to liquidator  = 4374999999999999999 - 20833333333333333 = 4354166666666666666
    assert quote.collateral_to_liquidator == 4_354_166_666_666_666_666
    assert quote.protocol_fee_collateral == 20_833_333_333_333_333
    # ... which is 7500 * 1.05 / 1800 minus 10% of the 5% bonus, to 18 decimals (floor).
    exact = Fraction(7500 * 105, 100 * 1800) - Fraction(7500 * 5, 100 * 1800) / 10
    assert exact == Fraction(209, 48)  # 4.3541666..
    assert quote.collateral_to_liquidator == int(exact * WEI)
    # The collateral leg alone gives the same numbers.
    assert available_collateral_to_liquidate(
        debt_to_cover=7_500 * 10**6,
        user_collateral_balance=10 * WEI,
        collateral_price=usd(1800),
        collateral_decimals=18,
        debt_price=usd(1),
        debt_decimals=6,
        liquidation_bonus=10500,
        liquidation_protocol_fee=1000,
    ) == CollateralToLiquidate(4_354_166_666_666_666_666, 7_500 * 10**6, 20_833_333_333_333_333)


def test_smaller_cover_is_taken_as_asked() -> None:
    quote = quote_liquidation_call(
        devnet_user(), market({WETH: usd(1800)}), WETH, USDC, 1_000 * 10**6
    )
    assert quote.debt_to_cover_actual == 1_000 * 10**6
    # base = 1000e6 * 1e8 * 1e18 // (1800e8 * 1e6) = 555555555555555555; * 1.05 -> 583333333333333333
    assert quote.collateral_to_liquidator + quote.protocol_fee_collateral == 583_333_333_333_333_333


def test_below_095_the_whole_debt_can_go() -> None:
    # WETH $1700: HF = 17000 * 0.825 / 15000 = 0.935 <= 0.95 -> close factor 100%.
    quote = quote_liquidation_call(devnet_user(), market({WETH: usd(1700)}), WETH, USDC, MAX)
    assert quote.health_factor == 935 * 10**15
    assert quote.debt_to_cover_actual == 15_000 * 10**6
    # base = 15000e6*1e8*1e18 // (1700e8*1e6) = 8823529411764705882, *1.05 = 9264705882352941176
    # fee = percentMul(9264705882352941176 - 8823529411764705882, 1000) = 44117647058823529
    assert quote.protocol_fee_collateral == 44_117_647_058_823_529
    assert quote.collateral_to_liquidator == 9_264_705_882_352_941_176 - 44_117_647_058_823_529


def test_collateral_cap_reduces_the_debt_repaid() -> None:
    # WETH $1400: covering 15000 USDC would need 11.25 WETH; the user has 10.
    quote = quote_liquidation_call(devnet_user(), market({WETH: usd(1400)}), WETH, USDC, MAX)
    # debtAmountNeeded = percentDiv(1400e8 * 10e18 * 1e6 // (1e8 * 1e18), 10500)
    #                  = percentDiv(14000e6, 10500) = 13333333333 (13,333.333333 USDC)
    assert quote.debt_to_cover_actual == 13_333_333_333
    # All 10 WETH leave: fee = percentMul(10e18 - percentDiv(10e18, 10500), 1000)
    #                        = percentMul(476190476190476190, 1000) = 47619047619047619
    assert quote.protocol_fee_collateral == 47_619_047_619_047_619
    assert quote.collateral_to_liquidator == 9_952_380_952_380_952_381
    assert quote.collateral_to_liquidator + quote.protocol_fee_collateral == 10 * WEI


def test_no_protocol_fee() -> None:
    result = available_collateral_to_liquidate(
        debt_to_cover=7_500 * 10**6,
        user_collateral_balance=10 * WEI,
        collateral_price=usd(1800),
        collateral_decimals=18,
        debt_price=usd(1),
        debt_decimals=6,
        liquidation_bonus=10500,
        liquidation_protocol_fee=0,
    )
    assert result == CollateralToLiquidate(4_374_999_999_999_999_999, 7_500 * 10**6, 0)


def test_emode_bonus_and_price_source() -> None:
    # eMode 2: wstETH collateral, WETH debt, both priced by the category's source.
    user = account({WSTETH: 10 * WEI}, {WETH: 9 * WEI}, emode=2)
    m = market({ETH_SOURCE: usd(1000), WSTETH: usd(5000), WETH: usd(7000)})
    # HF = 10 * 0.93 / 9 = 1.0333 at the source price: not liquidatable...
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(user, m, WSTETH, WETH, MAX)
    assert err.value.reason == "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"
    # ... until the debt grows: 9.5 WETH -> HF = 9.3 / 9.5 = 0.97894..
    user = account({WSTETH: 10 * WEI}, {WETH: 95 * 10**17}, emode=2)
    quote = quote_liquidation_call(user, m, WSTETH, WETH, MAX)
    assert (quote.collateral_price, quote.debt_price) == (usd(1000), usd(1000))
    assert quote.liquidation_bonus == 10100  # the category's, not wstETH's 10600
    assert quote.debt_to_cover_actual == 475 * 10**16
    # same price both sides: base = 4.75 WETH of wstETH, * 1.01 = 4.7975; fee = 10% of 0.0475
    assert quote.protocol_fee_collateral == 475 * 10**13
    assert quote.collateral_to_liquidator == 47_975 * 10**14 - 475 * 10**13


def test_validation_reverts() -> None:
    m = market({WETH: usd(1800)})
    with pytest.raises(LiquidationRevert, match="HEALTH_FACTOR_NOT_BELOW_THRESHOLD"):
        quote_liquidation_call(devnet_user(), market(), WETH, USDC, MAX)
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(devnet_user(), m, WBTC, USDC, MAX)
    assert err.value.reason == "COLLATERAL_CANNOT_BE_LIQUIDATED"
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(devnet_user(), m, WETH, WBTC, MAX)
    assert err.value.reason == "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER"
    paused = dict(RESERVES)
    c = RESERVES[2].configuration
    paused[2] = replace(RESERVES[2], configuration=replace(c, paused=True))
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(devnet_user(), market({WETH: usd(1800)}, paused), WETH, USDC, MAX)
    assert err.value.reason == "RESERVE_PAUSED"
    paused[2] = replace(RESERVES[2], configuration=replace(c, active=False))
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(devnet_user(), market({WETH: usd(1800)}, paused), WETH, USDC, MAX)
    assert err.value.reason == "RESERVE_INACTIVE"


def test_zero_collateral_burn_reverts() -> None:
    # Covering 0 would burn 0 scaled debt tokens: the token reverts with INVALID_BURN_AMOUNT.
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(devnet_user(), market({WETH: usd(1800)}), WETH, USDC, 0)
    assert err.value.reason == "INVALID_BURN_AMOUNT"


# --- v3.3 rules ---------------------------------------------------------------------------


def test_v33_same_as_v30_for_a_large_position() -> None:
    # Collateral 18000e8 and debt 15000e8 are both >= 2000e8 and HF 0.99 > 0.95: 50% of the
    # total debt in base, 7500e8 -> 7500e8 * 1e6 // 1e8 = 7500 USDC, as in v3.0.
    m = market({WETH: usd(1800)})
    v30 = quote_liquidation_call(devnet_user(), m, WETH, USDC, MAX)
    v33 = quote_liquidation_call(devnet_user(), m, WETH, USDC, MAX, rules=AaveRules.V3_3)
    assert v33 == v30


def test_v33_small_position_is_fully_liquidatable() -> None:
    # 1 WETH, 1500 USDC: debt 1500e8 < 2000e8 -> close factor 100% even at HF 0.99.
    user = account({WETH: WEI}, {USDC: 1_500 * 10**6})
    m = market({WETH: usd(1800)})
    assert quote_liquidation_call(user, m, WETH, USDC, MAX).debt_to_cover_actual == 750 * 10**6
    v33 = quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_3)
    assert v33.debt_to_cover_actual == 1_500 * 10**6
    assert v33.max_liquidatable_debt == 1_500 * 10**6


def test_v33_close_factor_is_on_total_debt() -> None:
    # Debt: 9000 USDC + 0.15 WBTC ($6000) = $15000; collateral 10 WETH at $1800: HF 0.99.
    user = account({WETH: 10 * WEI}, {USDC: 9_000 * 10**6, WBTC: 15_000_000})
    m = market({WETH: usd(1800)})
    # v3.0: 50% of the USDC debt; v3.3: up to 50% of all debt ($7500) in USDC.
    assert quote_liquidation_call(user, m, WETH, USDC, MAX).debt_to_cover_actual == 4_500 * 10**6
    v33 = quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_3)
    assert v33.debt_to_cover_actual == 7_500 * 10**6


def test_v33_must_not_leave_dust() -> None:
    user = account({WETH: WEI}, {USDC: 1_500 * 10**6})
    m = market({WETH: usd(1800)})
    # Repaying 1000 leaves 500 USDC of debt (< $1000) and the collateral is not all taken.
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(user, m, WETH, USDC, 1_000 * 10**6, rules=AaveRules.V3_3)
    assert err.value.reason == "MUST_NOT_LEAVE_DUST"
    # v3.0 has no such rule (and caps the cover at 750).
    assert quote_liquidation_call(user, m, WETH, USDC, 1_000 * 10**6).debt_to_cover_actual == (
        750 * 10**6
    )
    # Clearing the debt is fine.
    full = quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_3)
    assert full.debt_to_cover_actual == 1_500 * 10**6


# --- properties ---------------------------------------------------------------------------


@given(
    collateral=st.integers(min_value=10**12, max_value=10**24),
    debt=st.integers(min_value=10**6, max_value=10**13),
    weth_price=st.integers(min_value=usd(100), max_value=usd(5000)),
    cover=st.integers(min_value=1, max_value=2**128),
    index=st.integers(min_value=RAY, max_value=2 * RAY),
    v33=st.booleans(),
)
def test_never_more_collateral_than_the_user_has(
    collateral: int, debt: int, weth_price: int, cover: int, index: int, v33: bool
) -> None:
    reserves = dict(RESERVES)
    reserves[0] = ReserveState(
        WETH, 0, RESERVES[0].configuration, liquidity_index=index, last_update_timestamp=T0
    )
    user = account({WETH: collateral}, {USDC: debt})
    m = market({WETH: weth_price}, reserves)
    rules = AaveRules.V3_3 if v33 else AaveRules.V3_0
    try:
        quote = quote_liquidation_call(user, m, WETH, USDC, cover, rules=rules)
    except LiquidationRevert:
        return
    assert quote.collateral_to_liquidator + quote.protocol_fee_collateral <= (
        quote.user_collateral_balance
    )
    assert quote.debt_to_cover_actual <= min(cover, quote.max_liquidatable_debt, debt)
    if quote.debt_to_cover_actual != min(cover, quote.max_liquidatable_debt):
        # Capped by the balance: the debt needed is re-derived from it, rounded the other way
        # (and the fee may be trimmed by a wei so that it fits what the user has left).
        return
    # Otherwise the seized collateral is worth at most debt * bonus (rounding is in the pool's
    # favour except for percentMul's half-up: at most one wei).
    value_cap = Fraction(
        quote.debt_to_cover_actual * usd(1) * WEI * 10500, weth_price * 10**6 * 10**4
    )
    assert quote.collateral_to_liquidator + quote.protocol_fee_collateral <= value_cap + 1


def test_protocol_fee_trimmed_to_the_scaled_balance_left() -> None:
    # Found by hypothesis. Scaled 1e12 aWETH at index 1.1859523175265: balanceOf rounds half up
    # to 1185952317527, so seizing it all (liquidator's part + fee) needs one scaled unit more
    # than the user holds; the Pool then pays the treasury rayMul(scaled left, index) instead.
    index = 1_185_952_317_526_500_000_000_000_000
    reserves = dict(RESERVES)
    reserves[0] = replace(RESERVES[0], liquidity_index=index)
    user = account({WETH: 10**12}, {USDC: 10**6})
    quote = quote_liquidation_call(user, market({WETH: usd(100)}, reserves), WETH, USDC, 113)
    assert quote.user_collateral_balance == 1_185_952_317_527
    seized = quote.collateral_to_liquidator
    assert seized == 1_180_304_925_539
    seized_scaled = (seized * RAY + index // 2) // index  # rayDiv
    left_scaled = 10**12 - seized_scaled
    assert quote.protocol_fee_collateral == (left_scaled * index + RAY // 2) // RAY  # rayMul
    assert seized + quote.protocol_fee_collateral == quote.user_collateral_balance - 1
