"""Parameter what-ifs for one reserve: liquidation threshold, bonus and close factor against the
bad debt they leave and what liquidators earn, and the smallest bonus that keeps liquidating
worth it after gas and slippage in a stressed market. Pure.

Every point re-evaluates the book under the same stress shock with the reserve's threshold and
bonus replaced (for the accounts holding it as collateral) and one close factor for everyone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from keeper.domain.quote import Quoter
from keeper.domain.risk_book import RiskBook
from keeper.domain.risk_profit import liquidators_profit
from keeper.domain.risk_shock import PriceLink, Shock, liquidations, shocked_prices

PROFITABLE_SHARE = 0.9
"""A bonus "keeps liquidating profitable" when at least this share of the debt a liquidator may
cover is covered at a profit."""


@dataclass(frozen=True, slots=True)
class ParamPoint:
    """One (threshold, bonus, close factor) point under the stress (base units)."""

    threshold_bps: int
    bonus_bps: int
    close_factor: float
    liquidatable: int
    bad_debt: float
    """Left after one liquidation of every liquidatable account."""
    covered_debt: float
    profit: float
    profitable_share: float


@dataclass(frozen=True, slots=True)
class ParamSweep:
    """The grid, and per threshold the smallest bonus meeting ``PROFITABLE_SHARE`` (None
    where no bonus of the grid does)."""

    asset: str
    stress: Shock
    points: tuple[ParamPoint, ...]
    min_bonus: Mapping[int, int | None]


def sweep_parameters(book: RiskBook, asset: str, stress: Shock, quoter: Quoter, *,
                     thresholds: Sequence[int], bonuses: Sequence[int],
                     close_factors: Sequence[float] = (0.5, 1.0),
                     links: Iterable[PriceLink] = (), gas_cost_base: float = 0.0,
                     limit: int = 500) -> ParamSweep:
    """Every combination of ``thresholds`` × ``bonuses`` × ``close_factors`` for ``asset``
    as collateral, under ``stress``, with the DEX as ``quoter`` quotes it, over the accounts
    that hold ``asset`` as collateral."""
    col = book.assets.index(asset)
    book = book.subset(np.flatnonzero(book.collateral[:, col] > 0))
    base = (dict(book.market.prices) if book.market is not None
            else {a: int(p) for a, p in zip(book.assets, book.prices, strict=True)})
    prices = shocked_prices(base, stress, links)
    p = book.price_vector(prices)
    holds = np.ones(len(book), dtype=bool)
    points: list[ParamPoint] = []
    for lt in thresholds:
        thr = book.thresholds.copy()
        thr[holds, col] = lt
        for bonus in bonuses:
            bon = book.bonuses.copy()
            bon[holds, col] = bonus
            variant = replace(book, thresholds=thr, bonuses=bon)
            for cf in close_factors:
                liq = liquidations(variant, p, close_factor=cf)
                take = liquidators_profit(variant, liq, prices, quoter,
                                          gas_cost_base=gas_cost_base, limit=limit)
                # Bad debt once each liquidatable account has been liquidated once: a larger
                # bonus takes more collateral for the same repayment.
                left = np.maximum(liq.debt - liq.covered - (liq.collateral - liq.seized), 0.0)
                share = take.profitable_debt / take.quoted_debt if take.quoted_debt else 1.0
                points.append(ParamPoint(lt, bonus, cf, int(liq.liquidatable.sum()),
                                         float(left.sum()),
                                         float(liq.covered.sum()), take.profit, share))
    return ParamSweep(asset, stress, tuple(points), _min_bonus(points, thresholds))


def _min_bonus(points: Sequence[ParamPoint], thresholds: Sequence[int]) -> dict[int, int | None]:
    out: dict[int, int | None] = {}
    for lt in thresholds:
        ok = [pt.bonus_bps for pt in points
              if pt.threshold_bps == lt and pt.profitable_share >= PROFITABLE_SHARE]
        out[lt] = min(ok) if ok else None
    return out
