"""VaR/ES by Monte Carlo against the closed form of a one-asset log-normal book."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from keeper.domain.risk_book import RiskBook
from keeper.domain.risk_var import MarketModel, estimate_model, monte_carlo

N = NormalDist()


def _one_asset_book(collateral_tokens: float, debt_usd: float, price: float) -> RiskBook:
    # Collateral X (moves), debt in a stable (does not): bad debt = max(D − C·P, 0).
    return RiskBook(
        users=("0x01",), assets=("x", "usd"), decimals=(18, 6),
        collateral=np.array([[collateral_tokens, 0.0]]), thresholds=np.array([[8000.0, 0.0]]),
        bonuses=np.array([[10500.0, 0.0]]), debt=np.array([[0.0, debt_usd]]),
        prices=np.array([price, 1e8]))


def _closed_form(c: float, p0: float, d: float, sigma: float, h: float,
                 level: float) -> tuple[float, float]:
    s = sigma * math.sqrt(h)
    mu = -0.5 * s * s
    z = N.inv_cdf(1 - level)
    q = p0 * math.exp(mu + s * z)  # the price quantile that gives the loss quantile
    var = max(d - c * q, 0.0)
    # E[P | P ≤ q] for a log-normal
    cond_mean = p0 * math.exp(mu + s * s / 2) * N.cdf(z - s) / (1 - level)
    es = d - c * cond_mean
    return var, es


@pytest.mark.parametrize("df", [None])
def test_var_es_match_the_closed_form_within_three_standard_errors(df: float | None) -> None:
    c, p0, sigma, days = 100.0, 2000e8, 0.8, 30.0
    d = 0.8 * c * p0
    book = _one_asset_book(c, d / 1e8, p0)
    model = MarketModel(("x",), (sigma,), ((1.0,),), df)
    out = monte_carlo(book, model, horizon_days=days, paths=40_000,
                      rng=np.random.default_rng(7))
    for fig in out.bad_debt_tail:
        var, es = _closed_form(c, p0, d, sigma, days / 365, fig.level)
        assert abs(fig.var - var) <= 3 * fig.var_se, (fig, var)
        assert abs(fig.es - es) <= 3 * fig.es_se, (fig, es)
        assert fig.var_se > 0 and fig.es_se > 0


def test_monte_carlo_is_reproducible_with_a_seed() -> None:
    book = _one_asset_book(100.0, 150_000.0, 2000e8)
    model = MarketModel(("x",), (0.8,), ((1.0,),), df=4.0)
    a = monte_carlo(book, model, horizon_days=7, paths=2000, rng=np.random.default_rng(1))
    b = monte_carlo(book, model, horizon_days=7, paths=2000, rng=np.random.default_rng(1))
    assert np.array_equal(a.bad_debt, b.bad_debt)
    assert a.bad_debt_tail == b.bad_debt_tail


def test_model_estimated_from_oracle_updates() -> None:
    rng = np.random.default_rng(3)
    hours = 24 * 60
    z = rng.standard_normal((hours, 2)) @ np.linalg.cholesky([[1.0, 0.6], [0.6, 1.0]]).T
    step_sd = 0.8 / math.sqrt(365 * 24)
    paths = 1e11 * np.exp(np.cumsum(step_sd * z, axis=0))
    history = {a: [(3600 * t, int(paths[t, k])) for t in range(hours)]
               for k, a in enumerate(("eth", "btc"))}
    model = estimate_model(history)
    assert model.assets == ("eth", "btc")
    assert model.vols == pytest.approx((0.8, 0.8), rel=0.1)
    assert model.corr[0][1] == pytest.approx(0.6, abs=0.08)
