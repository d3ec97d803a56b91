"""The health scanner: every liquidatable account of the book, none missed, confirmed on chain.

Three stages, each cheaper than the next is exact:

1. **Float prefilter** (``HealthFactorPrefilter``): every account's health factor as float64
   matrix products over one column per price. It is kept incrementally: a price move re-evaluates
   only that column's holders; an account touched by an event gets its row re-set. Accounts
   whose float HF is below ``1 + margin`` (widened by interest accrued since their rows were
   built) are candidates.
2. **Exact math** (``calculate_user_account_data``): the candidates' account data to the wei,
   from the book.
3. **The chain**: the accounts near or under the line are read back with
   ``Pool.getUserAccountData`` through Multicall3, at the book's block, in one batch. The chain
   is the truth; a difference from the exact book value means the book is wrong, and is logged
   and counted.

Columns. One per reserve (priced by the oracle's asset price), plus one per eMode category whose
price source is set and non-zero: an eMode user's amounts of that category's assets sit in the
category's column, because GenericLogic prices them all with the source's price. Amounts are
whole tokens *including interest* as of the moment a row was set; interest accrued later only
lowers a health factor through debt, so the selection band is widened by the largest debt
growth since then, and the holders of a reserve are re-set once its debt index has grown by
``refresh_drift``.

What the floats cannot vouch for is sent to exact math every scan: accounts with debt whose
collateral may be worth less than ``DUST_COLLATERAL_BASE`` (the contract's per-asset rounding is
then no longer negligible against the margin), and accounts the market snapshot lacks data for.
"May be": each row keeps its collateral value at the reference prices of the last rebuild, and
the current value is at least that times the largest fall of any price since; so a crash widens
this set instead of hiding an account.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog

from keeper.chain.multicall import MULTICALL3, aggregate3
from keeper.chain.rpc import JsonRpc
from keeper.domain.account import (
    AccountData,
    EModeCategory,
    Market,
    MissingMarketData,
    ReserveState,
    UserAccount,
    UserReserve,
    calculate_user_account_data,
)
from keeper.domain.interest import SECONDS_PER_YEAR, stable_debt_balance
from keeper.domain.liq_price import DEFAULT_MARGIN, HealthFactorPrefilter
from keeper.domain.liquidation import close_factor
from keeper.domain.reserve_config import MAX_RESERVES_COUNT
from keeper.domain.wadray import HALF_RAY, RAY, WAD, ArithmeticRevert, percent_mul, ray_mul
from keeper.protocols.aave_v3.book import PositionBook

log = structlog.get_logger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

LIQUIDATION_THRESHOLD_HF = WAD
"""An account is liquidatable when its health factor is below 1 (a wad)."""

DUST_COLLATERAL_BASE = 10**6
"""Below this collateral value (base units: $0.01 at 8 decimals) the float is not trusted: the
contract floors each asset's value to a base unit, up to (assets)/1e6 relative here, while the
margin allows 1e-3."""

GET_USER_ACCOUNT_DATA_SELECTOR = bytes.fromhex("bf92857c")
"""``getUserAccountData(address)``; the unit tests check it against the keccak of the signature."""

_SPARE_ROWS = 1024
_SURELY_IN_RANGE = 1e49
"""A wei amount below this (as a float) is a rayMul that cannot overflow (that takes 1.16e50)."""


class BookView(Protocol):
    """What the scanner reads from the position book (``keeper.protocols.aave_v3.book.PositionBook``).

    Addresses are lower-case 0x strings. ``market()`` and ``account()`` are the state as of
    ``block_number`` (whose timestamp ``market().timestamp`` is).
    """

    @property
    def block_number(self) -> int: ...

    @property
    def block_timestamp(self) -> int: ...

    def market(self) -> Market: ...

    def account(self, user: str) -> UserAccount: ...

    def users(self) -> Iterable[str]: ...

    def holders(self, asset: str) -> set[str]: ...

    def health_factor(self, user: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """A liquidatable account, values in the oracle's base currency, HF a wad.

    ``confirmed_on_chain`` is True when ``Pool.getUserAccountData`` at ``block`` said HF < 1
    (the values are then the chain's); False when only the book's exact math says so because
    the chain's answer was missing. Nothing should act on an unconfirmed candidate.
    """

    user: str
    health_factor: int
    total_collateral_base: int
    total_debt_base: int
    confirmed_on_chain: bool
    block: int

    @property
    def max_repay_base(self) -> int:
        """Debt that one liquidation may repay (close factor), capped by the collateral."""
        repay = percent_mul(self.total_debt_base, close_factor(self.health_factor))
        return min(repay, self.total_collateral_base)


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Most debt a liquidation could repay first (the bonus is paid on it); then lowest HF."""
    return sorted(candidates, key=lambda c: (-c.max_repay_base, c.health_factor, c.user))


@dataclass(slots=True)
class ScanStats:
    """Counters since the scanner was built (cumulative) and sizes of the last scan."""

    scans: int = 0
    rebuilds: int = 0
    rows_set: int = 0
    mismatches: int = 0
    """Accounts whose exact book HF differed from the chain's: the book was wrong."""
    chain_failures: int = 0
    book_errors: int = 0
    last_prefiltered: int = 0
    last_exact_near: int = 0
    last_confirmed: int = 0


@dataclass(frozen=True, slots=True)
class _Terms:
    """What row building needs of one reserve at one timestamp."""

    reserve: ReserveState
    column: int
    unit: float
    income: int
    debt_index: int


@dataclass(slots=True)
class _Layout:
    """Columns of the prefilter and what a change of the market invalidates."""

    reserve_column: dict[int, int]
    source_column: dict[int, int]  # eMode category id -> column of its price source
    source_of: dict[int, str]
    fingerprint: tuple[object, ...]  # reserves, eMode categories and live price sources

    @property
    def width(self) -> int:
        return len(self.reserve_column) + len(self.source_column)

    @staticmethod
    def of(market: Market) -> _Layout:
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
        return _Layout(reserve_column, source_column, source_of, fingerprint)

    def prices(self, market: Market) -> FloatArray:
        """The price of every column, in base units, as floats."""
        out = np.zeros(self.width)
        for rid, j in self.reserve_column.items():
            out[j] = float(market.prices.get(market.reserves[rid].asset, 0))
        for cid, j in self.source_column.items():
            out[j] = float(market.prices.get(self.source_of[cid], 0))
        return out


def _risk_fields(reserve: ReserveState) -> tuple[int, int, int]:
    cfg = reserve.configuration
    return cfg.liquidation_threshold, cfg.decimals, cfg.emode_category


@dataclass(slots=True)
class _Balances:
    """One reserve's balances over the accounts being built, as the book holds them."""

    supplied_rows: list[int] = field(default_factory=list)
    supplied: list[int] = field(default_factory=list)  # scaled aToken, collateral enabled
    variable_rows: list[int] = field(default_factory=list)
    variable: list[int] = field(default_factory=list)  # scaled variable debt, no stable debt
    stable_rows: list[int] = field(default_factory=list)
    stable: list[UserReserve] = field(default_factory=list)  # positions with stable debt

    def add(self, row: int, position: UserReserve, *, collateral: bool, borrowing: bool) -> None:
        """Record one account's position: its supply if used as collateral, its debt if the
        account borrows the reserve (stable debt, when any, is re-priced per position)."""
        if collateral and position.scaled_a_token_balance:
            self.supplied_rows.append(row)
            self.supplied.append(position.scaled_a_token_balance)
        if not borrowing:
            return
        if position.stable_debt_principal:
            self.stable_rows.append(row)
            self.stable.append(position)
        elif position.scaled_variable_debt:
            self.variable_rows.append(row)
            self.variable.append(position.scaled_variable_debt)


@dataclass(slots=True)
class _Rows:
    """Built rows: (columns, rows) arrays, asset-major as the prefilter keeps them."""

    collateral: FloatArray
    thresholds: FloatArray
    debt: FloatArray
    collateral_ref: FloatArray
    always: set[str]
    stable_users: set[str]
    max_stable_rate: int


def _gather_records(
    book: PositionBook,
    users: Sequence[str],
    market: Market,
    balances: Mapping[int, _Balances],
) -> tuple[list[int], list[int], set[str]]:
    """Collect the balances of ``users`` from the book's records into ``balances``.

    Returns the rows in an eMode category (and their categories) and the accounts the market
    lacks data for. Reads the records the way ``PositionBook.account`` turns them into
    configuration bits (a reserve is collateral when its asset is in ``collateral``, borrowed
    when it holds debt), without building an account per user.
    """
    by_asset = {market.reserves[rid].asset: held for rid, held in balances.items()}
    categories = market.emode_categories
    emode_rows: list[int] = []
    emode_ids: list[int] = []
    always: set[str] = set()
    record = book.record
    for row, user in enumerate(users):
        rec = record(user)
        category = rec.emode_category
        if category:
            if category not in categories:
                if not book.account(user).configuration.is_empty():
                    always.add(user)  # exact math will report the missing category
                continue
            emode_rows.append(row)
            emode_ids.append(category)
        collateral = rec.collateral
        for asset, position in rec.positions.items():
            held = by_asset.get(asset)
            if held is None:
                continue
            held.add(row, position, collateral=asset in collateral, borrowing=True)
    return emode_rows, emode_ids, always


def _gather_accounts(
    book: BookView,
    users: Sequence[str],
    market: Market,
    balances: Mapping[int, _Balances],
) -> tuple[list[int], list[int], set[str]]:
    """``_gather_records`` for any ``BookView``: from ``account()`` and its configuration bits."""
    reserve_of = {market.reserves[rid].asset: rid for rid in balances}
    known = sum(3 << (rid << 1) for rid in balances)
    unknown = ((1 << (MAX_RESERVES_COUNT << 1)) - 1) & ~known
    categories = market.emode_categories
    emode_rows: list[int] = []
    emode_ids: list[int] = []
    always: set[str] = set()
    for row, user in enumerate(users):
        account = book.account(user)
        bits = account.configuration.data
        if not bits:
            continue
        category = account.emode_category
        if (category and category not in categories) or bits & unknown:
            always.add(user)
            continue
        if category:
            emode_rows.append(row)
            emode_ids.append(category)
        for asset, position in account.reserves.items():
            rid = reserve_of.get(asset)
            if rid is None:
                continue
            flags = bits >> (rid << 1)
            balances[rid].add(row, position, collateral=bool(flags & 2), borrowing=bool(flags & 1))
    return emode_rows, emode_ids, always


def _placement(
    rows: IntArray,
    emode: npt.NDArray[np.int64],
    term: _Terms,
    category: EModeCategory | None,
    source: int | None,
) -> tuple[IntArray, BoolArray]:
    """The column of one reserve's amount in each row, and whether the row is in its eMode.

    ``emode`` is every row's eMode category; ``category`` the reserve's (None if there is
    none), ``source`` the column of its price source (None if it has no live one).
    """
    if category is None:
        return np.full(rows.size, term.column, dtype=np.intp), np.zeros(rows.size, dtype=bool)
    in_emode = emode[rows] == term.reserve.configuration.emode_category
    column = term.column if source is None else source
    return np.where(in_emode, column, term.column), in_emode


def _whole_tokens(scaled: Sequence[int], index: int, unit: float) -> FloatArray:
    """``ray_mul(s, index) / unit`` for every (positive) ``s``: the floats ``_fill_row`` computes.

    ``ray_mul``'s range checks cost as much as the product; they run only when an amount is
    not clearly inside the range where ``ray_mul`` cannot revert.
    """
    try:
        amounts = np.array([(s * index + HALF_RAY) // RAY / unit for s in scaled], dtype=np.float64)
    except OverflowError:  # beyond any float, so beyond a uint256: ray_mul raises below
        amounts = np.full(len(scaled), np.inf)
    if amounts.size and not (amounts.min() > 0.0 and amounts.max() * unit < _SURELY_IN_RANGE):
        for s in scaled:
            ray_mul(s, index)
    return amounts


def _debt(position: UserReserve, term: _Terms, now: int) -> int:
    """Variable plus stable debt of one position at ``now``, in wei."""
    owed = 0
    if position.scaled_variable_debt:
        owed = ray_mul(position.scaled_variable_debt, term.debt_index)
    if position.stable_debt_principal:
        owed += stable_debt_balance(
            position.stable_debt_principal,
            position.stable_borrow_rate,
            position.stable_last_update_timestamp,
            now,
        )
    return owed


def _value(amounts: FloatArray, prices: FloatArray) -> float:
    # Summed column by column from 0.0, like the build's vectorised sum: the same float.
    total = 0.0
    for amount, price in zip(amounts.tolist(), prices.tolist(), strict=True):
        total += amount * price
    return total


class HealthScanner:
    """Finds the liquidatable accounts of a book; see the module docstring for how.

    Build it on a synced book, then per block: ``sync(touched_users)`` and ``await scan(...)``.
    Everything but ``scan``'s chain read is synchronous CPU work (milliseconds per block;
    ``rebuild`` is proportional to the number of accounts and runs at start-up or when the
    market's shape changes).
    """

    def __init__(
        self,
        book: BookView,
        *,
        margin: float = DEFAULT_MARGIN,
        refresh_drift: float = DEFAULT_MARGIN / 2,
    ) -> None:
        self.book = book
        self.margin = margin
        self.refresh_drift = refresh_drift
        self.stats = ScanStats()
        self._users: list[str] = []
        self._row: dict[str, int] = {}
        self._always: set[str] = set()  # accounts the book lacks market data for
        self._ref_prices: FloatArray = np.zeros(0)
        self._collateral_ref: FloatArray = np.zeros(0)  # per row, at _ref_prices; inf: no debt
        self._stable_users: set[str] = set()
        self._layout = _Layout({}, {}, {}, ())
        self._risk: dict[int, tuple[int, int, int]] = {}
        self._debt_index_base: dict[int, int] = {}
        self._stable_base_time = 0
        self._max_stable_rate = 0
        self._pf = HealthFactorPrefilter(np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0)), np.zeros(0))
        self.rebuild()

    # ---- the prefilter, kept in step with the book ------------------------------------------
    @property
    def size(self) -> int:
        """Accounts in the prefilter."""
        return len(self._users)

    @property
    def prefilter(self) -> HealthFactorPrefilter:
        """The float prefilter (row i is ``users[i]``)."""
        return self._pf

    @property
    def users(self) -> Sequence[str]:
        """Accounts in row order."""
        return self._users

    def rebuild(self) -> None:
        """Rebuild every row from the book (start-up; a new reserve or eMode category)."""
        market = self.book.market()
        self._layout = _Layout.of(market)
        self._risk = {rid: _risk_fields(r) for rid, r in market.reserves.items()}
        users = list(self.book.users())
        capacity = len(users) + max(_SPARE_ROWS, len(users) // 8)
        terms = self._terms(market)
        prices = self._layout.prices(market)
        self._ref_prices = prices
        rows = self._build_rows(users, market, terms, capacity)
        self._users, self._row = users, dict(zip(users, range(len(users)), strict=True))
        self._always = rows.always
        self._stable_users = rows.stable_users
        self._max_stable_rate = rows.max_stable_rate
        self._collateral_ref = rows.collateral_ref
        # Transposed views of asset-major arrays: the prefilter keeps them without a copy.
        self._pf = HealthFactorPrefilter(rows.collateral.T, rows.thresholds.T, rows.debt.T, prices)
        self._debt_index_base = {rid: t.debt_index for rid, t in terms.items()}
        self._stable_base_time = market.timestamp
        self.stats.rebuilds += 1
        self.stats.rows_set += len(users)

    def touch(self, users: Iterable[str]) -> None:
        """Re-set the rows of accounts an event changed (new accounts get a row)."""
        users = list(dict.fromkeys(users))
        if not users:
            return
        capacity = self._pf.health_factors.shape[0]
        if len(self._users) + sum(u not in self._row for u in users) > capacity:
            self.rebuild()  # grows by an eighth: amortised, like a list
            return
        market = self.book.market()
        terms = self._terms(market)
        width = self._layout.width
        c, t, d = np.zeros(width), np.zeros(width), np.zeros(width)
        for user in users:
            row = self._row.get(user)
            if row is None:
                row = len(self._users)
                self._users.append(user)
                self._row[user] = row
            c.fill(0.0)
            t.fill(0.0)
            d.fill(0.0)
            self._always.discard(user)
            self._stable_users.discard(user)
            self._collateral_ref[row] = self._fill_row(user, market, terms, c, t, d)
            self._pf.set_account(row, c, t, d)
        self.stats.rows_set += len(users)

    def update_prices(self) -> int:
        """Move the columns whose price changed in the book; returns accounts re-evaluated."""
        prices = self._layout.prices(self.book.market())
        current = self._pf.prices
        moved = 0
        for j in np.flatnonzero(prices != current):
            moved += int(self._pf.set_price(int(j), float(prices[j])).size)
        return moved

    def sync(self, touched: Iterable[str] = ()) -> None:
        """Bring the prefilter to the book's current block.

        ``touched``: accounts whose positions events changed since the last sync. Reserve
        parameter changes and interest drift re-set the holders of the reserve; a new reserve,
        eMode category or price source rebuilds everything.
        """
        market = self.book.market()
        if _Layout.of(market).fingerprint != self._layout.fingerprint:
            log.info("scanner_rebuild", reason="market layout changed", block=self.book.block_number)
            self.rebuild()
            return
        stale: set[str] = set(touched)
        for rid, reserve in market.reserves.items():
            risk = _risk_fields(reserve)
            if risk != self._risk.get(rid):
                self._risk[rid] = risk
                stale |= self.book.holders(reserve.asset)
            index = reserve.normalized_debt(market.timestamp)
            if index > self._debt_index_base[rid] * (1 + self.refresh_drift):
                stale |= self.book.holders(reserve.asset)
                self._debt_index_base[rid] = index
        if self._stable_growth(market.timestamp) > self.refresh_drift:
            stale |= self._stable_users
            self._stable_base_time = market.timestamp
            self._max_stable_rate = 0
        # Prices first: rows set afterwards are then computed at the new prices only once.
        self.update_prices()
        self.touch(sorted(stale))

    def drift(self) -> float:
        """Largest relative debt growth any row may have missed since it was set."""
        market = self.book.market()
        worst = 0.0
        for rid, reserve in market.reserves.items():
            base = self._debt_index_base.get(rid)
            if base:
                worst = max(worst, reserve.normalized_debt(market.timestamp) / base - 1.0)
        return max(worst, self._stable_growth(market.timestamp))

    def _stable_growth(self, now: int) -> float:
        # An upper bound of a stable debt's growth: continuous compounding at the highest rate.
        years = max(now - self._stable_base_time, 0) / SECONDS_PER_YEAR
        return math.expm1(self._max_stable_rate / RAY * years)

    def _terms(self, market: Market) -> dict[int, _Terms]:
        now = market.timestamp
        return {
            rid: _Terms(
                reserve=r,
                column=self._layout.reserve_column[rid],
                unit=float(10**r.configuration.decimals),
                income=r.normalized_income(now),
                debt_index=r.normalized_debt(now),
            )
            for rid, r in market.reserves.items()
        }

    def _fill_row(
        self,
        user: str,
        market: Market,
        terms: Mapping[int, _Terms],
        collateral: FloatArray,
        thresholds: FloatArray,
        debt: FloatArray,
    ) -> float:
        """Write one account's whole-token amounts and thresholds into the given rows.

        Returns its collateral value at the reference prices, ``inf`` when it has no debt.
        """
        account = self.book.account(user)
        config = account.configuration
        if config.is_empty():
            return math.inf
        emode = account.emode_category
        category = market.emode_categories.get(emode) if emode else None
        if emode and category is None:
            self._always.add(user)  # exact math will report the missing category
            return math.inf
        active = config.active_reserve_ids()
        if any(rid not in terms for rid in active):
            self._always.add(user)  # before writing anything: the row stays empty
            return math.inf
        source_column = self._layout.source_column.get(emode)
        now = market.timestamp
        has_debt = False
        for rid in active:
            term = terms[rid]
            reserve = term.reserve
            cfg = reserve.configuration
            position = account.position(reserve.asset)
            in_emode = category is not None and cfg.emode_category == emode
            column = source_column if in_emode and source_column is not None else term.column
            if cfg.liquidation_threshold != 0 and config.is_using_as_collateral(rid):
                amount = ray_mul(position.scaled_a_token_balance, term.income)
                collateral[column] += amount / term.unit
                threshold = (
                    category.liquidation_threshold
                    if in_emode and category is not None
                    else cfg.liquidation_threshold
                )
                thresholds[column] = threshold
            if config.is_borrowing(rid):
                owed = _debt(position, term, now)
                if position.stable_debt_principal:
                    self._stable_users.add(user)
                    self._max_stable_rate = max(self._max_stable_rate, position.stable_borrow_rate)
                debt[column] += owed / term.unit
                has_debt = has_debt or owed > 0
        return _value(collateral, self._ref_prices) if has_debt else math.inf

    def _build_rows(
        self,
        users: Sequence[str],
        market: Market,
        terms: Mapping[int, _Terms],
        capacity: int,
    ) -> _Rows:
        """The rows of ``users`` (row i is ``users[i]``), all at once: what ``_fill_row`` would
        write for each, to the same float.

        One pass of Python only collects each reserve's scaled balances, as integers; per
        reserve, they are then brought to wei with ``rayMul`` in Python integers and divided by
        the unit exactly as ``_fill_row`` divides them, and numpy adds them into their columns.
        Reserves are added in ascending id order, the order ``_fill_row`` visits them, so two
        reserves sharing a column (an eMode price source) sum in the same order too.
        """
        width = self._layout.width
        collateral = np.zeros((width, capacity))
        thresholds = np.zeros((width, capacity))
        debt = np.zeros((width, capacity))
        balances = {rid: _Balances() for rid in terms if rid < MAX_RESERVES_COUNT}
        book = self.book
        if isinstance(book, PositionBook):
            emode_rows, emode_ids, always = _gather_records(book, users, market, balances)
        else:
            emode_rows, emode_ids, always = _gather_accounts(book, users, market, balances)
        emode = np.zeros(capacity, dtype=np.int64)
        emode[np.array(emode_rows, dtype=np.intp)] = emode_ids
        stable_users: set[str] = set()
        max_stable_rate = 0
        now = market.timestamp
        for rid in sorted(balances):
            term, held = terms[rid], balances[rid]
            cfg = term.reserve.configuration
            # No account is in eMode 0; accounts in a category the market lacks have no rows.
            category = (market.emode_categories.get(cfg.emode_category)
                        if cfg.emode_category else None)
            source = self._layout.source_column.get(cfg.emode_category)

            if cfg.liquidation_threshold != 0 and held.supplied_rows:
                rows = np.array(held.supplied_rows, dtype=np.intp)
                columns, in_emode = _placement(rows, emode, term, category, source)
                collateral[columns, rows] += _whole_tokens(held.supplied, term.income, term.unit)
                thresholds[columns, rows] = np.where(
                    in_emode,
                    0 if category is None else category.liquidation_threshold,
                    cfg.liquidation_threshold,
                )
            if held.variable_rows or held.stable_rows:
                owed = [_whole_tokens(held.variable, term.debt_index, term.unit)]
                if held.stable_rows:
                    amounts: list[float] = []
                    for user_row, position in zip(held.stable_rows, held.stable, strict=True):
                        amounts.append(_debt(position, term, now) / term.unit)
                        stable_users.add(users[user_row])
                        max_stable_rate = max(max_stable_rate, position.stable_borrow_rate)
                    owed.append(np.array(amounts))
                rows = np.array(held.variable_rows + held.stable_rows, dtype=np.intp)
                columns, _ = _placement(rows, emode, term, category, source)
                debt[columns, rows] += np.concatenate(owed)
        value = np.zeros(capacity)
        for j in range(width):  # column by column, as _value sums one row
            value += collateral[j] * self._ref_prices[j]
        has_debt = (debt > 0).any(axis=0)
        return _Rows(
            collateral, thresholds, debt, np.where(has_debt, value, np.inf), always,
            stable_users, max_stable_rate,
        )

    # ---- selection -----------------------------------------------------------------------
    def prefilter_candidates(self) -> list[str]:
        """Accounts the exact math must look at: float HF under the band, and the untrusted."""
        widened = (1.0 + self.margin) * (1.0 + self.drift()) - 1.0
        idx = self._pf.candidates(widened)
        users = self._users
        picked = [users[i] for i in idx.tolist()]
        seen = set(picked)
        dust = np.flatnonzero(self._collateral_ref * self._largest_fall() < DUST_COLLATERAL_BASE)
        extra = {users[i] for i in dust.tolist()} | self._always
        picked.extend(u for u in sorted(extra) if u not in seen)
        return picked

    def _largest_fall(self) -> float:
        # min over columns of price now / price at the reference: every collateral value is at
        # least its reference value times this (values are sums of non-negative terms).
        now, ref = self._pf.prices, self._ref_prices
        priced = ref > 0
        if not priced.any():
            return 1.0
        return float(min(1.0, np.min(now[priced] / ref[priced])))

    def evaluate(self, users: Iterable[str]) -> dict[str, AccountData]:
        """Exact account data from the book; accounts the book cannot evaluate are logged."""
        market = self.book.market()
        out: dict[str, AccountData] = {}
        for user in users:
            try:
                out[user] = calculate_user_account_data(self.book.account(user), market)
            except (MissingMarketData, ArithmeticRevert) as exc:
                self.stats.book_errors += 1
                log.warning("book_cannot_evaluate", user=user, error=str(exc),
                            block=self.book.block_number)
        return out

    async def scan(
        self,
        rpc: JsonRpc,
        pool: str,
        *,
        chunk: int = 500,
        multicall: str = MULTICALL3,
    ) -> list[Candidate]:
        """The liquidatable accounts at the book's block, ranked, each checked by the chain.

        The prefilter's candidates are evaluated exactly; those with an exact HF under the
        band (or that the book cannot evaluate) are read back from the chain at the book's
        block in one Multicall3 batch. Call ``sync`` first when the book has moved.
        """
        block = self.book.block_number
        picked = self.prefilter_candidates()
        exact = self.evaluate(picked)
        line = LIQUIDATION_THRESHOLD_HF * (1.0 + self.margin)
        near = [u for u in picked if u not in exact or exact[u].health_factor < line]
        chain = await read_account_data(rpc, pool, near, block=block, chunk=chunk, multicall=multicall)
        found: list[Candidate] = []
        for user, onchain in zip(near, chain, strict=True):
            book_data = exact.get(user)
            if onchain is None:
                self.stats.chain_failures += 1
                log.warning("chain_account_data_failed", user=user, block=block)
                if book_data is not None and book_data.health_factor < LIQUIDATION_THRESHOLD_HF:
                    found.append(_candidate(user, book_data, confirmed=False, block=block))
                continue
            if book_data is None or _differs(book_data, onchain):
                self.stats.mismatches += 1
                log.warning(
                    "book_mismatch",
                    user=user,
                    block=block,
                    book_health_factor=None if book_data is None else book_data.health_factor,
                    chain_health_factor=onchain.health_factor,
                    book_debt_base=None if book_data is None else book_data.total_debt_base,
                    chain_debt_base=onchain.total_debt_base,
                )
            if onchain.health_factor < LIQUIDATION_THRESHOLD_HF:
                found.append(_candidate(user, onchain, confirmed=True, block=block))
        ranked = rank(found)
        self.stats.scans += 1
        self.stats.last_prefiltered = len(picked)
        self.stats.last_exact_near = len(near)
        self.stats.last_confirmed = sum(c.confirmed_on_chain for c in ranked)
        return ranked


def _differs(book: AccountData, chain: AccountData) -> bool:
    return (
        book.health_factor != chain.health_factor
        or book.total_collateral_base != chain.total_collateral_base
        or book.total_debt_base != chain.total_debt_base
    )


def _candidate(user: str, data: AccountData, *, confirmed: bool, block: int) -> Candidate:
    return Candidate(
        user=user,
        health_factor=data.health_factor,
        total_collateral_base=data.total_collateral_base,
        total_debt_base=data.total_debt_base,
        confirmed_on_chain=confirmed,
        block=block,
    )


def get_user_account_data_calldata(user: str) -> bytes:
    """``Pool.getUserAccountData(user)`` calldata, without an ABI encoder (it is one word)."""
    raw = bytes.fromhex(user.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {user!r}")
    return GET_USER_ACCOUNT_DATA_SELECTOR + bytes(12) + raw


def decode_account_data(data: bytes) -> AccountData:
    """``getUserAccountData``'s six words (``has_zero_ltv_collateral`` is not returned: False)."""
    if len(data) < 192:
        raise ValueError(f"getUserAccountData answer of {len(data)} bytes, expected 192")
    w = [int.from_bytes(data[i : i + 32], "big") for i in range(0, 192, 32)]
    return AccountData(
        total_collateral_base=w[0],
        total_debt_base=w[1],
        available_borrows_base=w[2],
        current_liquidation_threshold=w[3],
        ltv=w[4],
        health_factor=w[5],
        has_zero_ltv_collateral=False,
    )


async def read_account_data(
    rpc: JsonRpc,
    pool: str,
    users: Sequence[str],
    *,
    block: int | str = "latest",
    chunk: int = 500,
    multicall: str = MULTICALL3,
) -> list[AccountData | None]:
    """``Pool.getUserAccountData`` of every user through Multicall3; None where it reverted."""
    calls = [(pool, get_user_account_data_calldata(u)) for u in users]
    results = await aggregate3(rpc, calls, block=block, chunk=chunk, address=multicall)
    out: list[AccountData | None] = []
    for ok, data in results:
        out.append(decode_account_data(data) if ok and len(data) >= 192 else None)
    return out

