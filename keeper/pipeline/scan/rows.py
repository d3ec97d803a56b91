"""Prefilter rows: an account's whole-token amounts and thresholds, one float per column.

Amounts are whole tokens *including interest* as of the moment a row is set. Two ways to set
rows that give the same floats: ``fill_row`` one account at a time (events touched it), and
``build_rows`` every account at once (start-up, a new column), which collects each reserve's
scaled balances in one pass of Python and lets numpy place them. The unit tests hold the two
equal to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from keeper.domain.account import EModeCategory, Market, UserReserve
from keeper.domain.interest import stable_debt_balance
from keeper.domain.reserve_config import MAX_RESERVES_COUNT
from keeper.domain.wadray import HALF_RAY, RAY, ray_mul
from keeper.pipeline.scan.book_view import BookView
from keeper.pipeline.scan.layout import BoolArray, FloatArray, IntArray, Layout, Terms
from keeper.protocols.aave_v3.book import PositionBook

_SURELY_IN_RANGE = 1e49
"""A wei amount below this (as a float) is a rayMul that cannot overflow (that takes 1.16e50)."""


@dataclass(frozen=True, slots=True)
class RowContext:
    """The market rows are set at: its columns, per-reserve terms and the reference prices
    at which each row's collateral value is kept (for the dust check)."""

    market: Market
    layout: Layout
    terms: Mapping[int, Terms]
    ref_prices: FloatArray

    @staticmethod
    def of(market: Market, layout: Layout, ref_prices: FloatArray) -> RowContext:
        return RowContext(market, layout, layout.terms(market), ref_prices)


@dataclass(slots=True)
class RowNotes:
    """What setting rows found beside the floats."""

    always: set[str] = field(default_factory=set)
    """Accounts the market lacks data for: exact math looks at them every scan."""
    stable_users: set[str] = field(default_factory=set)
    """Accounts with stable debt, re-set when the highest stable rate may have drifted."""
    max_stable_rate: int = 0


@dataclass(slots=True)
class Rows:
    """Built rows: (columns, rows) arrays, asset-major as the prefilter keeps them."""

    collateral: FloatArray
    thresholds: FloatArray
    debt: FloatArray
    collateral_ref: FloatArray
    notes: RowNotes


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
class _Gathered:
    """Rows in an eMode category (and their categories), and the accounts to always check."""

    emode_rows: list[int] = field(default_factory=list)
    emode_ids: list[int] = field(default_factory=list)
    always: set[str] = field(default_factory=set)


def _gather_records(
    book: PositionBook,
    users: Sequence[str],
    market: Market,
    balances: Mapping[int, _Balances],
) -> _Gathered:
    """Collect the balances of ``users`` from the book's records into ``balances``.

    Reads the records the way ``PositionBook.account`` turns them into configuration bits (a
    reserve is collateral when its asset is in ``collateral``, borrowed when it holds debt),
    without building an account per user.
    """
    by_asset = {market.reserves[rid].asset: held for rid, held in balances.items()}
    categories = market.emode_categories
    out = _Gathered()
    record = book.record
    for row, user in enumerate(users):
        rec = record(user)
        category = rec.emode_category
        if category:
            if category not in categories:
                if not book.account(user).configuration.is_empty():
                    out.always.add(user)  # exact math will report the missing category
                continue
            out.emode_rows.append(row)
            out.emode_ids.append(category)
        collateral = rec.collateral
        for asset, position in rec.positions.items():
            held = by_asset.get(asset)
            if held is None:
                continue
            held.add(row, position, collateral=asset in collateral, borrowing=True)
    return out


def _gather_accounts(
    book: BookView,
    users: Sequence[str],
    market: Market,
    balances: Mapping[int, _Balances],
) -> _Gathered:
    """``_gather_records`` for any ``BookView``: from ``account()`` and its configuration bits."""
    reserve_of = {market.reserves[rid].asset: rid for rid in balances}
    known = sum(3 << (rid << 1) for rid in balances)
    unknown = ((1 << (MAX_RESERVES_COUNT << 1)) - 1) & ~known
    categories = market.emode_categories
    out = _Gathered()
    for row, user in enumerate(users):
        account = book.account(user)
        bits = account.configuration.data
        if not bits:
            continue
        category = account.emode_category
        if (category and category not in categories) or bits & unknown:
            out.always.add(user)
            continue
        if category:
            out.emode_rows.append(row)
            out.emode_ids.append(category)
        for asset, position in account.reserves.items():
            rid = reserve_of.get(asset)
            if rid is None:
                continue
            flags = bits >> (rid << 1)
            balances[rid].add(row, position, collateral=bool(flags & 2), borrowing=bool(flags & 1))
    return out


def _placement(
    rows: IntArray,
    emode: npt.NDArray[np.int64],
    term: Terms,
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
    """``ray_mul(s, index) / unit`` for every (positive) ``s``: the floats ``fill_row`` computes.

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


def _debt(position: UserReserve, term: Terms, now: int) -> int:
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


def fill_row(
    book: BookView,
    user: str,
    ctx: RowContext,
    out: tuple[FloatArray, FloatArray, FloatArray],
    notes: RowNotes,
) -> float:
    """Write one account's whole-token amounts and thresholds into ``out`` (collateral,
    thresholds, debt; zeroed by the caller), and what it finds beside them into ``notes``.

    Returns its collateral value at the reference prices, ``inf`` when it has no debt.
    """
    collateral, thresholds, debt = out
    market, terms = ctx.market, ctx.terms
    account = book.account(user)
    config = account.configuration
    if config.is_empty():
        return math.inf
    emode = account.emode_category
    category = market.emode_categories.get(emode) if emode else None
    if emode and category is None:
        notes.always.add(user)  # exact math will report the missing category
        return math.inf
    active = config.active_reserve_ids()
    if any(rid not in terms for rid in active):
        notes.always.add(user)  # before writing anything: the row stays empty
        return math.inf
    source_column = ctx.layout.source_column.get(emode)
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
                notes.stable_users.add(user)
                notes.max_stable_rate = max(notes.max_stable_rate, position.stable_borrow_rate)
            debt[column] += owed / term.unit
            has_debt = has_debt or owed > 0
    return _value(collateral, ctx.ref_prices) if has_debt else math.inf


def build_rows(book: BookView, users: Sequence[str], ctx: RowContext, capacity: int) -> Rows:
    """The rows of ``users`` (row i is ``users[i]``), all at once: what ``fill_row`` would
    write for each, to the same float.

    One pass of Python only collects each reserve's scaled balances, as integers; per
    reserve, they are then brought to wei with ``rayMul`` in Python integers and divided by
    the unit exactly as ``fill_row`` divides them, and numpy adds them into their columns.
    Reserves are added in ascending id order, the order ``fill_row`` visits them, so two
    reserves sharing a column (an eMode price source) sum in the same order too.
    """
    market, terms = ctx.market, ctx.terms
    width = ctx.layout.width
    collateral = np.zeros((width, capacity))
    thresholds = np.zeros((width, capacity))
    debt = np.zeros((width, capacity))
    balances = {rid: _Balances() for rid in terms if rid < MAX_RESERVES_COUNT}
    if isinstance(book, PositionBook):
        gathered = _gather_records(book, users, market, balances)
    else:
        gathered = _gather_accounts(book, users, market, balances)
    emode = np.zeros(capacity, dtype=np.int64)
    emode[np.array(gathered.emode_rows, dtype=np.intp)] = gathered.emode_ids
    notes = RowNotes(always=gathered.always)
    now = market.timestamp
    for rid in sorted(balances):
        term, held = terms[rid], balances[rid]
        cfg = term.reserve.configuration
        # No account is in eMode 0; accounts in a category the market lacks have no rows.
        category = (market.emode_categories.get(cfg.emode_category)
                    if cfg.emode_category else None)
        source = ctx.layout.source_column.get(cfg.emode_category)

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
                    notes.stable_users.add(users[user_row])
                    notes.max_stable_rate = max(notes.max_stable_rate, position.stable_borrow_rate)
                owed.append(np.array(amounts))
            rows = np.array(held.variable_rows + held.stable_rows, dtype=np.intp)
            columns, _ = _placement(rows, emode, term, category, source)
            debt[columns, rows] += np.concatenate(owed)
    value = np.zeros(capacity)
    for j in range(width):  # column by column, as _value sums one row
        value += collateral[j] * ctx.ref_prices[j]
    has_debt = (debt > 0).any(axis=0)
    return Rows(collateral, thresholds, debt, np.where(has_debt, value, np.inf), notes)
