"""The float health-factor prefilter: worked example, agreement with exact math, speed."""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.domain.account import a_token_balance, calculate_user_account_data, user_debt
from keeper.domain.liq_price import DEFAULT_MARGIN, HealthFactorPrefilter, LiquidationPriceIndex
from tests.unit.test_account import PRICES, RESERVES, USDC, WBTC, WETH, account, market, usd

ASSETS = [WETH, WBTC, USDC]  # column order of the matrices below
THRESHOLDS = np.array([8250.0, 7500.0, 8000.0])


def test_worked_example() -> None:
    prices = np.array([2000.0, 40000.0, 1.0])
    collateral = np.array(
        [
            [10.0, 0.0, 0.0],  # A: 10 WETH
            [10.0, 0.0, 10_000.0],  # B: 10 WETH + 10,000 USDC
            [1.0, 0.0, 0.0],  # C: no debt
            [0.0, 0.0, 0.0],  # D: debt, no collateral
        ]
    )
    debt = np.array([[0.0, 0.0, 15_000.0], [0.0, 0.0, 20_000.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pf = HealthFactorPrefilter(collateral, THRESHOLDS, debt, prices)
    hf = pf.health_factors
    # A: 20000 * 0.8250 / 15000 = 1.1
    assert hf[0] == 1.1
    # B: avg threshold = floor((20000*8250 + 10000*8000) / 30000) = floor(8166.67) = 8166,
    #    HF = 8166 * 30000 / 1e4 / 20000 = 1.2249
    assert abs(hf[1] - 1.2249) < 1e-15
    assert hf[2] == np.inf
    assert hf[3] == 0.0
    assert list(pf.candidates()) == [3]
    # WETH to $1800: only the WETH holders move. A: 18000 * 0.825 / 15000 = 0.99.
    moved = pf.set_price(0, 1800.0)
    assert list(moved) == [0, 1, 2]
    assert abs(pf.health_factors[0] - 0.99) < 1e-15
    assert list(pf.candidates()) == [3, 0]
    # The liquidation price of WETH for A: 15000 / (10 * 0.825) = 1818.18..
    index = pf.liquidation_prices(0)
    assert list(index.liquidatable_at(1818.0)) == [0]
    assert list(index.liquidatable_at(1819.0)) == []


def prefilter_row(
    collateral: dict[str, int], debt: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """One account's whole-token rows, from the exact balances the contracts would report."""
    user = account(collateral, debt)
    m = market()
    c = np.zeros(len(ASSETS))
    d = np.zeros(len(ASSETS))
    for j, asset in enumerate(ASSETS):
        reserve = next(r for r in RESERVES.values() if r.asset == asset)
        unit = 10**reserve.configuration.decimals
        c[j] = a_token_balance(reserve, user.position(asset), m.timestamp) / unit
        d[j] = user_debt(reserve, user.position(asset), m.timestamp).total / unit
    return c, d


whole_tokens = st.integers(min_value=1_000, max_value=10**7)


@st.composite
def positions(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    decimals = {WETH: 18, WBTC: 8, USDC: 6}
    coll_assets = draw(st.sets(st.sampled_from(ASSETS), min_size=1))
    debt_assets = draw(st.sets(st.sampled_from(ASSETS), min_size=1))
    # Amounts of at least 1000 tokens of anything priced >= $1: per-asset base values of at
    # least 1e11 units, so the contract's per-asset floor is below 1e-11 relative.
    collateral = {a: draw(whole_tokens) * 10 ** decimals[a] for a in coll_assets}
    debt = {a: draw(whole_tokens) * 10 ** decimals[a] // 7 for a in debt_assets}
    prices = {
        WETH: draw(st.integers(min_value=usd(100), max_value=usd(10_000))),
        WBTC: draw(st.integers(min_value=usd(1_000), max_value=usd(100_000))),
        USDC: draw(st.integers(min_value=usd(0.9), max_value=usd(1.1))),
    }
    return collateral, debt, prices


@settings(max_examples=200)
@given(positions())
def test_float_health_factor_agrees_with_exact(
    case: tuple[dict[str, int], dict[str, int], dict[str, int]],
) -> None:
    collateral, debt, prices = case
    exact = calculate_user_account_data(account(collateral, debt), market(prices))
    c, d = prefilter_row(collateral, debt)
    p = np.array([float(prices[a]) for a in ASSETS])
    hf = HealthFactorPrefilter(c[None, :], THRESHOLDS, d[None, :], p).health_factors[0]
    exact_hf = exact.health_factor / 1e18

    # The one case the float cannot follow: the exact average threshold ratio lies within the
    # floor tolerance *below* an integer (the float floors it up). Found from the exact sums.
    weighted = sum(
        collateral[a] * prices[a] // 10**dec * int(t)
        for a, dec, t in zip(ASSETS, (18, 8, 6), THRESHOLDS, strict=True)
        if a in collateral
    )
    ratio = Fraction(weighted, exact.total_collateral_base)
    near_integer_below = 0 < (1 - (ratio - int(ratio))) < 1e-7
    if not near_integer_below:
        assert abs(hf - exact_hf) <= 1e-9 * exact_hf
    # Either way the prefilter never misses a liquidatable account with the default margin.
    if exact.health_factor < 10**18:
        assert hf < 1 + DEFAULT_MARGIN


def random_book(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    collateral = np.where(rng.random((n, m)) < 0.3, rng.random((n, m)) * 10, 0.0)
    debt = np.where(rng.random((n, m)) < 0.2, rng.random((n, m)) * 5, 0.0)
    prices = rng.uniform(1, 1000, m)
    return collateral, debt, prices


def test_incremental_update_equals_full_recompute() -> None:
    collateral, debt, prices = random_book(20_000, 6, seed=7)
    thresholds = np.array([8250.0, 7500.0, 8000.0, 8000.0, 7900.0, 6500.0])
    pf = HealthFactorPrefilter(collateral, thresholds, debt, prices)
    before = pf.health_factors.copy()
    new_prices = prices.copy()
    new_prices[2] *= 0.9
    moved = pf.set_price(2, new_prices[2])
    untouched = np.setdiff1d(np.arange(20_000), moved)
    assert np.array_equal(pf.health_factors[untouched], before[untouched])
    for k in range(50):  # many ticks on several assets
        j = k % 6
        new_prices[j] *= 1.001 if k % 2 else 0.999
        pf.set_price(j, new_prices[j])
    fresh = HealthFactorPrefilter(collateral, thresholds, debt, new_prices)
    finite = np.isfinite(fresh.health_factors)
    assert np.array_equal(finite, np.isfinite(pf.health_factors))
    assert np.allclose(pf.health_factors[finite], fresh.health_factors[finite], rtol=1e-12)


def test_set_account() -> None:
    collateral, debt, prices = random_book(100, 3, seed=3)
    pf = HealthFactorPrefilter(collateral, THRESHOLDS, debt, prices)
    pf.set_account(5, np.array([10.0, 0.0, 0.0]), THRESHOLDS, np.array([0.0, 0.0, 15_000.0]))
    prices2 = np.array([2000.0, 40000.0, 1.0])
    for j, price in enumerate(prices2):
        pf.set_price(j, price)
    assert abs(pf.health_factors[5] - 1.1) < 1e-12
    assert 5 in pf.holders(0) and 5 not in pf.holders(1)


def test_liquidation_price_index_matches_brute_force() -> None:
    # With one threshold for every asset the floored average is exactly that threshold, so the
    # linear crossing model and the prefilter agree (away from HF == 1 itself).
    collateral, debt, prices = random_book(5_000, 4, seed=11)
    thresholds = np.full(4, 8000.0)
    pf = HealthFactorPrefilter(collateral, thresholds, debt, prices)
    index: LiquidationPriceIndex = pf.liquidation_prices(1)
    holders = set(pf.holders(1).tolist())
    for factor in (0.5, 0.8, 1.0, 1.3, 2.0):
        price = prices[1] * factor
        moved = prices.copy()
        moved[1] = price
        hf = HealthFactorPrefilter(collateral, thresholds, debt, moved).health_factors
        expected = {int(i) for i in np.flatnonzero(hf < 1.0) if i in holders}
        got = {int(i) for i in index.liquidatable_at(price)}
        borderline = {int(i) for i in np.flatnonzero(np.abs(hf - 1.0) < 1e-9)}
        assert expected - borderline == got - borderline


def best_of(runs: int, fn: Callable[[int], object]) -> float:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return min(times)


def test_one_million_accounts_six_assets_tick_equals_a_full_evaluation() -> None:
    # The speed targets (full <= 50 ms, one asset's holders <= 10 ms) are measured by
    # `make bench` (bench_scanner); here, at that size, a one-asset update must give what a
    # full evaluation at the new prices gives (to float rounding: it is the float prefilter).
    collateral, debt, prices = random_book(1_000_000, 6, seed=1)
    thresholds = np.array([8250.0, 7500.0, 8000.0, 8000.0, 7900.0, 6500.0])
    pf = HealthFactorPrefilter(collateral, thresholds, debt, prices)
    full = best_of(2, lambda _: pf.recompute())
    pf.holders(0)  # built once per book, not per tick
    tick = best_of(3, lambda i: pf.set_price(0, prices[0] * (1 + 1e-3 * (i + 1))))
    print(f"1M accounts: full {full * 1e3:.1f} ms, one-asset update {tick * 1e3:.1f} ms")
    moved = prices.copy()
    moved[0] = prices[0] * (1 + 3e-3)
    fresh = HealthFactorPrefilter(collateral, thresholds, debt, moved).health_factors
    np.testing.assert_allclose(pf.health_factors, fresh, rtol=1e-12)


def test_prices_view_is_read_only() -> None:
    pf = HealthFactorPrefilter(np.ones((1, 3)), THRESHOLDS, np.ones((1, 3)), np.ones(3))
    assert not pf.prices.flags.writeable
    assert not pf.health_factors.flags.writeable
    assert PRICES[WETH] == usd(2000)  # the shared fixture is untouched by these tests
