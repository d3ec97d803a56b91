"""The planner: best pair and route, funding, gas, rejections, calldata; the V2 quoter."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_abi import decode as abi_decode

from keeper.domain.account import Market, ReserveState
from keeper.domain.amm import SwapRevert, get_amount_out, sort_tokens
from keeper.domain.liquidation import AaveRules, quote_liquidation_call
from keeper.domain.plan import GasPrice, Plan, Rejection, RejectionReason
from keeper.domain.quote import Route, UniswapV2Quoter, needed_pairs
from keeper.pipeline.pair_search import batched_keep_gas
from keeper.pipeline.planner import Funding, GasModel, PlannerConfig, plan_liquidation
from keeper.protocols.aave_v3.liquidator import encode_liquidate
from keeper.protocols.uniswap_v2.pair import UNISWAP_V2_PAIR_INIT_CODE_HASH, pair_address
from tests.unit.test_account import USDC, WBTC, WETH, WSTETH, account, market, usd

WEI = 10**18
USDC_UNIT = 10**6
SAT = 10**8
GWEI = 10**9
USER = "0x00000000000000000000000000000000000000aa"
LIQUIDATOR = "0x00000000000000000000000000000000000000cc"
CONFIG = PlannerConfig(liquidator=LIQUIDATOR, native_asset=WETH)
GAS = GasPrice(base_fee=20 * GWEI, priority_fee=GWEI)
FLASH = Funding(flash_premium_bps=5)


def flash_market(prices: dict[str, int] | None = None, **changes: bool) -> Market:
    """The unit-test market with flash loans enabled on every reserve (as the devnet has)."""
    m = market(prices)
    reserves: dict[int, ReserveState] = {
        i: replace(r, configuration=replace(r.configuration, flashloan_enabled=True, **changes))
        for i, r in m.reserves.items()
    }
    return replace(m, reserves=reserves)


def reserves(*pools: tuple[str, int, str, int]) -> dict[tuple[str, str], tuple[int, int]]:
    """Pair reserves keyed as getReserves answers them, from (token_a, amount_a, token_b, amount_b)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for a, ra, b, rb in pools:
        key = sort_tokens(a, b)
        out[key] = (ra, rb) if key[0] == a else (rb, ra)
    return out


DEEP_WETH_USDC = (WETH, 1_000 * WEI, USDC, 1_800_000 * USDC_UNIT)


def devnet_user_plan(
    quoter: UniswapV2Quoter,
    *,
    gas_price: GasPrice = GAS,
    funding: Funding = FLASH,
    config: PlannerConfig = CONFIG,
) -> Plan | Rejection:
    """Plan the devnet's borrower: 10 WETH against 15,000 USDC, WETH at $1,800 (HF 0.99)."""
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    return plan_liquidation(
        USER, user, flash_market({WETH: usd(1800)}), quoter, gas_price, funding, config
    )


# ---- the quoter ---------------------------------------------------------------------------------


def test_quoter_matches_uniswap_math_and_prefers_the_better_route() -> None:
    pools = reserves(
        (WBTC, SAT // 2, USDC, 20_000 * USDC_UNIT),  # a thin direct pool, at $40,000
        (WBTC, 450 * SAT, WETH, 10_000 * WEI),  # 22.2 WETH per WBTC: $40,000 at $1,800
        DEEP_WETH_USDC,
    )
    quoter = UniswapV2Quoter(pools, hubs=[WETH])
    assert quoter.routes(WBTC, USDC) == [Route((WBTC, USDC)), Route((WBTC, WETH, USDC))]
    direct = quoter.quote_route(Route((WBTC, USDC)), SAT // 10)
    assert direct.amount_out == get_amount_out(SAT // 10, SAT // 2, 20_000 * USDC_UNIT)
    hop = quoter.quote_route(Route((WBTC, WETH, USDC)), SAT // 10)
    via_weth = get_amount_out(SAT // 10, 450 * SAT, 10_000 * WEI)
    assert hop.amounts == (SAT // 10, via_weth, get_amount_out(via_weth, 1_000 * WEI,
                                                                1_800_000 * USDC_UNIT))
    # 0.1 BTC in a 0.5 BTC pool loses 17%: the hop through WETH pays more.
    assert quoter.quote_exact_in(WBTC, USDC, SAT // 10) == hop
    # A tiny amount pays the direct pool's better price (fewer fees).
    assert quoter.quote_exact_in(WBTC, USDC, 1_000).path == (WBTC, USDC)


def test_quoter_refuses_what_a_pair_would_revert() -> None:
    quoter = UniswapV2Quoter(reserves((WETH, 10**30, USDC, 1)))
    with pytest.raises(SwapRevert, match="INSUFFICIENT_OUTPUT_AMOUNT"):
        quoter.quote_exact_in(WETH, USDC, WEI)
    with pytest.raises(SwapRevert, match="OVERFLOW"):
        UniswapV2Quoter(reserves((WETH, 2**112 - 10, USDC, 10**12))).quote_exact_in(WETH, USDC, 10)
    with pytest.raises(SwapRevert, match="no route"):
        quoter.quote_exact_in(WBTC, USDC, SAT)
    assert quoter.routes(WETH, WETH) == []


def test_pair_address_is_uniswaps_create2() -> None:
    # Mainnet: the factory 0x5C69.. and WETH/USDC at 0xB4e1...
    factory = "0x5c69bee701ef814a2b6a3edd4b1652cb9cc5aa6f"
    usdc = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
    weth = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
    assert pair_address(factory, usdc, weth, UNISWAP_V2_PAIR_INIT_CODE_HASH) == (
        "0xb4e16d0168e52d35cacd2c6185b44281ec28c9dc"
    )


def test_needed_pairs_cover_direct_and_hub_routes() -> None:
    pairs = needed_pairs([WBTC, WETH], [USDC], hubs=[WETH])
    assert pairs == {sort_tokens(WBTC, USDC), sort_tokens(WETH, USDC), sort_tokens(WBTC, WETH)}


# ---- plans ----------------------------------------------------------------------------------------


def test_devnet_account_plans_the_close_factor_with_a_flash_loan() -> None:
    plan = devnet_user_plan(UniswapV2Quoter(reserves(DEEP_WETH_USDC)))
    assert isinstance(plan, Plan)
    assert (plan.collateral_asset, plan.debt_asset, plan.user) == (WETH, USDC, USER)
    assert plan.use_flash_loan
    assert plan.swap_path == (WETH, USDC)
    # Deep pool: (nearly) the whole 50% close factor; 4.3541.. WETH seized for 7,500 USDC.
    assert 7_500 * USDC_UNIT - 100 <= plan.debt_to_cover <= 7_500 * USDC_UNIT
    # Gas: (450k + 75k flash + 95k one hop) at 21 gwei = 0.01302 ETH = 23.436 USDC at $1,800.
    assert plan.gas_estimate == 620_000
    assert plan.gas_price == 21 * GWEI
    assert plan.gas_cost == 23_436_000
    # The parts add up, in units and in USD (8 decimals, USDC at $1).
    assert plan.gross_profit == plan.swap_amount_out - plan.debt_to_cover - plan.flash_premium
    assert plan.net_profit == plan.gross_profit - plan.gas_cost
    assert plan.net_profit_usd == plan.net_profit * 100
    assert plan.gross_profit == 276_462_785
    # minProfit: 1% below the plan; the swap's minimum out follows from it.
    assert plan.min_profit == plan.gross_profit - (plan.gross_profit * 100 + 5_000) // 10_000
    assert plan.min_amount_out == plan.min_profit + plan.debt_to_cover + plan.flash_premium
    assert plan.health_factor == 99 * 10**16
    assert plan.rules is AaveRules.V3_0
    assert plan.timestamp == flash_market().timestamp


def test_calldata_is_the_liquidators_liquidate_call() -> None:
    plan = devnet_user_plan(UniswapV2Quoter(reserves(DEEP_WETH_USDC)))
    assert isinstance(plan, Plan)
    calldata = encode_liquidate(plan.params)
    assert plan.liquidator == LIQUIDATOR
    # liquidate(Order): the swap path is one leg of V2 hops (venue 0, token out, no fee tier);
    # flash source 1 is the Aave Pool; no V3 flash pool, no block limit.
    (args,) = abi_decode(
        ["(address,address,address,uint256,(uint256,(uint8,address,uint24)[])[],uint256,uint8,"
         "address,uint24,uint256)"],
        calldata[4:],
    )
    assert args == (WETH, USDC, USER, plan.debt_to_cover, ((0, ((0, USDC, 0),)),),
                    plan.min_profit, 1, "0x" + "00" * 20, 0, 0)


def test_high_gas_makes_it_unprofitable() -> None:
    # 276 USDC of gross profit; 610k gas at 300 gwei costs 329.4 USDC.
    result = devnet_user_plan(
        UniswapV2Quoter(reserves(DEEP_WETH_USDC)), gas_price=GasPrice(299 * GWEI, GWEI)
    )
    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.UNPROFITABLE
    assert result.best_net_profit_usd is not None and result.best_net_profit_usd < 0


def test_minimum_profit_is_in_usd() -> None:
    quoter = UniswapV2Quoter(reserves(DEEP_WETH_USDC))
    assert isinstance(devnet_user_plan(quoter), Plan)
    strict = replace(CONFIG, min_profit_base=usd(1_000))
    result = devnet_user_plan(quoter, config=strict)
    assert isinstance(result, Rejection) and result.reason is RejectionReason.UNPROFITABLE


def test_own_balance_saves_the_premium_and_the_flash_gas() -> None:
    quoter = UniswapV2Quoter(reserves(DEEP_WETH_USDC))
    funded = Funding(flash_premium_bps=5, own_balances={USDC: 100_000 * USDC_UNIT})
    plan = devnet_user_plan(quoter, funding=funded)
    flash = devnet_user_plan(quoter)
    assert isinstance(plan, Plan) and isinstance(flash, Plan)
    assert not plan.use_flash_loan and not plan.params.flash_loan
    assert plan.flash_premium == 0
    assert plan.gas_estimate == flash.gas_estimate - CONFIG.gas.flash_loan
    assert plan.net_profit > flash.net_profit


def test_a_small_own_balance_loses_to_a_full_size_flash_loan() -> None:
    quoter = UniswapV2Quoter(reserves(DEEP_WETH_USDC))
    funded = Funding(flash_premium_bps=5, own_balances={USDC: 100 * USDC_UNIT})
    plan = devnet_user_plan(quoter, funding=funded)
    assert isinstance(plan, Plan) and plan.use_flash_loan


def test_no_flash_loans_and_no_funds() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = market({WETH: usd(1800)})  # flash loans disabled on every reserve here
    result = plan_liquidation(
        USER, user, m, UniswapV2Quoter(reserves(DEEP_WETH_USDC)), GAS, FLASH, CONFIG
    )
    assert isinstance(result, Rejection) and result.reason is RejectionReason.NO_FUNDS
    # The Pool's liquidity also caps a flash loan: none, none to borrow.
    dry = Funding(flash_premium_bps=5, flash_liquidity={USDC: 0})
    result = devnet_user_plan(UniswapV2Quoter(reserves(DEEP_WETH_USDC)), funding=dry)
    assert isinstance(result, Rejection) and result.reason is RejectionReason.NO_FUNDS
    some = Funding(flash_premium_bps=5, flash_liquidity={USDC: 2_000 * USDC_UNIT})
    plan = devnet_user_plan(UniswapV2Quoter(reserves(DEEP_WETH_USDC)), funding=some)
    assert isinstance(plan, Plan) and plan.debt_to_cover <= 2_000 * USDC_UNIT


def test_healthy_account() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    result = plan_liquidation(
        USER, user, flash_market(), UniswapV2Quoter(reserves(DEEP_WETH_USDC)), GAS, FLASH, CONFIG
    )
    assert isinstance(result, Rejection) and result.reason is RejectionReason.HEALTHY
    assert "1100000000000000000" in result.detail


def test_no_route_for_the_collateral() -> None:
    result = devnet_user_plan(UniswapV2Quoter(reserves((WBTC, SAT, USDC, 40_000 * USDC_UNIT))))
    assert isinstance(result, Rejection) and result.reason is RejectionReason.NO_ROUTE


def test_paused_reserve() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)}, paused=True)
    result = plan_liquidation(
        USER, user, m, UniswapV2Quoter(reserves(DEEP_WETH_USDC)), GAS, FLASH, CONFIG
    )
    assert isinstance(result, Rejection) and result.reason is RejectionReason.PAUSED_RESERVE


def test_frozen_reserves_are_still_liquidated() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)}, frozen=True)
    plan = plan_liquidation(
        USER, user, m, UniswapV2Quoter(reserves(DEEP_WETH_USDC)), GAS, FLASH, CONFIG
    )
    assert isinstance(plan, Plan)


def test_missing_price_is_missing_data() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    m = replace(m, prices={k: v for k, v in m.prices.items() if k != WETH})
    result = plan_liquidation(
        USER, user, m, UniswapV2Quoter(reserves(DEEP_WETH_USDC)), GAS, FLASH, CONFIG
    )
    assert isinstance(result, Rejection) and result.reason is RejectionReason.MISSING_DATA


def test_the_best_pair_wins_across_collaterals_and_debts() -> None:
    # Collateral: 5 WETH ($9,000) and 0.25 WBTC ($10,000); debt 15,500 USDC.
    user = account({WETH: 5 * WEI, WBTC: SAT // 4}, {USDC: 15_500 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    # WBTC has the larger bonus (6.5%) but only a thin pool; WETH's pool is deep.
    thin_btc = (WBTC, SAT // 2, USDC, 20_000 * USDC_UNIT)
    plan = plan_liquidation(
        USER, user, m, UniswapV2Quoter(reserves(DEEP_WETH_USDC, thin_btc)), GAS, FLASH, CONFIG
    )
    assert isinstance(plan, Plan) and plan.collateral_asset == WETH
    # Deepen the WBTC pool: now its larger bonus wins.
    deep_btc = (WBTC, 1_000 * SAT, USDC, 40_000_000 * USDC_UNIT)
    plan = plan_liquidation(
        USER, user, m, UniswapV2Quoter(reserves(DEEP_WETH_USDC, deep_btc)), GAS, FLASH, CONFIG
    )
    assert isinstance(plan, Plan) and plan.collateral_asset == WBTC
    # Its expected seizure is the Pool's own answer for that size.
    quote = quote_liquidation_call(user, m, WBTC, USDC, plan.debt_to_cover)
    assert plan.collateral_seized == quote.collateral_to_liquidator


def test_two_hops_through_weth_when_there_is_no_direct_pool() -> None:
    user = account({WBTC: SAT // 2}, {USDC: 14_500 * USDC_UNIT})
    m = flash_market({WBTC: usd(38_000)})
    pools = reserves((WBTC, 1_000 * SAT, WETH, 20_000 * WEI), (WETH, 10_000 * WEI, USDC,
                                                                 20_000_000 * USDC_UNIT))
    plan = plan_liquidation(
        USER, user, m, UniswapV2Quoter(pools, hubs=[WETH]), GAS, FLASH,
        replace(CONFIG, native_asset=WETH),
    )
    assert isinstance(plan, Plan)
    assert plan.swap_path == (WBTC, WETH, USDC)
    assert plan.gas_estimate == GasModel().estimate(hops=2, flash_loan=True)


def test_same_asset_liquidation_needs_no_route() -> None:
    # wstETH collateral and debt (HF 10 * 0.79 / 8 = 0.9875): no pool at all, none needed.
    user = account({WSTETH: 10 * WEI}, {WSTETH: 8 * WEI})
    m = flash_market({WSTETH: usd(1_600)})
    plan = plan_liquidation(USER, user, m, UniswapV2Quoter({}), GAS, FLASH, CONFIG)
    assert isinstance(plan, Plan)
    assert plan.swap_path == () and plan.swap_amount_out == plan.collateral_seized
    assert plan.params.swap_path == ()


def test_v33_rules_reach_the_optimiser() -> None:
    # 1.5 WETH against 2,400 USDC (HF 0.928); a pool where v3.0 would stop at ~1,767 USDC.
    user = account({WETH: 1_500_000_000_000_000_000}, {USDC: 2_400 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    quoter = UniswapV2Quoter(reserves((WETH, 50 * WEI, USDC, 90_000 * USDC_UNIT)))
    cheap_gas = GasPrice(GWEI, 0)
    v30 = plan_liquidation(USER, user, m, quoter, cheap_gas, FLASH, CONFIG)
    v33 = plan_liquidation(
        USER, user, m, quoter, cheap_gas, FLASH, replace(CONFIG, rules=AaveRules.V3_3)
    )
    assert isinstance(v30, Plan) and isinstance(v33, Plan)
    assert v30.debt_to_cover > 1_700 * USDC_UNIT
    assert v33.debt_to_cover == 1_400 * USDC_UNIT
    assert v33.rules is AaveRules.V3_3


# ---- keeping the collateral ------------------------------------------------------------------


def test_keeping_the_collateral_wins_where_the_pool_is_too_thin_to_sell_into() -> None:
    thin = UniswapV2Quoter(reserves((WETH, 2 * WEI, USDC, 3_600 * USDC_UNIT)))
    own = Funding(flash_premium_bps=5, own_balances={USDC: 20_000 * USDC_UNIT})
    sold = devnet_user_plan(thin, funding=own)
    kept = devnet_user_plan(thin, funding=own, config=replace(CONFIG, keep_collateral=True))
    assert isinstance(kept, Plan) and kept.params.keep_collateral
    assert not kept.use_flash_loan and kept.swap_path == () and kept.params.swap_legs == ()
    # Valued at the oracle: the whole close factor (7,500 USDC) and its 5% bonus.
    assert kept.debt_to_cover == 7_500 * USDC_UNIT
    assert kept.gross_profit == kept.swap_amount_out - kept.debt_to_cover
    assert kept.swap_amount_out == kept.collateral_seized * 1_800 * USDC_UNIT // WEI
    # The contract's floor is collateral: what is seized, less the tolerance on the profit.
    assert kept.collateral_seized * 99 // 100 < kept.params.min_profit < kept.collateral_seized
    assert isinstance(sold, Rejection) or sold.net_profit_usd < kept.net_profit_usd
    # With no balance of its own it cannot keep anything: a flash loan must be repaid.
    flash_only = devnet_user_plan(thin, config=replace(CONFIG, keep_collateral=True))
    assert not (isinstance(flash_only, Plan) and flash_only.params.keep_collateral)


def test_a_kept_liquidation_is_priced_at_its_share_of_a_batch_where_batches_are_sent() -> None:
    thin = UniswapV2Quoter(reserves((WETH, 2 * WEI, USDC, 3_600 * USDC_UNIT)))
    own = Funding(flash_premium_bps=5, own_balances={USDC: 20_000 * USDC_UNIT})
    kept = replace(CONFIG, keep_collateral=True)
    alone = devnet_user_plan(thin, funding=own, config=kept)
    batched = devnet_user_plan(thin, funding=own, config=replace(
        kept, gas=GasModel(kept_in_batch=220_000)))
    assert isinstance(alone, Plan) and isinstance(batched, Plan)
    assert alone.params.keep_collateral and batched.params.keep_collateral
    assert (alone.gas_estimate, batched.gas_estimate) == (450_000, 220_000)
    assert batched.gross_profit == alone.gross_profit
    assert batched.net_profit_usd > alone.net_profit_usd
    # A sale is priced as before: it goes alone.
    assert GasModel(kept_in_batch=220_000).estimate(hops=1, flash_loan=True) == 620_000
    # A smaller batch shares its fixed cost among fewer orders (measured: 202k / 232k).
    assert 202_000 < batched_keep_gas(16) < batched_keep_gas(8) and batched_keep_gas(8) > 232_000
    assert batched_keep_gas(8) < GasModel().estimate(hops=0, flash_loan=False)
