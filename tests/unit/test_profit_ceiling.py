"""The bound that lets the planner skip options: never below what the optimiser finds, and a
search that skips by it gives the same plan as one that optimises every option."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.domain.liquidation import AaveRules
from keeper.domain.plan import GasPrice
from keeper.domain.profit import PairQuotes, full_quote, optimise_liquidation
from keeper.domain.profit_ceiling import profit_ceiling
from keeper.domain.quote import UniswapV2Quoter
from keeper.pipeline import pair_search
from keeper.pipeline.pair_search import Funding, GasModel, SearchInputs, search
from tests.unit.test_account import USDC, WBTC, WETH, account, usd
from tests.unit.test_planner import flash_market, reserves

WEI = 10**18
USDC_UNIT = 10**6
SAT = 10**8
GWEI = 10**9


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    depth=st.integers(1, 100_000),
    mispricing_bps=st.integers(-2_000, 2_000),
    premium=st.integers(0, 50),
    weth=st.integers(1, 50),
    debt_usd=st.integers(1_000, 90_000),
    cap=st.one_of(st.none(), st.integers(1, 10**11)),
    v36=st.booleans(),
)
def test_the_ceiling_is_never_below_the_optimum(
    depth: int, mispricing_bps: int, premium: int, weth: int, debt_usd: int, cap: int | None,
    v36: bool,
) -> None:
    user = account({WETH: weth * WEI}, {USDC: debt_usd * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    rules = AaveRules.V3_6 if v36 else AaveRules.V3_0
    pool = reserves((WETH, depth * WEI // 10, USDC,
                     depth * 180 * USDC_UNIT * (10_000 + mispricing_bps) // 10_000))
    quoter = UniswapV2Quoter(pool)
    route = quoter.routes(WETH, USDC)[0]

    def sell(amount: int) -> int:
        return quoter.quote_route(route, amount).amount_out

    quotes = PairQuotes(user, m, WETH, USDC, rules)
    limit = cap if cap is not None else 2**256 - 1
    try:
        best = optimise_liquidation(user, m, WETH, USDC, swap=sell, flash_premium_bps=premium,
                                    gas_cost=0, rules=rules, max_debt_to_cover=limit,
                                    quotes=quotes)
    except Exception:
        return  # healthy, dust or a pool that pays nothing: nothing to bound
    ceiling = profit_ceiling(quotes, sell, limit)
    assert ceiling is not None and ceiling >= best.gross_profit
    # It ignores slippage, so it may sit well above the optimum: never above the whole bonus
    # at the pool's best price (a fifth of the largest seizure at these mispricings).
    value = full_quote(quotes).collateral_to_liquidator * 1_800 * USDC_UNIT // WEI
    assert ceiling <= max(best.gross_profit, 0) + value // 5 + 10


def test_the_ceiling_of_a_same_asset_pair_is_the_bonus() -> None:
    user = account({USDC: 20_000 * USDC_UNIT}, {USDC: 19_500 * USDC_UNIT})
    m = flash_market()
    quotes = PairQuotes(user, m, USDC, USDC)
    best = optimise_liquidation(user, m, USDC, USDC, swap=None, flash_premium_bps=0, gas_cost=0,
                                quotes=quotes)
    ceiling = profit_ceiling(quotes, None, 2**256 - 1)
    assert ceiling is not None and best.gross_profit <= ceiling <= best.gross_profit + 20


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    weth=st.integers(1, 30),
    wbtc_sats=st.integers(0, 3 * SAT),
    usdc_debt=st.integers(0, 60_000),
    weth_debt=st.integers(0, 15),
    depth_bps=st.integers(10, 100_000),
    own_usdc=st.integers(0, 40_000),
)
def test_skipping_by_the_ceiling_finds_the_same_best_as_trying_every_option(
    weth: int, wbtc_sats: int, usdc_debt: int, weth_debt: int, depth_bps: int, own_usdc: int,
) -> None:
    debts = {a: v for a, v in ((USDC, usdc_debt * USDC_UNIT), (WETH, weth_debt * WEI)) if v}
    if not debts:
        return
    user = account({WETH: weth * WEI, WBTC: wbtc_sats}, debts)
    m = flash_market({WETH: usd(1500), WBTC: usd(30_000)})
    scale = depth_bps
    quoter = UniswapV2Quoter(reserves(
        (WETH, scale * WEI // 100, USDC, scale * 1_500 * USDC_UNIT // 100),
        (WBTC, scale * SAT // 1_000, USDC, scale * 30 * USDC_UNIT),
        (WBTC, scale * SAT // 1_000, WETH, scale * 20 * WEI // 1_000),
    ), hubs=[WETH])
    inputs = SearchInputs(m, quoter, GasPrice(base_fee=20 * GWEI, priority_fee=GWEI),
                          Funding(flash_premium_bps=5, own_balances={USDC: own_usdc * USDC_UNIT}),
                          AaveRules.V3_0, GasModel(), native_price=usd(1500))
    collaterals, owed = pair_search.positions(user, m)
    found = search(user, collaterals, owed, inputs)

    every = pair_search.SearchResult()
    for debt_asset in owed:
        ways = pair_search.funding_options(debt_asset, True, inputs.funding)
        for collateral_asset in collaterals:
            for option in pair_search._pair_options(user, collateral_asset, debt_asset, ways,
                                                    inputs, every):
                pair_search._optimise(option, inputs, every)
    if every.best is None:
        assert found.best is None
        return
    assert found.best is not None
    assert found.best.net_profit_usd == every.best.net_profit_usd
    assert (found.best.collateral_asset, found.best.debt_asset, found.best.flash_loan) == \
        (every.best.collateral_asset, every.best.debt_asset, every.best.flash_loan)
