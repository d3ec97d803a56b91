"""The risk lab's pure parts: shocked prices, the float liquidation figures, the grid, the
cascade and the parameter sweep, on books small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from keeper.domain.quote import UniswapV2Quoter
from keeper.domain.risk_book import RiskBook, synthetic_book
from keeper.domain.risk_cascade import CascadeConfig, run_cascade
from keeper.domain.risk_params import sweep_parameters
from keeper.domain.risk_profit import liquidators_profit, repriced_pairs
from keeper.domain.risk_shock import (
    PriceLink,
    Shock,
    default_grid,
    evaluate_grid,
    evaluate_shock,
    liquidations,
    shocked_prices,
)

X, USD = "0x00000000000000000000000000000000000000aa", "0x00000000000000000000000000000000000000bb"


def _book(n: int = 1) -> RiskBook:
    # Each account: 1 X (at $2,000) as collateral, LT 80%, bonus 5%; $1,400 of USD debt.
    return RiskBook(users=tuple(f"0x{i:02x}" for i in range(n)), assets=(X, USD), decimals=(18, 6),
                    collateral=np.tile([1.0, 0.0], (n, 1)),
                    thresholds=np.tile([8000.0, 0.0], (n, 1)),
                    bonuses=np.tile([10500.0, 0.0], (n, 1)),
                    debt=np.tile([0.0, 1400.0], (n, 1)), prices=np.array([2000e8, 1e8]))


def test_shocked_prices_floor_and_linked_assets_follow_their_base() -> None:
    prices = {"a": 199_999_999, "b": 300, "c": 10}
    out = shocked_prices(prices, Shock("s", {"a": 0.7}), [PriceLink("b", "a", 15 * 10**17)])
    assert out["a"] == 139_999_999  # floor(199_999_999 × 7/10)
    assert out["b"] == 139_999_999 * 3 // 2
    assert out["c"] == 10


def test_default_grid_moves_the_volatile_together_then_each_alone() -> None:
    grid = default_grid(["x", "y", "usd"], ["usd"], (0.1, 0.2))
    assert len(grid) == 2 + 3 * 2
    assert grid[0].moves == {"x": 0.9, "y": 0.9}
    assert grid[-1].moves == {"usd": 0.8}


def test_liquidation_figures_by_hand() -> None:
    book = _book()
    liq = liquidations(book, np.array([1600e8, 1e8]))  # −20%: HF 0.914, full close factor
    assert liq.liquidatable[0]
    assert liq.covered[0] == pytest.approx(1400e8)
    assert liq.seized[0] == pytest.approx(1470e8)
    assert liq.bad_debt[0] == 0
    liq = liquidations(book, np.array([1200e8, 1e8]))  # −40%: the collateral runs out
    assert liq.seized[0] == pytest.approx(1200e8)
    assert liq.covered[0] == pytest.approx(1200e8 / 1.05)
    assert liq.bad_debt[0] == pytest.approx(200e8)
    liq = liquidations(book, np.array([1700e8, 1e8]))  # HF 0.971: half the debt
    assert liq.covered[0] == pytest.approx(700e8)


def test_evaluate_grid_counts_and_sums() -> None:
    book = _book(3)
    out = evaluate_grid(book, [Shock("-10%", {X: 0.9}), Shock("-40%", {X: 0.6})])
    assert out[0].liquidatable == 0 and out[0].bad_debt == 0
    assert out[1].liquidatable == 3
    assert out[1].liquidatable_debt == pytest.approx(3 * 1400e8)
    assert out[1].bad_debt == pytest.approx(3 * 200e8)
    assert out[1].prices[X] == 1200 * 10**8


def _pools(depth_x: float) -> dict[tuple[str, str], tuple[int, int]]:
    return {(X, USD): (int(depth_x * 1e18), int(depth_x * 2000 * 1e6))}


def test_profit_falls_with_slippage_and_gas() -> None:
    book = _book(2)
    prices = {X: 1600 * 10**8, USD: 10**8}
    liq = liquidations(book, book.price_vector(prices))
    decimals = {X: 18, USD: 6}
    deep = UniswapV2Quoter(repriced_pairs(_pools(10_000), prices, decimals))
    thin = UniswapV2Quoter(repriced_pairs(_pools(5), prices, decimals))
    a = liquidators_profit(book, liq, prices, deep, gas_cost_base=0.0)
    b = liquidators_profit(book, liq, prices, thin, gas_cost_base=0.0)
    c = liquidators_profit(book, liq, prices, deep, gas_cost_base=10e8)
    d = liquidators_profit(book, liq, prices, deep, gas_cost_base=100e8)
    assert a.profitable == 2 and a.profit == pytest.approx(2 * (1470 * 0.997 - 1400) * 1e8, rel=2e-3)
    assert b.profit < a.profit
    assert c.profit == pytest.approx(a.profit - 2 * 10e8)
    assert d.profit == 0 and d.unprofitable == 2  # $65 a liquidation does not pay $100 of gas


def test_cascade_amplifies_with_thin_pools_and_not_without_pass_through() -> None:
    book = _book(20)
    book.debt[:, 1] = np.linspace(1250, 1590, 20)  # a ladder of health factors
    start = {X: 2000 * 10**8, USD: 10**8}
    shocked = shocked_prices(start, Shock("-20%", {X: 0.8}))
    pools = repriced_pairs(_pools(40), shocked, {X: 18, USD: 6})
    out = run_cascade(book, start, shocked, pools, CascadeConfig(USD, 1.0))
    assert len(out.rounds) >= 2
    assert out.amplification[X] > 1.0
    assert out.bad_debt >= out.bad_debt_initial
    still = run_cascade(book, start, shocked, pools, CascadeConfig(USD, 0.0))
    assert still.final_prices == shocked and still.amplification[X] == pytest.approx(1.0)


def test_parameter_sweep_finds_the_smallest_profitable_bonus() -> None:
    book = _book(5)
    book.debt[:, 1] = 1550.0
    prices = shocked_prices({X: 2000 * 10**8, USD: 10**8}, Shock("s", {X: 0.9}))
    quoter = UniswapV2Quoter(repriced_pairs(_pools(50), prices, {X: 18, USD: 6}))
    sweep = sweep_parameters(book, X, Shock("s", {X: 0.9}), quoter, thresholds=[8000],
                             bonuses=list(range(10_000, 10_801, 100)), gas_cost_base=5e8)
    floor = sweep.min_bonus[8000]
    assert floor is not None and 10_000 < floor <= 10_800
    by_bonus = {p.bonus_bps: p for p in sweep.points if p.close_factor == 0.5}
    assert by_bonus[10_800].profit > by_bonus[10_100].profit
    assert len(sweep.points) == 9 * 2


def test_synthetic_book_spreads_health_factors_over_one() -> None:
    book = synthetic_book(np.random.default_rng(0), 10_000, ["a", "b", "c"], [2000e8, 1e8, 40000e8])
    hf = book.health_factors(book.prices)
    assert hf.min() > 1.0 and np.median(hf) < 2.0
    assert evaluate_shock(book, Shock("-30%", {"a": 0.7, "c": 0.7})).liquidatable > 100
