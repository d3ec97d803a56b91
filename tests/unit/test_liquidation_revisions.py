"""Liquidation rules by Aave revision (3.1 to 3.6): exact values for the close factor, the dust
rule, the 3.5 rounding, grace periods, virtual balances, bad debt and the planner's verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from keeper.domain.account import user_debt
from keeper.domain.liquidation import (
    GRACE_PERIOD,
    VIRTUAL_BALANCE_SHORT,
    AaveRules,
    LiquidationRevert,
    PoolLimits,
    available_collateral_to_liquidate,
    error_name,
    quote_liquidation_call,
    rules_for_pool_revision,
)
from keeper.domain.liquidation_amounts import (
    DIRECTED,
    HALF_UP,
    ReserveSide,
    Rounding,
    leaves_dust,
    v33_max_liquidatable_debt,
)
from keeper.domain.plan import GasPrice, Plan, Rejection, RejectionReason
from keeper.domain.profit import optimise_liquidation
from keeper.domain.quote import UniswapV2Quoter
from keeper.domain.revision import AaveRevision
from keeper.domain.wadray import RAY, UINT256_MAX, percent_mul
from keeper.pipeline.pair_search import rejection_reason
from keeper.pipeline.planner import plan_liquidation
from tests.unit.test_account import RESERVES, T0, USDC, WBTC, WETH, account, market, usd
from tests.unit.test_planner import CONFIG, FLASH, LIQUIDATOR, USER, flash_market, reserves

WEI = 10**18
USDC_UNIT = 10**6
MAX = UINT256_MAX
HF_ABOVE = 95 * 10**16 + 1


def usdc(amount: int) -> ReserveSide:
    return ReserveSide(amount, usd(1), 6)


def test_rules_by_pool_revision() -> None:
    found = {r: rules_for_pool_revision(r) for r in (1, 2, 4, 5, 7, 8, 9, 10, 11)}
    assert found == {1: AaveRules.V3_0, 2: AaveRules.V3_0, 4: AaveRules.V3_1,
                     5: AaveRules.V3_2, 7: AaveRules.V3_3, 8: AaveRules.V3_4,
                     9: AaveRules.V3_5, 10: AaveRules.V3_6, 11: AaveRules.V3_6}
    assert not AaveRules.V3_0.has_grace_period and AaveRules.V3_1.has_grace_period
    assert not AaveRules.V3_2.has_v33_close_factor and AaveRules.V3_3.has_v33_close_factor
    assert not AaveRules.V3_3.forbids_self_liquidation and AaveRules.V3_4.forbids_self_liquidation
    assert AaveRules.V3_4.rounding is HALF_UP and AaveRules.V3_5.rounding is DIRECTED


def test_custom_error_names_map_to_the_old_names_and_reasons() -> None:
    assert error_name("MustNotLeaveDust") == "MUST_NOT_LEAVE_DUST"
    assert error_name("LiquidationGraceSentinelCheckFailed") == GRACE_PERIOD
    assert error_name("HEALTH_FACTOR_NOT_BELOW_THRESHOLD") == "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"
    assert rejection_reason("MustNotLeaveDust") is RejectionReason.DUST
    assert rejection_reason("SelfLiquidation") is RejectionReason.SELF_LIQUIDATION
    assert rejection_reason("HealthFactorNotBelowThreshold") is RejectionReason.HEALTHY
    assert rejection_reason("LiquidationGraceSentinelCheckFailed") is RejectionReason.GRACE_PERIOD
    assert rejection_reason("SomethingElse") is RejectionReason.WOULD_REVERT


# ---- 3.3 close factor: $2,000 on both sides and HF > 0.95 -------------------------------------


def test_v33_close_factor_exactly_at_the_thresholds() -> None:
    coll = ReserveSide(2_000 * 10**6, usd(1), 6)  # 2000e8 in base: at the threshold
    # Both sides ≥ 2000e8 and HF > 0.95: 50% of the total debt (2000e8) = 1000e8 = 1,000 USDC.
    assert v33_max_liquidatable_debt(health_factor=HF_ABOVE, total_debt_base=2_000 * 10**8,
                                     debt=usdc(2_000 * 10**6), collateral=coll) == 1_000 * 10**6
    # HF exactly 0.95: 100%.
    assert v33_max_liquidatable_debt(health_factor=HF_ABOVE - 1, total_debt_base=2_000 * 10**8,
                                     debt=usdc(2_000 * 10**6), collateral=coll) == 2_000 * 10**6
    # One USDC unit short of $2,000 of collateral (1999.999999 USDC → 199999999900): 100%.
    short = ReserveSide(2_000 * 10**6 - 1, usd(1), 6)
    assert v33_max_liquidatable_debt(health_factor=HF_ABOVE, total_debt_base=2_000 * 10**8,
                                     debt=usdc(2_000 * 10**6), collateral=short) == 2_000 * 10**6
    # Reserve debt ≤ 50% of a larger total: all of it.
    assert v33_max_liquidatable_debt(health_factor=HF_ABOVE, total_debt_base=5_000 * 10**8,
                                     debt=usdc(2_500 * 10**6), collateral=coll) == 2_500 * 10**6


def test_v35_debt_in_base_rounds_up_at_the_close_factor_threshold() -> None:
    # 1,111,111,111,111,111,111 wei of an 18-decimals asset at $1,800 = 1999.99999999999999998
    # USD: floor 199999999999 (< 2000e8: 100%), ceil 200000000000 (= 2000e8: 50% may apply).
    debt = ReserveSide(1_111_111_111_111_111_111, usd(1800), 18)
    coll = ReserveSide(10 * WEI, usd(1800), 18)

    def cap(total_debt_base: int, rounding: Rounding) -> int:
        return v33_max_liquidatable_debt(health_factor=HF_ABOVE, total_debt_base=total_debt_base,
                                         debt=debt, collateral=coll, rounding=rounding)

    # 2000e8 is not more than 50% of 4000e8: the whole reserve debt either way.
    assert cap(4_000 * 10**8, HALF_UP) == cap(4_000 * 10**8, DIRECTED) == debt.amount
    # 50% of 3000e8 = 1500e8 < 2000e8: capped, but only where the debt is ≥ $2,000 (3.5+).
    assert cap(3_000 * 10**8, HALF_UP) == debt.amount
    assert cap(3_000 * 10**8, DIRECTED) == 1_500 * 10**8 * WEI // usd(1800)


# ---- 3.3 dust: clear a side, or leave ≥ $1,000 of both ---------------------------------------


def test_dust_rule_boundaries() -> None:
    weth = ReserveSide(0, usd(1800), 18)
    assert leaves_dust(1_000 * 10**6, 1, usdc(0), ReserveSide(0, usd(1), 6)) == (
        1_000 * 10**8, 100)  # 1 unit of collateral left ($0.000001): dust
    assert leaves_dust(1_000 * 10**6, 1_000 * 10**6, usdc(0), usdc(0)) is None
    assert leaves_dust(1_000 * 10**6 - 1, 1_000 * 10**6, usdc(0), usdc(0)) == (
        999_999_999_00, 1_000 * 10**8)
    assert leaves_dust(0, 1, usdc(0), usdc(0)) is None  # debt cleared
    assert leaves_dust(1, 0, usdc(0), usdc(0)) is None  # collateral cleared
    # Debt left worth 999.99999999999999990 USD: dust when floored (v3.3), not when ceiled (3.5).
    left = 555_555_555_555_555_555
    assert leaves_dust(left, 10 * WEI, weth, weth) == (99_999_999_999, 1_800_000_000_000)
    assert leaves_dust(left, 10 * WEI, weth, weth, DIRECTED) is None


# ---- 3.5 rounding --------------------------------------------------------------------------------


def test_v35_rounding_of_balances_and_scaled_amounts() -> None:
    assert (HALF_UP.a_token_balance(1, 3 * RAY // 2), DIRECTED.a_token_balance(1, 3 * RAY // 2)) \
        == (2, 1)
    assert (HALF_UP.debt_balance(1, 6 * RAY // 5), DIRECTED.debt_balance(1, 6 * RAY // 5)) \
        == (1, 2)
    assert (HALF_UP.a_token_burn_scaled(1, 3 * RAY), DIRECTED.a_token_burn_scaled(1, 3 * RAY)) \
        == (0, 1)
    assert (HALF_UP.debt_burn_scaled(2, 3 * RAY), DIRECTED.debt_burn_scaled(2, 3 * RAY)) == (1, 0)


def test_v35_capped_collateral_needs_the_debt_rounded_up() -> None:
    def needed(rounding: Rounding) -> int:
        return available_collateral_to_liquidate(
            debt_to_cover=10**20, user_collateral_balance=WEI, collateral_price=usd(1400),
            collateral_decimals=18, debt_price=usd(1), debt_decimals=6, liquidation_bonus=10500,
            liquidation_protocol_fee=0, rounding=rounding).debt_amount_needed

    # value 1400e6; percentDiv(1400e6, 10500) = 1333333333 (half up), percentDivCeil 1333333334.
    assert (needed(HALF_UP), needed(DIRECTED)) == (1_333_333_333, 1_333_333_334)


def test_v36_quote_of_a_position_whose_collateral_runs_out_burns_the_rest() -> None:
    # 1 WETH against 1,500 USDC at $1,400: HF 0.77, close factor 100%, the collateral caps it.
    user = account({WETH: WEI}, {USDC: 1_500 * USDC_UNIT})
    m = market({WETH: usd(1400)})
    v33 = quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_3)
    v36 = quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_6)
    assert v33.debt_to_cover_actual == 1_333_333_333 and v36.debt_to_cover_actual == 1_333_333_334
    assert v33.collateral_to_liquidator == v36.collateral_to_liquidator
    assert v33.bad_debt_burned and v36.bad_debt_burned  # the rest of the debt becomes a deficit
    assert not quote_liquidation_call(user, m, WETH, USDC, MAX).bad_debt_burned  # v3.0: no burn


# ---- 3.1 grace period and virtual balance -------------------------------------------------------


def test_grace_period_holds_until_the_block_after_it() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = market({WETH: usd(1800)})
    limits = PoolLimits(grace_period_until={WETH: T0})
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_1, limits=limits)
    assert err.value.reason == GRACE_PERIOD and err.value.not_before == T0 + 1
    after = replace(m, timestamp=T0 + 1)
    quote_liquidation_call(user, after, WETH, USDC, MAX, rules=AaveRules.V3_1, limits=limits)
    # v3.0 has no grace period.
    quote_liquidation_call(user, m, WETH, USDC, MAX, limits=limits)


def test_virtual_balance_bounds_the_collateral_paid_out() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = market({WETH: usd(1800)})
    limits = PoolLimits(virtual_balances={WETH: 2 * WEI})
    with pytest.raises(LiquidationRevert) as err:
        quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_3, limits=limits)
    assert err.value.reason == VIRTUAL_BALANCE_SHORT and err.value.quote is not None
    assert err.value.quote.collateral_to_liquidator == 4_354_166_666_666_666_666
    # Taking aTokens needs no underlying.
    quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_3, limits=limits,
                           receive_a_token=True)

    def swap(amount: int) -> int:
        return amount * 1795 // 10**12  # a deep pool at about the oracle price

    best = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0,
                                rules=AaveRules.V3_3, limits=limits)
    assert best.collateral_seized <= 2 * WEI
    # Within a unit of debt of the balance: one more debt unit would seize more than there is.
    more = quote_liquidation_call(user, m, WETH, USDC, best.debt_to_cover + 1,
                                  rules=AaveRules.V3_3, receive_a_token=True)
    assert more.collateral_to_liquidator > 2 * WEI or best.collateral_seized == 2 * WEI


# ---- the planner ---------------------------------------------------------------------------------


def _quoter() -> UniswapV2Quoter:
    return UniswapV2Quoter(reserves((WETH, 1_000 * WEI, USDC, 1_800_000 * USDC_UNIT)))


CHEAP = GasPrice(10**9, 0)


def test_planner_rejects_bad_debt_on_v33() -> None:
    user = account({}, {USDC: 1_500 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    v33 = plan_liquidation(USER, user, m, _quoter(), CHEAP, FLASH,
                           replace(CONFIG, rules=AaveRules.V3_3))
    assert isinstance(v33, Rejection) and v33.reason is RejectionReason.BAD_DEBT
    v30 = plan_liquidation(USER, user, m, _quoter(), CHEAP, FLASH, CONFIG)
    assert isinstance(v30, Rejection) and v30.reason is RejectionReason.NO_POSITION


@pytest.mark.parametrize("who", [LIQUIDATOR, "0x00000000000000000000000000000000000000Dd"])
def test_planner_never_liquidates_our_own_position_on_v34(who: str) -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    config = replace(CONFIG, rules=AaveRules.V3_4, owner="0x00000000000000000000000000000000000000dd")
    found = plan_liquidation(who, user, m, _quoter(), CHEAP, FLASH, config)
    assert isinstance(found, Rejection) and found.reason is RejectionReason.SELF_LIQUIDATION
    assert isinstance(plan_liquidation(USER, user, m, _quoter(), CHEAP, FLASH, config), Plan)


def test_planner_waits_for_a_grace_period_then_plans() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    config = replace(CONFIG, rules=AaveRules.V3_6)
    limits = PoolLimits(grace_period_until={USDC: T0 + 10})
    waiting = plan_liquidation(USER, user, m, _quoter(), CHEAP, FLASH, config, limits)
    assert isinstance(waiting, Rejection) and waiting.reason is RejectionReason.GRACE_PERIOD
    assert waiting.not_before == T0 + 11
    at_end = plan_liquidation(USER, user, replace(m, timestamp=T0 + 10), _quoter(), CHEAP, FLASH,
                              config, limits)
    assert isinstance(at_end, Rejection) and at_end.reason is RejectionReason.GRACE_PERIOD
    after = plan_liquidation(USER, user, replace(m, timestamp=T0 + 11), _quoter(), CHEAP, FLASH,
                             config, limits)
    assert isinstance(after, Plan) and after.timestamp == T0 + 11


def test_planner_sizes_to_the_dust_rule() -> None:
    # 2 WETH ($3,400) against 3,000 USDC at HF 0.935: close factor 100% (HF ≤ 0.95). With this
    # pool the most profitable size ignoring dust repays ~2,337 USDC, which would leave $663 of
    # debt: the planner takes the largest size that leaves ≥ $1,000 of both instead.
    user = account({WETH: 2 * WEI}, {USDC: 3_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1700)})
    pool = UniswapV2Quoter(reserves((WETH, 70 * WEI, USDC, 70 * 1_700 * USDC_UNIT)))
    config = replace(CONFIG, min_profit_base=1)
    v30 = plan_liquidation(USER, user, m, pool, CHEAP, FLASH, config)
    v36 = plan_liquidation(USER, user, m, pool, CHEAP, FLASH, replace(config, rules=AaveRules.V3_6))
    assert isinstance(v30, Plan) and isinstance(v36, Plan)
    assert v30.debt_to_cover == 2_337_004_813  # one unit more profit than 2_336_917_604
    with pytest.raises(LiquidationRevert, match="MUST_NOT_LEAVE_DUST"):
        quote_liquidation_call(user, m, WETH, USDC, v30.debt_to_cover, rules=AaveRules.V3_6)
    # The top is flat to the unit here (1,999,999,862 and 2,000,000,000 pay the same profit).
    assert v36.gross_profit == 46_871_088
    assert 1_999_999_862 <= v36.debt_to_cover <= 2_000_000_000
    debt_left = 3_000 * USDC_UNIT - v36.debt_to_cover
    coll_left = 2 * WEI - v36.collateral_seized - v36.protocol_fee_collateral
    assert debt_left >= 1_000 * USDC_UNIT and coll_left * usd(1700) // WEI >= 1_000 * 10**8
    # At the edge: a thousandth of a dollar more would leave dust.
    with pytest.raises(LiquidationRevert, match="MUST_NOT_LEAVE_DUST"):
        quote_liquidation_call(user, m, WETH, USDC, v36.debt_to_cover + 1_000,
                               rules=AaveRules.V3_6)


def test_a_close_factor_cap_that_leaves_dust_is_searched_below() -> None:
    # 2 WETH ($3,700) against 2,500 USDC and 0.015 WBTC ($600): HF 0.985. On USDC the cap is 50%
    # of all debt ($1,550), leaving $950 of USDC: the cap itself is refused (MustNotLeaveDust),
    # and the best size leaves exactly $1,000 (3.6 rounds the tiny sizes' debt burn to zero too).
    user = account({WETH: 2 * WEI}, {USDC: 2_500 * USDC_UNIT, WBTC: 1_500_000})
    m = market({WETH: usd(1850)})
    with pytest.raises(LiquidationRevert, match="MUST_NOT_LEAVE_DUST") as err:
        quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_6)
    assert err.value.quote is not None and err.value.quote.debt_to_cover_actual == 1_550 * USDC_UNIT

    def swap(amount: int) -> int:
        return amount * 1_840 // 10**12

    best = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0,
                                rules=AaveRules.V3_6)
    assert best.debt_to_cover == 1_500 * USDC_UNIT


# ---- issue 9: plan = chain on the dust rule's edges -----------------------------------------------


def test_v36_quote_accrues_the_debt_as_the_35_pools_do() -> None:
    # 40% a year on USDC, an hour since the last update: the 3.0 and 3.5+ compounding series
    # differ in the last digits. A 3.6 quote must use the Pool's (a "whole debt" plan a few wei
    # short of the chain leaves those wei, and the Pool refuses it: MustNotLeaveDust).
    rates = {i: replace(r, current_variable_borrow_rate=4 * RAY // 10)
             for i, r in market().reserves.items()}
    user = account({WETH: WEI}, {USDC: 10**15})
    m = market({WETH: usd(1400)}, reserves=rates, timestamp=T0 + 3_600)
    usdc_reserve = m.reserve_of(USDC)
    v30_debt = user_debt(usdc_reserve, user.position(USDC), m.timestamp).total
    v36_debt = user_debt(usdc_reserve, user.position(USDC), m.timestamp, AaveRevision.V3_6).total
    assert v30_debt != v36_debt
    assert quote_liquidation_call(user, m, WETH, USDC, MAX, rules=AaveRules.V3_6).user_debt == v36_debt


def test_v36_plan_that_takes_all_collateral_asks_with_headroom() -> None:
    # 1 WETH against 1,500 USDC at $1,400: the collateral caps the repayment at 1,333.333334.
    # Asked exactly, a price 0.005% higher by the block that includes it (a rate-based feed
    # moves every second) makes it a partial liquidation leaving $166 of debt: refused. The plan asks a little more
    # and the Pool caps it to the same liquidation, at either price.
    user = account({WETH: WEI}, {USDC: 1_500 * USDC_UNIT})
    m = market({WETH: usd(1400)})

    def swap(amount: int) -> int:
        return amount * 1_390 // 10**12

    best = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0,
                                rules=AaveRules.V3_6)
    assert best.debt_to_cover == 1_333_333_334 and best.headroom == 133_333
    assert best.flash_premium == 666_733  # on all the loan: percentMul(1_333_466_667, 5), not 666_667
    again = quote_liquidation_call(user, m, WETH, USDC, best.debt_to_send, rules=AaveRules.V3_6)
    assert again.debt_to_cover_actual == best.debt_to_cover
    up = market({WETH: usd(1400.07)})
    with pytest.raises(LiquidationRevert, match="MUST_NOT_LEAVE_DUST"):
        quote_liquidation_call(user, up, WETH, USDC, best.debt_to_cover, rules=AaveRules.V3_6)
    moved = quote_liquidation_call(user, up, WETH, USDC, best.debt_to_send, rules=AaveRules.V3_6)
    assert moved.bad_debt_burned and moved.collateral_to_liquidator == best.collateral_seized


def test_v30_plan_that_takes_all_collateral_asks_with_headroom_and_leaves_none() -> None:
    # No dust rule before 3.3, but the same edge: the debt that buys all the collateral is
    # rounded down, so asked exactly it buys a few wei less, and a price a unit higher by the
    # including block leaves more: an account liquidatable for nothing. Asked with headroom,
    # the Pool takes the same debt and the whole collateral, at either price.
    user = account({WETH: WEI}, {USDC: 1_500 * USDC_UNIT})
    m = market({WETH: usd(1400)})

    def swap(amount: int) -> int:
        return amount * 1_390 // 10**12

    exact = quote_liquidation_call(user, m, WETH, USDC, 1_333_333_333)
    assert exact.collateral_to_liquidator + exact.protocol_fee_collateral < WEI  # a few wei left
    v30 = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0)
    assert v30.debt_to_cover == 1_333_333_333 and v30.headroom == 133_333
    assert v30.collateral_seized + v30.protocol_fee_collateral == WEI
    assert v30.flash_premium == percent_mul(v30.debt_to_send, 5)  # the loan is what is asked
    up = market({WETH: usd(1400.07)})
    moved = quote_liquidation_call(user, up, WETH, USDC, v30.debt_to_send)
    assert moved.collateral_to_liquidator + moved.protocol_fee_collateral == WEI
    left = quote_liquidation_call(user, up, WETH, USDC, v30.debt_to_cover)
    assert left.collateral_to_liquidator + left.protocol_fee_collateral < WEI


def test_v30_headroom_is_not_bought_at_a_real_cost() -> None:
    # A flash premium on the headroom that costs more than 0.01% of the profit: the exact size.
    user = account({WETH: WEI}, {USDC: 1_500 * USDC_UNIT})
    m = market({WETH: usd(1400)})

    def swap(amount: int) -> int:
        return amount * 1_341 // 10**12  # a thin margin: $0.62 gross, 0.01% of it < 67 units

    v30 = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0)
    assert v30.gross_profit > 0
    assert v30.headroom == 0  # the premium on 133,333 of headroom: 67 units


def test_v36_plan_that_repays_the_whole_debt_sends_headroom() -> None:
    user = account({WETH: 2 * WEI}, {USDC: 1_500 * USDC_UNIT})
    # 2 WETH at $850 against 1,500 USDC: HF 0.935, the collateral covers the debt and bonus.
    m = flash_market({WETH: usd(850)})
    pool = UniswapV2Quoter(reserves((WETH, 1_000 * WEI, USDC, 850_000 * USDC_UNIT)))
    plan = plan_liquidation(USER, user, m, pool, CHEAP, FLASH,
                            replace(CONFIG, min_profit_base=1, rules=AaveRules.V3_6))
    assert isinstance(plan, Plan), plan
    assert plan.debt_to_cover == 1_500 * USDC_UNIT  # the whole debt
    assert plan.params.debt_to_cover == plan.debt_to_cover + 150_000


def test_v30_plan_that_takes_all_collateral_after_the_fee_trim_asks_with_headroom() -> None:
    # A liquidity index off 1 RAY: the Pool takes the whole balance, but after the protocol
    # fee's trim (scaled amounts rounded over) the two shares sum to a wei less than it. Read
    # as "not capped", the plan went out exactly, and the collateral's interest until its
    # block stayed behind for a rival to clear at a loss (31 such in a 10,000-borrower race).
    weth = RESERVES[0]
    index = RAY + RAY // 37
    accruing = replace(weth, liquidity_index=index, current_liquidity_rate=3 * RAY // 100)
    accrues = {**RESERVES, 0: accruing}
    user = account({WETH: 1_000_000_000_000_142_542}, {USDC: 1_500 * USDC_UNIT})
    m = market({WETH: usd(1400)}, reserves=accrues)

    full = quote_liquidation_call(user, m, WETH, USDC, MAX)
    assert full.takes_whole_collateral
    assert full.collateral_to_liquidator + full.protocol_fee_collateral \
        == full.user_collateral_balance - 1

    def swap(amount: int) -> int:
        return amount * 1_390 // 10**12

    plan = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=5,
                                gas_cost=0)
    assert plan.debt_to_cover == full.debt_to_cover_actual and plan.headroom > 0
    # Two blocks later the collateral has grown: the exact size leaves it, the plan does not.
    later = market({WETH: usd(1400)}, reserves=accrues, timestamp=T0 + 24)
    assert quote_liquidation_call(user, later, WETH, USDC, plan.debt_to_send).takes_whole_collateral
    assert not quote_liquidation_call(user, later, WETH, USDC,
                                      plan.debt_to_cover).takes_whole_collateral
