"""The prefilter's columns: one per reserve, plus one per eMode category with a live price source.

An eMode user's amounts of a category's assets sit in the category's column, because
GenericLogic prices them all with the source's price. ``Layout.fingerprint`` is what a change of
the market invalidates: a new reserve, eMode category or live price source needs new columns
(a rebuild); anything else only re-sets rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keeper.domain.account import Market, ReserveState

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Terms:
    """What row building needs of one reserve at one timestamp."""

    reserve: ReserveState
    column: int
    unit: float
    income: int
    debt_index: int


RiskFields = tuple[int, int, int]
"""(liquidation threshold, decimals, eMode category) of a reserve: a change re-sets its holders."""


def risk_fields(reserve: ReserveState) -> RiskFields:
    cfg = reserve.configuration
    return cfg.liquidation_threshold, cfg.decimals, cfg.emode_category


@dataclass(slots=True)
class Layout:
    """Columns of the prefilter and what a change of the market invalidates."""

    reserve_column: dict[int, int]
    source_column: dict[int, int]  # eMode category id -> column of its price source
    source_of: dict[int, str]
    fingerprint: tuple[object, ...]  # reserves, eMode categories and live price sources

    @property
    def width(self) -> int:
        return len(self.reserve_column) + len(self.source_column)

    @staticmethod
    def empty() -> Layout:
        return Layout({}, {}, {}, ())

    @staticmethod
    def of(market: Market) -> Layout:
        ids = sorted(market.reserves)
        reserve_column = {rid: j for j, rid in enumerate(ids)}
        live = sorted(
            cid
            for cid, cat in market.emode_categories.items()
            if cat.has_price_source and market.prices.get(cat.price_source, 0) != 0
        )
        source_column = {cid: len(ids) + k for k, cid in enumerate(live)}
        source_of = {cid: market.emode_categories[cid].price_source for cid in live}
        fingerprint = (
            tuple((rid, market.reserves[rid].asset) for rid in ids),
            tuple(sorted(market.emode_categories.items())),
            tuple(live),
        )
        return Layout(reserve_column, source_column, source_of, fingerprint)

    def prices(self, market: Market) -> FloatArray:
        """The price of every column, in base units, as floats."""
        out = np.zeros(self.width)
        for rid, j in self.reserve_column.items():
            out[j] = float(market.prices.get(market.reserves[rid].asset, 0))
        for cid, j in self.source_column.items():
            out[j] = float(market.prices.get(self.source_of[cid], 0))
        return out

    def terms(self, market: Market) -> dict[int, Terms]:
        """Every reserve's column, unit and indexes at the market's timestamp."""
        now = market.timestamp
        return {
            rid: Terms(
                reserve=r,
                column=self.reserve_column[rid],
                unit=float(10**r.configuration.decimals),
                income=r.normalized_income(now),
                debt_index=r.normalized_debt(now),
            )
            for rid, r in market.reserves.items()
        }
