"""The profit model and its optimiser: worked examples, sum-of-parts, brute force, v3.3 dust."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keeper.domain.account import Market, UserAccount
from keeper.domain.amm import SwapRevert, get_amount_out
from keeper.domain.liquidation import AaveRules, LiquidationRevert, quote_liquidation_call
from keeper.domain.profit import (
    Outcome,
    SwapOut,
    asset_to_base,
    evaluate_liquidation,
    flash_loan_premium,
    native_to_asset,
    optimise_liquidation,
)
from keeper.domain.unimodal import maximise_unimodal
from keeper.domain.wadray import RAY
from tests.unit.test_account import USDC, WBTC, WETH, account, market, usd

WEI = 10**18
USDC_UNIT = 10**6
SAT = 10**8


def devnet_user() -> UserAccount:
    """10 WETH collateral, 15,000 USDC debt: HF 0.99 at WETH $1,800."""
    return account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})


def at_1800() -> Market:
    return market({WETH: usd(1800)})


def pool(reserve_in: int, reserve_out: int) -> SwapOut:
    """A single Uniswap V2 pool, collateral in, debt out."""
    return lambda amount: get_amount_out(amount, reserve_in, reserve_out)


# A deep pool at the oracle price: 1,000 WETH / 1,800,000 USDC.
DEEP = pool(1_000 * WEI, 1_800_000 * USDC_UNIT)


# ---- worked example ----------------------------------------------------------------------------


def test_devnet_liquidation_of_7500_usdc_with_a_flash_loan() -> None:
    outcome = evaluate_liquidation(
        devnet_user(), at_1800(), WETH, USDC, 7_500 * USDC_UNIT,
        swap=DEEP, flash_premium_bps=5, gas_cost=2_000_000,
    )
    # Seized 4.354166.. WETH (tests/unit/test_liquidation.py works it out).
    assert outcome.collateral_seized == 4_354_166_666_666_666_666
    # getAmountOut: in*997 = 4341104166666666666002; out = that * 1.8e12 // (1e21*1000 + that)
    #             = 7_813_987_499_999_999_998_803_600_000_000_000 // 1_004_341_104_166_666_666_666_002
    #             = 7_780_212_785 (7,780.212785 USDC: 0.3% fee and 0.43% price impact)
    assert outcome.swap_amount_out == 7_780_212_785
    # Premium: percentMul(7500e6, 5) = 3.75 USDC.
    assert outcome.flash_premium == 3_750_000
    assert outcome.gross_profit == 7_780_212_785 - 7_500_000_000 - 3_750_000 == 276_462_785
    assert outcome.net_profit == 276_462_785 - 2_000_000


def test_same_asset_needs_no_swap() -> None:
    # Borrowed WETH against WETH: the seized collateral is the debt asset already.
    user = account({WETH: 10 * WEI}, {WETH: 8_400_000_000_000_000_000})
    outcome = evaluate_liquidation(
        user, market(), WETH, WETH, WEI, swap=None, flash_premium_bps=5, gas_cost=0
    )
    # 1 WETH repaid -> percentMul(1e18, 10500) = 1.05 WETH, minus 10% of the 0.05 bonus.
    assert outcome.collateral_seized == 1_045_000_000_000_000_000
    assert outcome.swap_amount_out == outcome.collateral_seized
    assert outcome.gross_profit == 45 * 10**15 - percent_of(WEI, 5)


def percent_of(value: int, bps: int) -> int:
    return (value * bps + 5_000) // 10_000


def test_flash_premium_rounds_half_up_like_percent_mul() -> None:
    # FlashLoanLogic: amount.percentMul(FLASHLOAN_PREMIUM_TOTAL).
    assert flash_loan_premium(7_500 * USDC_UNIT, 5) == 3_750_000
    assert flash_loan_premium(1_000, 5) == 1  # 0.5 rounds up
    assert flash_loan_premium(999, 5) == 0  # 0.4995 rounds down
    assert flash_loan_premium(10**6, 0) == 0


def test_gas_in_the_debt_asset_rounds_up() -> None:
    # 500k gas at 30 gwei = 0.015 ETH; at $1,800 that is 27 USDC.
    assert native_to_asset(
        500_000 * 30 * 10**9, native_price=usd(1800), asset_price=usd(1), asset_decimals=6
    ) == 27 * USDC_UNIT
    # One wei more is worth a fraction of a USDC unit: rounded up to a whole one.
    assert native_to_asset(
        500_000 * 30 * 10**9 + 1, native_price=usd(1800), asset_price=usd(1), asset_decimals=6
    ) == 27 * USDC_UNIT + 1
    # In WBTC (8 decimals) at $40,000: 0.015 * 1800 / 40000 = 0.000675 BTC.
    assert native_to_asset(
        15 * 10**15, native_price=usd(1800), asset_price=usd(40000), asset_decimals=8
    ) == 67_500


def test_base_currency_values_round_toward_zero() -> None:
    assert asset_to_base(276_462_785, price=usd(1), decimals=6) == 27_646_278_500
    assert asset_to_base(-1, price=usd(1), decimals=18) == 0
    assert asset_to_base(-(10**18), price=usd(2), decimals=18) == -2 * 10**8


# ---- profit is the sum of its parts -----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 7_500 * USDC_UNIT),
    premium=st.integers(0, 100),
    gas=st.integers(0, 10**9),
    depth=st.integers(1, 10_000),
)
def test_profit_is_exactly_the_sum_of_its_parts(size: int, premium: int, gas: int, depth: int) -> None:
    user, m = devnet_user(), at_1800()
    swap = pool(depth * WEI, depth * 1_800 * USDC_UNIT)
    try:
        outcome = evaluate_liquidation(
            user, m, WETH, USDC, size, swap=swap, flash_premium_bps=premium, gas_cost=gas
        )
    except (LiquidationRevert, SwapRevert):
        return
    quote = quote_liquidation_call(user, m, WETH, USDC, size)
    assert outcome.debt_to_cover == quote.debt_to_cover_actual == size
    assert outcome.collateral_seized == quote.collateral_to_liquidator
    assert outcome.swap_amount_out == swap(quote.collateral_to_liquidator)
    assert outcome.flash_premium == percent_of(size, premium)
    assert outcome.gross_profit == (
        outcome.swap_amount_out - outcome.debt_to_cover - outcome.flash_premium
    )
    assert outcome.net_profit == outcome.gross_profit - gas


# ---- the optimiser -----------------------------------------------------------------------------


def test_maximise_unimodal_finds_the_top_of_a_parabola() -> None:
    assert maximise_unimodal(lambda x: -((x - 123_456) ** 2), 0, 10**9) == (123_456, 0)
    # Ties go to the smaller x.
    assert maximise_unimodal(lambda x: min(x, 50), 0, 100) == (50, 50)
    # An infeasible prefix is skipped; so is an increasing curve up to its end.
    assert maximise_unimodal(lambda x: None if x < 700 else x, 0, 1_000) == (1_000, 1_000)
    assert maximise_unimodal(lambda x: None, 0, 1_000) is None
    assert maximise_unimodal(lambda x: x, 5, 4) is None


def test_maximise_unimodal_takes_a_rising_top_of_a_narrow_range_in_three_evaluations() -> None:
    # A few million units wide (a small WBTC position in satoshis): a value still rising
    # steeply at the top is taken there, not searched for over the whole range.
    calls: list[int] = []

    def kept(x: int) -> int:
        calls.append(x)
        return 30 * x - 7

    assert maximise_unimodal(kept, 1, 3_000_000) == (3_000_000, 90_000_000 - 7)
    assert len(calls) == 3
    # A narrow curve that turns before the top is still searched: its peak, exactly.
    assert maximise_unimodal(lambda x: -((x - 2_345_678) ** 2), 0, 3_000_000) == (2_345_678, 0)
    # One flat to within the rounding noise at the top is searched too (ties: smallest x).
    assert maximise_unimodal(lambda x: min(30 * x, 60_000_000), 0, 3_000_000) == \
        (2_000_000, 60_000_000)


def brute_force(
    user: UserAccount, m: Market, collateral: str, debt: str, swap: SwapOut, premium: int,
    top: int, points: int = 3_000,
) -> int:
    """The best gross profit over an even grid of sizes, plus every size near the ends."""
    sizes = {1 + (top - 1) * i // points for i in range(points + 1)}
    sizes |= set(range(1, min(top, 50) + 1)) | set(range(max(1, top - 50), top + 1))
    best = None
    for size in sizes:
        try:
            o = evaluate_liquidation(
                user, m, collateral, debt, size, swap=swap, flash_premium_bps=premium, gas_cost=0
            )
        except (LiquidationRevert, SwapRevert):
            continue
        best = o.gross_profit if best is None else max(best, o.gross_profit)
    assert best is not None
    return best


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    depth_weth=st.integers(1, 100_000),
    mispricing_bps=st.integers(-300, 300),
    premium=st.integers(0, 50),
)
def test_optimiser_matches_brute_force_weth_usdc(
    depth_weth: int, mispricing_bps: int, premium: int
) -> None:
    # 18-decimal collateral, 6-decimal debt: every USDC unit buys many wei (search the debt).
    user, m = devnet_user(), at_1800()
    swap = pool(depth_weth * WEI, depth_weth * 1_800 * USDC_UNIT * (10_000 + mispricing_bps) // 10_000)
    best = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=premium, gas_cost=0)
    top = quote_liquidation_call(user, m, WETH, USDC, 2**256 - 1).debt_to_cover_actual
    # The profit curve is unimodal only up to the integer steps of the Pool's and the pair's
    # rounding, so the search may settle one step beside the brute-force peak: a few wei, or
    # a millionth of the profit where the steps are coarse.
    peak = brute_force(user, m, WETH, USDC, swap, premium, top)
    assert best.gross_profit >= peak - max(4, peak // 10**6)


@settings(max_examples=40, deadline=None, derandomize=True)
@example(depth_btc=1, mispricing_bps=-109, premium=50)
@given(
    depth_btc=st.integers(1, 5_000),
    mispricing_bps=st.integers(-300, 300),
    premium=st.integers(0, 50),
)
def test_optimiser_matches_brute_force_wbtc_usdc(
    depth_btc: int, mispricing_bps: int, premium: int
) -> None:
    # 8-decimal collateral worth $40,000: one satoshi is 400 USDC units, so many debt amounts
    # buy the same collateral (the optimiser searches the collateral instead).
    user = account({WBTC: SAT // 2}, {USDC: 14_500 * USDC_UNIT})
    m = market({WBTC: usd(38_000)})
    swap = pool(depth_btc * SAT, depth_btc * 38_000 * USDC_UNIT * (10_000 + mispricing_bps) // 10_000)
    best = optimise_liquidation(user, m, WBTC, USDC, swap=swap, flash_premium_bps=premium, gas_cost=0)
    top = quote_liquidation_call(user, m, WBTC, USDC, 2**256 - 1).debt_to_cover_actual
    # A satoshi is 400 USDC units: the rounding steps are coarse (38 wei short of the peak,
    # 3e-6 of the profit, in the example above). Within 1e-5 of the profit, or one wei.
    peak = brute_force(user, m, WBTC, USDC, swap, premium, top)
    assert best.gross_profit >= peak - max(1, peak // 10**5)


def test_coarse_collateral_pays_the_least_debt_for_each_satoshi() -> None:
    # Paying 399 USDC units more for the same satoshi is a pure loss: the chosen size is the
    # least debt that buys its collateral.
    user = account({WBTC: SAT // 2}, {USDC: 14_500 * USDC_UNIT})
    m = market({WBTC: usd(38_000)})
    best = optimise_liquidation(
        user, m, WBTC, USDC, swap=pool(100 * SAT, 3_800_000 * USDC_UNIT), flash_premium_bps=5,
        gas_cost=0,
    )
    less = evaluate_liquidation(
        user, m, WBTC, USDC, best.debt_to_cover - 1, swap=pool(100 * SAT, 3_800_000 * USDC_UNIT),
        flash_premium_bps=5, gas_cost=0,
    )
    assert less.collateral_seized < best.collateral_seized


def test_a_deep_pool_takes_the_whole_close_factor() -> None:
    best = optimise_liquidation(
        devnet_user(), at_1800(), WETH, USDC, swap=pool(10**6 * WEI, 1_800 * 10**6 * USDC_UNIT),
        flash_premium_bps=5, gas_cost=0,
    )
    # Within a few units of 7,500 USDC (the flat top of the curve is tie-broken downwards).
    assert 7_500 * USDC_UNIT - 100 <= best.debt_to_cover <= 7_500 * USDC_UNIT


def test_a_thin_pool_makes_a_smaller_size_more_profitable() -> None:
    user, m = devnet_user(), at_1800()
    thin = pool(20 * WEI, 36_000 * USDC_UNIT)  # $72k of liquidity
    best = optimise_liquidation(user, m, WETH, USDC, swap=thin, flash_premium_bps=5, gas_cost=0)
    full = evaluate_liquidation(
        user, m, WETH, USDC, 7_500 * USDC_UNIT, swap=thin, flash_premium_bps=5, gas_cost=0
    )
    assert best.debt_to_cover < 1_000 * USDC_UNIT
    assert best.gross_profit > 0 > full.gross_profit
    # And it is a local maximum to the unit.
    for step in (-1, 1):
        near = evaluate_liquidation(
            user, m, WETH, USDC, best.debt_to_cover + step, swap=thin, flash_premium_bps=5,
            gas_cost=0,
        )
        assert near.gross_profit <= best.gross_profit


def test_own_balance_caps_the_size() -> None:
    best = optimise_liquidation(
        devnet_user(), at_1800(), WETH, USDC, swap=DEEP, flash_premium_bps=0, gas_cost=0,
        max_debt_to_cover=1_000 * USDC_UNIT,
    )
    at_cap = evaluate_liquidation(
        devnet_user(), at_1800(), WETH, USDC, 1_000 * USDC_UNIT, swap=DEEP, flash_premium_bps=0,
        gas_cost=0,
    )
    # The curve is still rising at the cap; its last few units tie by rounding (ties go down).
    assert 1_000 * USDC_UNIT - 100 <= best.debt_to_cover <= 1_000 * USDC_UNIT
    assert best.gross_profit == at_cap.gross_profit
    assert best.flash_premium == 0


def test_healthy_account_raises_the_protocol_reason() -> None:
    with pytest.raises(LiquidationRevert) as info:
        optimise_liquidation(
            devnet_user(), market(), WETH, USDC, swap=DEEP, flash_premium_bps=5, gas_cost=0
        )
    assert info.value.reason == "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"


def test_a_pool_that_pays_nothing_is_a_swap_revert() -> None:
    with pytest.raises(SwapRevert):
        optimise_liquidation(
            devnet_user(), at_1800(), WETH, USDC, swap=pool(10**30, 1), flash_premium_bps=5,
            gas_cost=0,
        )


# ---- v3.3: no dust left behind ------------------------------------------------------------------


def small_user() -> tuple[UserAccount, Market]:
    """1.5 WETH ($2,700 at $1,800) against 2,400 USDC: HF 0.928, both sides above $2,000."""
    user = account({WETH: 1_500_000_000_000_000_000}, {USDC: 2_400 * USDC_UNIT})
    return user, at_1800()


def test_v33_dust_rule_changes_the_chosen_size() -> None:
    user, m = small_user()
    # 50 WETH / 90,000 USDC: the best v3.0 size (1,767 USDC) would leave $633 of debt, which
    # v3.3 refuses as dust.
    swap = pool(50 * WEI, 90_000 * USDC_UNIT)
    v30 = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0)
    v33 = optimise_liquidation(
        user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0, rules=AaveRules.V3_3
    )
    assert 1_700 * USDC_UNIT < v30.debt_to_cover < 1_800 * USDC_UNIT
    # v3.3: the most that leaves $1,000 of debt (2,400 - 1,000), as the full 2,400 pays less.
    assert v33.debt_to_cover == 1_400 * USDC_UNIT
    assert v33.gross_profit < v30.gross_profit
    with pytest.raises(LiquidationRevert, match="MUST_NOT_LEAVE_DUST"):
        quote_liquidation_call(user, m, WETH, USDC, v30.debt_to_cover, rules=AaveRules.V3_3)
    quote_liquidation_call(user, m, WETH, USDC, v33.debt_to_cover, rules=AaveRules.V3_3)


def test_v33_jumps_to_the_whole_debt_when_that_pays_best() -> None:
    user, m = small_user()
    # 60 WETH / 108,000 USDC: v3.0 stops at 2,121 USDC; v3.3 cannot (it would leave dust) and
    # the whole 2,400 pays more than the 1,400 that leaves none.
    swap = pool(60 * WEI, 108_000 * USDC_UNIT)
    v30 = optimise_liquidation(user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0)
    v33 = optimise_liquidation(
        user, m, WETH, USDC, swap=swap, flash_premium_bps=5, gas_cost=0, rules=AaveRules.V3_3
    )
    assert 2_100 * USDC_UNIT < v30.debt_to_cover < 2_200 * USDC_UNIT
    assert v33.debt_to_cover == 2_400 * USDC_UNIT


def test_interest_accrued_debt_is_covered_in_full() -> None:
    # With a grown borrow index the whole-debt size is not a round number; the optimiser still
    # lands exactly on it (the endpoint is evaluated as such, not through the search variable).
    user, m = small_user()
    reserves = dict(m.reserves)
    usdc = next(k for k, r in reserves.items() if r.asset == USDC)
    reserves[usdc] = replace(reserves[usdc], variable_borrow_index=RAY + RAY // 7)
    grown = replace(m, reserves=reserves, prices={**m.prices, WETH: usd(2100)})
    deep = pool(10**4 * WEI, 21 * 10**6 * USDC_UNIT)
    best: Outcome = optimise_liquidation(
        user, grown, WETH, USDC, swap=deep, flash_premium_bps=5, gas_cost=0, rules=AaveRules.V3_3
    )
    quote = quote_liquidation_call(user, grown, WETH, USDC, 2**256 - 1, rules=AaveRules.V3_3)
    assert best.debt_to_cover == quote.debt_to_cover_actual


def test_the_whole_debt_wins_a_near_tie_so_no_dust_is_left() -> None:
    # 1 WBTC against 33,000.000123 USDC at $38,000 (HF < 0.95: the whole debt may go). One
    # satoshi is worth ~380 USDC units, so the least debt that buys the collateral the whole
    # debt buys can be a few hundred units short of it: as profitable by the rounding, it left
    # those units (and the interest of the seconds to its block) as a debt a rival then
    # cleared at a loss. The plan repays all of it, asking a little more (headroom).
    user = account({WBTC: SAT}, {USDC: 33_000 * USDC_UNIT + 123})
    m = market({WBTC: usd(38_000)})
    deep = pool(10**4 * SAT, 380 * 10**6 * USDC_UNIT)
    best = optimise_liquidation(user, m, WBTC, USDC, swap=deep, flash_premium_bps=0, gas_cost=0)
    assert best.debt_to_cover == best.quote.user_debt
    assert best.headroom > 0
