"""Value at Risk and Expected Shortfall of bad debt and liquidation volume, by Monte Carlo. Pure.

Prices at the horizon are correlated log-normals (martingales: ``p·exp(−σ²h/2 + σ√h·Z)``), or
with fat tails a multivariate Student-t scaled to unit variance in place of the normal ``Z``.
Each path revalues the whole book (matrix products over chunks of paths) and records the bad
debt (``Σ max(debt − collateral, 0)``) and the debt liquidators may repay. The generator is
passed in (seeded by the caller): the same seed gives the same numbers.

Standard errors are the asymptotic ones: for the ``α``-quantile ``√(α(1−α)/n)/f(VaR)`` with the
density ``f`` from the empirical quantile's slope, and for the shortfall
``√((Var(L | L ≥ VaR) + α(ES − VaR)²)/(n(1−α)))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.domain.liquidation_amounts import MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
from keeper.domain.revision import AaveRevision
from keeper.domain.risk_book import FloatArray, RiskBook

SECONDS_PER_YEAR = 365 * 24 * 3600
LEVELS = (0.95, 0.99)
_FULL_CLOSE_HF = 0.95


@dataclass(frozen=True, slots=True)
class MarketModel:
    """Annualised volatilities of the moving assets (the others stay put) and their
    correlation; ``df`` > 2 for Student-t tails, None for normal ones."""

    assets: tuple[str, ...]
    vols: tuple[float, ...]
    corr: tuple[tuple[float, ...], ...]
    df: float | None = None
    follows: tuple[tuple[str, str, float], ...] = ()
    """``(asset, base, ratio)``: assets priced off another's feed move with it."""


@dataclass(frozen=True, slots=True)
class TailFigure:
    """VaR and ES at one level, with their Monte Carlo standard errors."""

    level: float
    var: float
    var_se: float
    es: float
    es_se: float


@dataclass(frozen=True, slots=True)
class VarOutcome:
    """The distributions (per path) and their tail figures at ``LEVELS``."""

    paths: int
    horizon_days: float
    bad_debt: FloatArray
    volume: FloatArray
    bad_debt_tail: tuple[TailFigure, ...]
    volume_tail: tuple[TailFigure, ...]


def simulate_prices(model: MarketModel, prices: Sequence[float] | FloatArray, horizon_days: float,
                    paths: int, rng: np.random.Generator) -> FloatArray:
    """(paths, assets) horizon prices of ``model.assets`` from ``prices`` now."""
    h = horizon_days / 365.0
    vols = np.asarray(model.vols, dtype=np.float64)
    chol = _cholesky(np.asarray(model.corr, dtype=np.float64))
    z = rng.standard_normal((paths, len(vols))) @ chol.T
    if model.df is not None:
        w = rng.chisquare(model.df, (paths, 1)) / model.df
        z = z / np.sqrt(w) * np.sqrt((model.df - 2.0) / model.df)
    sd = vols * np.sqrt(h)
    out: FloatArray = np.asarray(prices, dtype=np.float64) * np.exp(-0.5 * sd**2 + sd * z)
    return out


def _cholesky(corr: FloatArray) -> FloatArray:
    # An estimated correlation from short series may not be positive definite: clip its
    # eigenvalues, renormalise the diagonal, and factor that.
    try:
        chol: FloatArray = np.asarray(np.linalg.cholesky(corr), dtype=np.float64)
        return chol
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(corr)
        fixed = v @ np.diag(np.maximum(w, 1e-8)) @ v.T
        d = np.sqrt(np.diag(fixed))
        out: FloatArray = np.linalg.cholesky(fixed / np.outer(d, d))
        return out


def monte_carlo(book: RiskBook, model: MarketModel, *, horizon_days: float, paths: int,
                rng: np.random.Generator, chunk: int | None = None) -> VarOutcome:
    """Bad debt and liquidation volume (base units) over ``paths`` horizon scenarios."""
    cols = [book.assets.index(a) for a in model.assets]
    follows = [(book.assets.index(a), book.assets.index(b), r) for a, b, r in model.follows
               if a in book.assets and b in book.assets]
    simulated = simulate_prices(model, book.prices[cols], horizon_days, paths, rng)
    bad = np.empty(paths)
    volume = np.empty(paths)
    # Paths per matrix product: about 4M (path, account) cells, i.e. ~32 MB per figure.
    chunk = chunk or max(1, min(1024, 4_000_000 // max(len(book), 1)))
    small = float(MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
    for lo in range(0, paths, chunk):
        hi = min(lo + chunk, paths)
        p = np.repeat(book.prices[None, :], hi - lo, axis=0)  # (k, assets)
        p[:, cols] = simulated[lo:hi]
        for col, base, ratio in follows:
            p[:, col] = p[:, base] * ratio
        collateral, weighted, debt = book.values(p)  # (k, accounts) each
        # Bad debt in place (no temporaries of (paths × accounts) beyond this one).
        gap = np.subtract(debt, collateral)
        np.maximum(gap, 0.0, out=gap)
        bad[lo:hi] = gap.sum(axis=1)
        # Only the accounts under HF 1 (weighted < debt: no division) are liquidated.
        k_idx, n_idx = np.nonzero(weighted < debt)
        d, c, w = debt[k_idx, n_idx], collateral[k_idx, n_idx], weighted[k_idx, n_idx]
        full = w <= _FULL_CLOSE_HF * d
        if book.revision >= AaveRevision.V3_3:
            full |= (c < small) | (d < small)
        repay = np.minimum(np.where(full, d, 0.5 * d), c)
        volume[lo:hi] = np.bincount(k_idx, weights=repay, minlength=hi - lo)
    return VarOutcome(paths, horizon_days, bad, volume,
                      tuple(tail(bad, lv) for lv in LEVELS),
                      tuple(tail(volume, lv) for lv in LEVELS))


def tail(losses: FloatArray, level: float) -> TailFigure:
    """VaR (the ``level`` quantile) and ES (mean beyond it) of ``losses``, with standard
    errors."""
    n = losses.size
    ordered = np.sort(losses)
    var = float(np.quantile(ordered, level))
    beyond = ordered[ordered >= var]
    es = float(beyond.mean()) if beyond.size else var
    # Density at the quantile from the slope of the empirical quantile function.
    h = min(0.5 * (1 - level), max(n ** -0.5, 1e-3))
    spread = float(np.quantile(ordered, min(level + h, 1.0)) - np.quantile(ordered, level - h))
    var_se = (np.sqrt(level * (1 - level) / n) * spread / (2 * h)) if spread > 0 else 0.0
    tail_var = float(beyond.var()) if beyond.size > 1 else 0.0
    es_se = float(np.sqrt((tail_var + level * (es - var) ** 2) / (n * (1 - level))))
    return TailFigure(level, var, float(var_se), es, es_se)


def estimate_model(history: Mapping[str, Sequence[tuple[int, int]]], *, step_seconds: int = 3600,
                   df: float | None = None, floor_vol: float = 0.0) -> MarketModel:
    """Volatility and correlation from oracle updates ``(timestamp, price)`` per asset.

    The series are sampled on a common grid (the last answer at each step, as the oracle holds
    it between updates) over the span they share; log returns give the annualised volatility
    and the correlation. An asset with fewer than three points is left out.
    """
    usable = {a: sorted(s) for a, s in history.items() if len(s) >= 3}
    if not usable:
        return MarketModel((), (), (), df)
    start = max(s[0][0] for s in usable.values())
    end = min(s[-1][0] for s in usable.values())
    grid = np.arange(start, end + 1, step_seconds, dtype=np.int64)
    if grid.size < 3:
        grid = np.linspace(start, end, 3).astype(np.int64)
    returns = []
    for series in usable.values():
        times = np.array([t for t, _ in series], dtype=np.int64)
        values = np.array([v for _, v in series], dtype=np.float64)
        at = values[np.clip(np.searchsorted(times, grid, side="right") - 1, 0, None)]
        returns.append(np.diff(np.log(np.maximum(at, 1e-300))))
    r: npt.NDArray[np.float64] = np.vstack(returns)
    dt = float(np.mean(np.diff(grid)))
    vols = np.maximum(r.std(axis=1, ddof=1) * np.sqrt(SECONDS_PER_YEAR / dt), floor_vol)
    corr = np.corrcoef(r) if len(usable) > 1 else np.ones((1, 1))
    corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return MarketModel(tuple(usable), tuple(float(v) for v in vols),
                       tuple(tuple(float(x) for x in row) for row in corr), df)
