"""The risk lab's four analyses over ``RiskInputs``: shock grid (with liquidators' profit),
cascade, VaR/ES, parameter what-if. CPU-bound and synchronous: callers run it in a thread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from keeper.app.config import RiskConfig
from keeper.app.risk import RiskInputs
from keeper.domain.quote import Quoter, UniswapV2Quoter
from keeper.domain.risk_book import RiskBook
from keeper.domain.risk_cascade import CascadeConfig, CascadeOutcome, run_cascade
from keeper.domain.risk_params import ParamSweep, sweep_parameters
from keeper.domain.risk_profit import ProfitSummary, QuoterFor, liquidators_profit, repriced_pairs
from keeper.domain.risk_shock import (
    PriceLink,
    Shock,
    ShockOutcome,
    default_grid,
    evaluate_grid,
    liquidations,
    shocked_prices,
)
from keeper.domain.risk_var import MarketModel, VarOutcome, estimate_model, monte_carlo

STRESS_LEVEL = 0.3
"""The drop of the stressed market for the cascade and the what-if (−30%)."""

MIN_HISTORY_POINTS = 10
DETAIL_LIMIT = 50_000
"""Up to this many accounts, every candidate of every shock is settled by the exact math (the
per-account figures of ``--json``); above it only those near the line are (the set stays
exact, the aggregates are floats)."""
DEFAULT_CORRELATION = 0.7


@dataclass(frozen=True, eq=False)
class RiskReport:
    """The four analyses of one book."""

    inputs: RiskInputs
    grid: tuple[ShockOutcome, ...]
    profits: tuple[ProfitSummary, ...]
    gas_cost_base: float
    cascade: CascadeOutcome | None
    model: MarketModel
    var: VarOutcome | None
    params: ParamSweep | None
    stress: Shock | None = None


def v2_quoter_for(inputs: RiskInputs) -> QuoterFor:
    """The Uniswap V2 pools, traded to the given oracle prices with their depth kept."""
    decimals = dict(zip(inputs.book.assets, inputs.book.decimals, strict=True))

    def at(prices: Mapping[str, int]) -> Quoter:
        return UniswapV2Quoter(repriced_pairs(inputs.pairs, prices, decimals), inputs.hubs)

    return at


def analyse(inputs: RiskInputs, cfg: RiskConfig, *, detail: bool | None = None,
            quoter_for: QuoterFor | None = None) -> RiskReport:
    """Run the grid, the cascade, the Monte Carlo and the what-if."""
    book = inputs.book
    if detail is None:
        detail = len(book) <= DETAIL_LIMIT
    quotes = quoter_for or v2_quoter_for(inputs)
    gas = gas_cost_base(inputs, cfg)
    shocks = default_grid(book.assets, inputs.stables, cfg.levels, inputs.symbols)
    grid = evaluate_grid(book, shocks, links=inputs.links, detail=detail)
    profits = []
    for outcome in grid:
        liq = liquidations(book, book.price_vector(outcome.prices))
        profits.append(liquidators_profit(book, liq, outcome.prices, quotes(outcome.prices),
                                          gas_cost_base=gas, limit=cfg.profit_accounts))
    stress = _stress(shocks, cfg.levels)
    model = market_model(inputs, cfg)
    var = None
    if len(book) and model.assets:
        var = monte_carlo(book, model, horizon_days=cfg.horizon_days, paths=cfg.paths,
                          rng=np.random.default_rng(cfg.seed))
    return RiskReport(inputs, tuple(grid), tuple(profits), gas,
                      cascade(inputs, stress, cfg) if stress else None, model, var,
                      what_if(inputs, stress, quotes, gas) if stress and len(book) else None,
                      stress)


def gas_cost_base(inputs: RiskInputs, cfg: RiskConfig) -> float:
    """One liquidation's gas in base units (0 without a native asset price)."""
    book = inputs.book
    if inputs.native_asset is None or inputs.native_asset not in book.assets:
        return 0.0
    native_price = float(book.prices[book.assets.index(inputs.native_asset)])
    return cfg.gas_per_liquidation * cfg.gas_price_gwei * 1e9 / 1e18 * native_price


def _stress(shocks: Sequence[Shock], levels: Sequence[float]) -> Shock | None:
    # The joint shock closest to −30%.
    joint = shocks[:len(levels)]
    if not joint or not joint[0].moves:
        return None
    best = min(range(len(levels)), key=lambda i: abs(levels[i] - STRESS_LEVEL))
    return joint[best]


def cascade(inputs: RiskInputs, stress: Shock, cfg: RiskConfig) -> CascadeOutcome | None:
    """The cascade the stress shock sets off, pools first traded to the shocked oracle."""
    book = inputs.book
    quote_asset = next((s for s in inputs.stables if s in book.assets), None)
    if quote_asset is None or not inputs.pairs:
        return None
    start = {a: int(p) for a, p in zip(book.assets, book.prices, strict=True)}
    if book.market is not None:
        start = dict(book.market.prices)
    shocked = shocked_prices(start, stress, inputs.links)
    decimals = dict(zip(book.assets, book.decimals, strict=True))
    pools = repriced_pairs(inputs.pairs, shocked, decimals)
    return run_cascade(book, start, shocked, pools,
                       CascadeConfig(quote_asset, cfg.pass_through, inputs.hubs,
                                     links=inputs.links))


def market_model(inputs: RiskInputs, cfg: RiskConfig) -> MarketModel:
    """Volatility and correlation of the non-stable assets from the oracle's history, the
    configured default where the history is short; linked assets follow their base."""
    book = inputs.book
    followers = {link.asset for link in inputs.links}
    moving = [a for a in book.assets if a not in inputs.stables and a not in followers]
    rich = {a: s for a, s in inputs.history.items()
            if a in moving and len(s) >= MIN_HISTORY_POINTS}
    est = estimate_model(rich, df=cfg.tail_df) if rich else None
    vols, corr = [], np.full((len(moving), len(moving)), DEFAULT_CORRELATION)
    for i, a in enumerate(moving):
        vols.append(est.vols[est.assets.index(a)] if est and a in est.assets else cfg.default_vol)
        for j, b in enumerate(moving):
            if est and a in est.assets and b in est.assets:
                corr[i, j] = est.corr[est.assets.index(a)][est.assets.index(b)]
        corr[i, i] = 1.0
    prices = dict(zip(book.assets, book.prices, strict=True))
    follows = tuple((link.asset, link.base, float(prices[link.asset] / prices[link.base]))
                    for link in inputs.links if prices.get(link.base))
    return MarketModel(tuple(moving), tuple(vols),
                       tuple(tuple(float(x) for x in row) for row in corr), cfg.tail_df, follows)


def what_if(inputs: RiskInputs, stress: Shock, quotes: QuoterFor, gas: float) -> ParamSweep | None:
    """Threshold × bonus × close factor for the volatile reserve with the most collateral."""
    book = inputs.book
    value = (book.collateral * book.prices).sum(axis=0)
    volatile = [j for j, a in enumerate(book.assets) if a not in inputs.stables and value[j] > 0]
    if not volatile:
        return None
    col = max(volatile, key=lambda j: value[j])
    asset = book.assets[col]
    held = book.thresholds[:, col][book.collateral[:, col] > 0]
    current = int(np.median(held)) if held.size else 8000
    thresholds = sorted({max(1000, min(9500, current + d)) for d in range(-1000, 501, 250)})
    bonuses = list(range(10_050, 11_501, 50))
    prices = shocked_prices(dict(book.market.prices) if book.market else
                            {a: int(p) for a, p in zip(book.assets, book.prices, strict=True)},
                            stress, inputs.links)
    return sweep_parameters(book, asset, stress, quotes(prices), thresholds=thresholds,
                            bonuses=bonuses, links=inputs.links, gas_cost_base=gas, limit=200)


GAUGE_LEVELS = (0.1, 0.2, 0.3)
JOINT = "all_volatile"


def stress_figures(book: RiskBook, stables: Sequence[str], symbols: Mapping[str, str],
                   links: Sequence[PriceLink] = ()) -> list[tuple[str, str, float, float]]:
    """``(asset label, shock label, liquidatable debt USD, bad debt USD)`` at −10/−20/−30%,
    for the volatile assets together and each asset alone (the daemon's gauges)."""
    volatile = [a for a in book.assets if a not in stables]
    shocks: list[tuple[str, str, Shock]] = []
    for level in GAUGE_LEVELS:
        label = f"-{level:.0%}"
        shocks.append((JOINT, label, Shock(label, {a: 1 - level for a in volatile})))
        shocks += [(symbols.get(a, a), label, Shock(label, {a: 1 - level})) for a in book.assets]
    outcomes = evaluate_grid(book, [s for _, _, s in shocks], links=links)
    return [(who, label, o.liquidatable_debt / 1e8, o.bad_debt / 1e8)
            for (who, label, _), o in zip(shocks, outcomes, strict=True)]
