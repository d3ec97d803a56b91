"""The float prefilter index: every account's health factor as float64, kept in step with a book.

Rows are set from the book (``keeper.pipeline.scan.rows``) into a ``HealthFactorPrefilter``, one
column per price (``keeper.pipeline.scan.layout``). It is kept incrementally: a price move
re-evaluates only that column's holders; an account touched by an event gets its row re-set.
Interest accrued since a row was set only lowers a health factor through debt, so the selection
band is widened by the largest debt growth since then, and the holders of a reserve are re-set
once its debt index has grown by ``refresh_drift``.

What the floats cannot vouch for is selected every time: accounts with debt whose collateral
may be worth less than ``DUST_COLLATERAL_BASE`` (the contract's per-asset rounding is then no
longer negligible against the margin), and accounts the market snapshot lacks data for. "May
be": each row keeps its collateral value at the reference prices of the build, and the current
value is at least that times the largest fall of any price since; so a crash widens this set
instead of hiding an account.

``PrefilterIndex.build`` is the one large step (seconds at a million accounts); it reads only
the book it is given, so it can run in a worker thread on a snapshot of the book.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from keeper.domain.account import Market
from keeper.domain.interest import SECONDS_PER_YEAR
from keeper.domain.liq_price import HealthFactorPrefilter, IndexArray
from keeper.domain.wadray import RAY
from keeper.pipeline.scan.book_view import BookView
from keeper.pipeline.scan.layout import BoolArray, FloatArray, Layout, RiskFields, risk_fields
from keeper.pipeline.scan.rows import RowContext, RowNotes, build_rows, fill_row

DUST_COLLATERAL_BASE = 10**6
"""Below this collateral value (base units: $0.01 at 8 decimals) the float is not trusted: the
contract floors each asset's value to a base unit, up to (assets)/1e6 relative here, while the
margin allows 1e-3."""


@dataclass(frozen=True, slots=True)
class FloatFigures:
    """An account's float figures: health factor (1.0 at the line), collateral and debt in
    base units."""

    user: str
    health_factor: float
    collateral_base: float
    debt_base: float


SPARE_ROWS = 1024
"""Rows beyond the accounts at a build, for accounts that appear later (at least an eighth more)."""


class PrefilterIndex:
    """Rows of float health factors over a book's accounts, row i being ``users[i]``.

    The book is passed to every call rather than held: a build may read a snapshot in a worker
    thread while the index then follows the live book.
    """

    def __init__(self) -> None:
        self.users: list[str] = []
        self.row: dict[str, int] = {}
        self.notes = RowNotes()
        self.layout = Layout.empty()
        self.ref_prices: FloatArray = np.zeros(0)
        self.collateral_ref: FloatArray = np.zeros(0)  # per row, at ref_prices; inf: no debt
        self.drift_prices: FloatArray = np.zeros(0)  # per column: where its last drift began
        self.prefilter = HealthFactorPrefilter(
            np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0)), np.zeros(0))
        self._risk: dict[int, RiskFields] = {}
        self._debt_index_base: dict[int, int] = {}
        self._stable_base_time = 0

    @classmethod
    def build(cls, book: BookView, *, extra_rows: int = 0) -> PrefilterIndex:
        """Every row from ``book``, with room for ``extra_rows`` more than the usual spare."""
        index = cls()
        market = book.market()
        layout = Layout.of(market)
        users = list(book.users())
        capacity = len(users) + max(SPARE_ROWS, len(users) // 8) + extra_rows
        ctx = RowContext.of(market, layout, layout.prices(market))
        rows = build_rows(book, users, ctx, capacity)
        index.users, index.row = users, dict(zip(users, range(len(users)), strict=True))
        index.notes = rows.notes
        index.layout = layout
        index.ref_prices = ctx.ref_prices
        index.drift_prices = np.array(ctx.ref_prices, dtype=np.float64)  # a copy: moved apart
        index.collateral_ref = rows.collateral_ref
        # Transposed views of asset-major arrays: the prefilter keeps them without a copy.
        index.prefilter = HealthFactorPrefilter(
            rows.collateral.T, rows.thresholds.T, rows.debt.T, ctx.ref_prices)
        index._risk = {rid: risk_fields(r) for rid, r in market.reserves.items()}
        index._debt_index_base = {rid: t.debt_index for rid, t in ctx.terms.items()}
        index._stable_base_time = market.timestamp
        return index

    @property
    def size(self) -> int:
        return len(self.users)

    @property
    def capacity(self) -> int:
        return int(self.prefilter.health_factors.shape[0])

    def fits(self, users: Iterable[str]) -> bool:
        """Whether ``touch(users)`` has rows for the accounts new among them."""
        new = sum(u not in self.row for u in set(users))
        return len(self.users) + new <= self.capacity

    def layout_changed(self, market: Market) -> bool:
        """A new reserve, eMode category or live price source: the columns must be rebuilt."""
        return Layout.of(market).fingerprint != self.layout.fingerprint

    def touch(self, book: BookView, users: Sequence[str]) -> None:
        """Re-set the rows of ``users`` (distinct, and ``fits``); new accounts get a row."""
        market = book.market()
        ctx = RowContext(market, self.layout, self.layout.terms(market), self.ref_prices)
        width = self.layout.width
        c, t, d = out = (np.zeros(width), np.zeros(width), np.zeros(width))
        for user in users:
            row = self.row.get(user)
            if row is None:
                row = len(self.users)
                self.users.append(user)
                self.row[user] = row
            c.fill(0.0)
            t.fill(0.0)
            d.fill(0.0)
            self.notes.always.discard(user)
            self.notes.stable_users.discard(user)
            self.collateral_ref[row] = fill_row(book, user, ctx, out, self.notes)
            self.prefilter.set_account(row, *out)

    def update_prices(self, market: Market, *, drift: float = 0.0
                      ) -> tuple[IndexArray, IndexArray]:
        """Move the columns whose price changed; returns the rows re-evaluated (a row that
        holds two of the moved prices twice), and those of them whose price moved by more
        than ``drift`` (relative) since the last time it did (``drift_prices``)."""
        prices = self.layout.prices(market)
        moved: list[IndexArray] = []
        drifted: list[IndexArray] = []
        for j in np.flatnonzero(prices != self.prefilter.prices):
            price = float(prices[j])
            rows = self.prefilter.set_price(int(j), price)
            moved.append(rows)
            base = float(self.drift_prices[j])
            if not abs(price - base) <= drift * abs(base):  # a base of 0 or NaN: drifted
                drifted.append(rows)
                self.drift_prices[j] = price
        return _joined(moved), _joined(drifted)

    def among(self, users: Iterable[str], rows: IndexArray) -> set[str]:
        """Those of ``users`` whose row is one of ``rows``: a mask over the rows, so the cost
        goes with ``users``, not with the (possibly half the book) ``rows``."""
        if rows.size == 0:
            return set()
        hit = np.zeros(self.capacity, dtype=bool)
        hit[rows] = True
        row = self.row
        return {u for u in users if (r := row.get(u)) is not None and hit[r]}

    def stale(self, book: BookView, refresh_drift: float) -> set[str]:
        """Accounts whose rows the market made stale: holders of a reserve whose risk
        parameters changed or whose debt index grew by ``refresh_drift``, and every account
        with stable debt once the highest stable rate may have grown by as much. Their bases
        move to now: the caller re-sets them."""
        market = book.market()
        stale: set[str] = set()
        for rid, reserve in market.reserves.items():
            risk = risk_fields(reserve)
            if risk != self._risk.get(rid):
                self._risk[rid] = risk
                stale |= book.holders(reserve.asset)
            index = reserve.normalized_debt(market.timestamp)
            if index > self._debt_index_base[rid] * (1 + refresh_drift):
                stale |= book.holders(reserve.asset)
                self._debt_index_base[rid] = index
        if self._stable_growth(market.timestamp) > refresh_drift:
            stale |= self.notes.stable_users
            self._stable_base_time = market.timestamp
            self.notes.max_stable_rate = 0
        return stale

    def drift(self, market: Market) -> float:
        """Largest relative debt growth any row may have missed since it was set."""
        worst = 0.0
        for rid, reserve in market.reserves.items():
            base = self._debt_index_base.get(rid)
            if base:
                worst = max(worst, reserve.normalized_debt(market.timestamp) / base - 1.0)
        return max(worst, self._stable_growth(market.timestamp))

    def _stable_growth(self, now: int) -> float:
        # An upper bound of a stable debt's growth: continuous compounding at the highest rate.
        years = max(now - self._stable_base_time, 0) / SECONDS_PER_YEAR
        return math.expm1(self.notes.max_stable_rate / RAY * years)

    def candidates(self, market: Market, margin: float) -> list[str]:
        """Accounts the exact math must look at: float HF under the band, and the untrusted."""
        widened = (1.0 + margin) * (1.0 + self.drift(market)) - 1.0
        users = self.users
        picked = [users[i] for i in self.prefilter.candidates(widened).tolist()]
        seen = set(picked)
        dust = np.flatnonzero(self._dust_rows())
        extra = {users[i] for i in dust.tolist()} | self.notes.always
        picked.extend(u for u in sorted(extra) if u not in seen)
        return picked

    def surely_under(self, market: Market, margin: float,
                     skip: Collection[str] = frozenset()) -> list[FloatFigures]:
        """Accounts the floats alone show under HF 1: trusted rows (not dust, no data missing)
        whose float HF stays under 1 once raised by twice the margin and by the largest
        interest any row may have missed (collateral earns no faster than the debt of its
        reserve grows; the second margin is for what the index earns besides, such as a flash
        loan's premium). Each with its float figures, in base units; none of ``skip``."""
        limit = 1.0 / ((1.0 + 2.0 * margin) * (1.0 + self.drift(market)))
        rows, hf, collateral, debt = self.prefilter.below(limit)
        trusted = ~self._dust_rows()[rows]
        users, always = self.users, self.notes.always
        return [FloatFigures(users[i], h, c, d) for i, h, c, d in zip(
            rows[trusted].tolist(), hf[trusted].tolist(), collateral[trusted].tolist(),
            debt[trusted].tolist(), strict=True)
            if users[i] not in always and users[i] not in skip]

    def _dust_rows(self) -> BoolArray:
        # Rows whose collateral may now be under the dust line (see DUST_COLLATERAL_BASE).
        return np.asarray(self.collateral_ref * self._largest_fall() < DUST_COLLATERAL_BASE)

    def _largest_fall(self) -> float:
        # min over columns of price now / price at the reference: every collateral value is at
        # least its reference value times this (values are sums of non-negative terms).
        now, ref = self.prefilter.prices, self.ref_prices
        priced = ref > 0
        if not priced.any():
            return 1.0
        return float(min(1.0, np.min(now[priced] / ref[priced])))


def _joined(parts: list[IndexArray]) -> IndexArray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)
