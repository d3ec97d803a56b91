"""Static price shocks: who a price move makes liquidatable, what can be covered and seized, and
the bad debt left. Pure.

A ``Shock`` moves some oracle prices to a fraction of their value; ``shocked_prices`` applies it
in integers (``floor(price × fraction)``, the fraction read as its shortest decimal), and
assets priced off another asset's feed (a rate adapter: wstETH off ETH/USD) follow their base
through a ``PriceLink``. ``evaluate_shock`` ranks every account with float health factors, then
settles the accounts near the line, or all candidates when ``detail`` is asked, with the exact
integer math of ``keeper.domain.account`` against the shocked market: the liquidatable set, the
debt and the health factors are then the chain's to the wei.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from keeper.domain.account import AccountData
from keeper.domain.liquidation_amounts import MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
from keeper.domain.revision import AaveRevision
from keeper.domain.risk_book import (
    FloatArray,
    RiskBook,
    exact_account_data,
    health_factor,
    shocked_market,
)
from keeper.domain.wadray import WAD

DEFAULT_LEVELS = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50, 0.60)
"""Default price drops of the grid (−5% … −60%)."""

MARGIN = 2e-3
"""Float health factors within this of 1 are settled by the exact math."""

_FULL_CLOSE_HF = 0.95


@dataclass(frozen=True, slots=True)
class Shock:
    """Prices of ``moves``' assets set to that fraction of their value (0.8 = −20%)."""

    name: str
    moves: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class PriceLink:
    """``asset`` is priced as ``base``'s price × ``rate_wad`` / 1e18 (a rate adapter)."""

    asset: str
    base: str
    rate_wad: int


def shocked_prices(prices: Mapping[str, int], shock: Shock,
                   links: Iterable[PriceLink] = ()) -> dict[str, int]:
    """The oracle prices after ``shock``: moved assets floored, linked assets following."""
    out = dict(prices)
    for asset, fraction in shock.moves.items():
        if asset in out:
            # The fraction as written (0.6 is 3/5, not the binary float below it).
            out[asset] = int(out[asset] * Fraction(repr(float(fraction))))
    for link in links:
        if link.base in shock.moves and link.base in out:
            out[link.asset] = out[link.base] * link.rate_wad // WAD
    return out


def default_grid(assets: Sequence[str], stables: Iterable[str],
                 levels: Sequence[float] = DEFAULT_LEVELS,
                 labels: Mapping[str, str] | None = None) -> list[Shock]:
    """The non-stable assets together at each level, then each asset alone at each level."""
    names = labels or {}
    stable = set(stables)
    volatile = [a for a in assets if a not in stable]
    grid = [Shock(f"all volatile -{lv:.0%}", {a: 1 - lv for a in volatile}) for lv in levels]
    for a in assets:
        grid += [Shock(f"{names.get(a, a)} -{lv:.0%}", {a: 1 - lv}) for lv in levels]
    return grid


@dataclass(frozen=True, slots=True)
class Liquidations:
    """Per-account float figures at one price vector (base units)."""

    health_factor: FloatArray
    collateral: FloatArray
    debt: FloatArray
    liquidatable: npt.NDArray[np.bool_]
    covered: FloatArray
    """Debt a liquidator may repay under the close factor (0 where not liquidatable)."""
    seized: FloatArray
    """Collateral (bonus included) that repayment takes."""
    bad_debt: FloatArray
    """Debt not backed by collateral: ``max(debt − collateral, 0)``."""


Values = tuple[FloatArray, FloatArray, FloatArray]


def liquidations(book: RiskBook, prices: FloatArray, close_factor: float | None = None,
                 values: Values | None = None) -> Liquidations:
    """Float liquidation figures of every account at ``prices`` (``close_factor``: one share
    for every account instead of the protocol's rule; ``values``: ``book.values(prices)``
    when the caller has it)."""
    collateral, weighted, debt = book.values(prices) if values is None else values
    hf = health_factor(weighted, debt)
    liquidatable = hf < 1.0
    # Only the liquidatable accounts need the rest (a few of a million in most shocks).
    rows = np.flatnonzero(liquidatable)
    c, d = collateral[rows], debt[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        bonus = np.where(c > 0, (prices @ book.bonus_t[:, rows]) / np.where(c > 0, c, 1.0), 1.0)
    cf = (close_factors(hf[rows], c, d, book.revision) if close_factor is None
          else np.full(rows.size, close_factor))
    cov = cf * d
    seize = cov * bonus
    capped = seize > c
    seize = np.where(capped, c, seize)
    cov = np.where(capped, c / np.maximum(bonus, 1.0), cov)
    covered, seized = np.zeros_like(debt), np.zeros_like(debt)
    covered[rows], seized[rows] = cov, seize
    return Liquidations(hf, collateral, debt, liquidatable, covered, seized,
                        np.maximum(debt - collateral, 0.0))


def close_factors(hf: FloatArray, collateral: FloatArray, debt: FloatArray,
                  revision: AaveRevision) -> FloatArray:
    """The share of the debt one liquidation may repay: 50%, or all of it below HF 0.95 (and,
    3.3+, for positions under $2,000 of collateral or debt)."""
    full = hf <= _FULL_CLOSE_HF
    if revision >= AaveRevision.V3_3:
        small = float(MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
        full = full | (collateral < small) | (debt < small)
    return np.where(full, 1.0, 0.5)


@dataclass(frozen=True, slots=True)
class ShockOutcome:
    """One shock's answer. Amounts in base units (floats: aggregates); ``exact`` holds, per
    liquidatable account, Pool.getUserAccountData as the shocked chain would answer it."""

    shock: Shock
    prices: Mapping[str, int]
    liquidatable: int
    liquidatable_debt: float
    covered_debt: float
    collateral_seized: float
    bad_debt: float
    exact: Mapping[str, AccountData] = field(default_factory=dict)
    settled_exactly: int = 0
    profit: float | None = None

    @property
    def exact_debt(self) -> int:
        """Total debt of the liquidatable accounts, to the wei (with ``detail``)."""
        return sum(d.total_debt_base for d in self.exact.values())


def evaluate_shock(book: RiskBook, shock: Shock, *, links: Iterable[PriceLink] = (),
                   timestamp: int | None = None, detail: bool = False,
                   margin: float = MARGIN) -> ShockOutcome:
    """Apply ``shock`` to ``book`` (at ``timestamp``, default the book's own).

    Accounts whose float HF lies within ``margin`` of 1 are settled by the exact math (when the
    book holds exact data); with ``detail`` every account under ``1 + margin`` is, and
    ``exact`` lists those under 1.
    """
    return evaluate_grid(book, [shock], links=links, timestamp=timestamp, detail=detail,
                         margin=margin)[0]


def evaluate_grid(book: RiskBook, shocks: Sequence[Shock], *, links: Iterable[PriceLink] = (),
                  timestamp: int | None = None, detail: bool = False,
                  margin: float = MARGIN, batch: int = 8) -> list[ShockOutcome]:
    """``evaluate_shock`` for each shock of the grid, in order; ``batch`` shocks share one
    pass over the book (a matrix product reads the positions once for all of them)."""
    base = {a: int(p) for a, p in zip(book.assets, book.prices, strict=True)}
    if book.market is not None:
        base = dict(book.market.prices)
    links = tuple(links)
    out: list[ShockOutcome] = []
    for lo in range(0, len(shocks), batch):
        part = shocks[lo:lo + batch]
        prices = [shocked_prices(base, s, links) for s in part]
        matrix = np.vstack([book.price_vector(p) for p in prices])
        collateral, weighted, debt = book.values(matrix)
        for k, shock in enumerate(part):
            liq = liquidations(book, matrix[k], values=(collateral[k], weighted[k], debt[k]))
            out.append(_outcome(book, shock, prices[k], liq, timestamp, detail, margin))
    return out


def _outcome(book: RiskBook, shock: Shock, prices: dict[str, int], liq: Liquidations,
             timestamp: int | None, detail: bool, margin: float) -> ShockOutcome:
    hf = liq.health_factor
    liquidatable = liq.liquidatable
    exact: dict[str, AccountData] = {}
    settled = 0
    if book.market is not None:
        liquidatable = liquidatable.copy()
        near = (hf < 1.0 + margin) if detail else (np.abs(hf - 1.0) <= margin)
        rows = np.flatnonzero(near)
        market = shocked_market(book.market, prices, timestamp)
        found = exact_account_data(book, (book.users[i] for i in rows), market)
        settled = len(found)
        for i in rows:
            data = found.get(book.users[i])
            if data is None:
                continue
            liquidatable[i] = data.health_factor < WAD
            if liquidatable[i]:
                exact[book.users[i]] = data
    rows = np.flatnonzero(liquidatable)
    return ShockOutcome(
        shock=shock, prices=prices, liquidatable=int(rows.size),
        liquidatable_debt=float(liq.debt[rows].sum()),
        covered_debt=float(liq.covered[rows].sum()),
        collateral_seized=float(liq.seized[rows].sum()),
        bad_debt=float(liq.bad_debt.sum()), exact=exact, settled_exactly=settled)
