"""The position book as arrays, for risk questions asked of every account at once. Pure.

A ``RiskBook`` holds, for N accounts over M reserve assets, each account's collateral and debt
in whole tokens (float64, balances brought to the book's timestamp with the protocol's own
index math), the liquidation threshold and bonus that apply to each (eMode included), and the
oracle prices. Floats rank and aggregate; they never decide alone: ``exact_account_data``
re-runs ``calculate_user_account_data`` (the keeper's own integer math, to the wei) on the
accounts whose answer matters, against the shocked market.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import numpy.typing as npt

from keeper.domain.account import (
    AccountData,
    Market,
    UserAccount,
    a_token_balance,
    calculate_user_account_data,
    user_debt,
)
from keeper.domain.revision import AaveRevision
from keeper.domain.wadray import PERCENTAGE_FACTOR, asset_unit

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class RiskBook:
    """Accounts × assets arrays (row i is ``users[i]``, column j is ``assets[j]``).

    ``collateral`` counts only what is enabled as collateral; ``thresholds`` and ``bonuses``
    are in basis points (bonus 10500 = +5%). ``prices`` are oracle prices in base units
    (1e8 = 1 USD on USD markets). ``market`` and ``accounts`` keep the exact inputs when the
    book was built from real positions (None for a synthetic book).
    """

    users: tuple[str, ...]
    assets: tuple[str, ...]
    decimals: tuple[int, ...]
    collateral: FloatArray
    thresholds: FloatArray
    bonuses: FloatArray
    debt: FloatArray
    prices: FloatArray
    revision: AaveRevision = AaveRevision.V3_0
    market: Market | None = None
    accounts: Mapping[str, UserAccount] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)

    def price_vector(self, prices: Mapping[str, int]) -> FloatArray:
        """Prices by asset as a float vector in ``assets`` order (missing: the book's own)."""
        return np.array([float(prices.get(a, p)) for a, p in zip(self.assets, self.prices,
                                                                   strict=True)])

    # Asset-major, contiguous copies (built once, on first use): a revaluation is then one
    # matrix product per figure, with no (accounts × assets) temporary.
    @cached_property
    def collateral_t(self) -> FloatArray:
        """(assets, accounts) collateral in whole tokens."""
        return np.ascontiguousarray(self.collateral.T)

    @cached_property
    def weighted_t(self) -> FloatArray:
        """(assets, accounts) collateral × liquidation threshold (as a fraction)."""
        return np.ascontiguousarray((self.collateral * self.thresholds).T / PERCENTAGE_FACTOR)

    @cached_property
    def bonus_t(self) -> FloatArray:
        """(assets, accounts) collateral × liquidation bonus (as a factor)."""
        return np.ascontiguousarray((self.collateral * self.bonuses).T / PERCENTAGE_FACTOR)

    @cached_property
    def debt_t(self) -> FloatArray:
        """(assets, accounts) debt in whole tokens."""
        return np.ascontiguousarray(self.debt.T)

    def values(self, prices: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(collateral, threshold-weighted collateral, debt) in base units per account;
        ``prices`` (assets,) or (k, assets) for k price vectors at once."""
        return prices @ self.collateral_t, prices @ self.weighted_t, prices @ self.debt_t

    def health_factors(self, prices: FloatArray) -> FloatArray:
        """Float health factors (``inf`` without debt) at ``prices``."""
        _, weighted, debt = self.values(prices)
        return health_factor(weighted, debt)

    def subset(self, rows: npt.NDArray[np.intp]) -> RiskBook:
        """The book of the accounts at ``rows`` only."""
        users = tuple(self.users[i] for i in rows)
        return replace(self, users=users, collateral=self.collateral[rows],
                       thresholds=self.thresholds[rows], bonuses=self.bonuses[rows],
                       debt=self.debt[rows],
                       accounts={u: self.accounts[u] for u in users if u in self.accounts})


def health_factor(weighted: FloatArray, debt: FloatArray) -> FloatArray:
    """``weighted / debt``, ``inf`` where there is no debt."""
    with np.errstate(divide="ignore", invalid="ignore"):
        hf: FloatArray = np.divide(weighted, debt)
    hf[debt <= 0] = np.inf
    return hf


def build_risk_book(market: Market, accounts: Mapping[str, UserAccount]) -> RiskBook:
    """The arrays of ``accounts`` (those with debt) against ``market``, balances at its
    timestamp exactly as the tokens report them."""
    reserves = sorted(market.reserves.values(), key=lambda r: r.id)
    assets = tuple(r.asset for r in reserves)
    column = {r.id: j for j, r in enumerate(reserves)}
    units = [asset_unit(r.configuration.decimals) for r in reserves]
    with_debt = [(u, a) for u, a in accounts.items() if _borrows(a)]
    n, m = len(with_debt), len(assets)
    coll, debt = np.zeros((n, m)), np.zeros((n, m))
    thr, bonus = np.zeros((n, m)), np.zeros((n, m))
    rev, now = market.revision, market.timestamp
    for i, (_, account) in enumerate(with_debt):
        config = account.configuration
        category = (market.emode_categories.get(account.emode_category)
                    if account.emode_category else None)
        for rid in config.active_reserve_ids():
            j = column[rid]
            reserve = reserves[j]
            position = account.position(reserve.asset)
            cfg = reserve.configuration
            if config.is_using_as_collateral(rid) and (
                    rev.has_liquid_emode or cfg.liquidation_threshold != 0):
                coll[i, j] = a_token_balance(reserve, position, now, rev) / units[j]
                in_emode = category is not None and category.counts_as_collateral(
                    reserve, account.emode_category)
                thr[i, j] = (category.liquidation_threshold if in_emode and category
                             else cfg.liquidation_threshold)
                bonus[i, j] = (category.liquidation_bonus if in_emode and category
                               else cfg.liquidation_bonus)
            if config.is_borrowing(rid):
                debt[i, j] = user_debt(reserve, position, now, rev).total / units[j]
    prices = np.array([float(market.prices.get(a, 0)) for a in assets])
    return RiskBook(
        users=tuple(u for u, _ in with_debt), assets=assets,
        decimals=tuple(r.configuration.decimals for r in reserves),
        collateral=coll, thresholds=thr, bonuses=bonus, debt=debt, prices=prices,
        revision=rev, market=market, accounts=dict(with_debt))


def _borrows(account: UserAccount) -> bool:
    config = account.configuration
    return any(config.is_borrowing(rid) for rid in config.active_reserve_ids())


def shocked_market(market: Market, prices: Mapping[str, int], timestamp: int | None = None
                   ) -> Market:
    """``market`` with ``prices`` (merged over its own) and, if given, another timestamp."""
    return replace(market, prices={**market.prices, **prices},
                   timestamp=market.timestamp if timestamp is None else timestamp)


def exact_account_data(book: RiskBook, users: Iterable[str], market: Market
                       ) -> dict[str, AccountData]:
    """Pool.getUserAccountData of ``users`` against ``market``, to the wei (the keeper's own
    math). Accounts the book holds no exact data for are left out."""
    return {u: calculate_user_account_data(book.accounts[u], market)
            for u in users if u in book.accounts}


def synthetic_book(
    rng: np.random.Generator, n: int, assets: Sequence[str], prices: Sequence[float],
    *, threshold_bps: float = 8000.0, bonus_bps: float = 10500.0,
) -> RiskBook:
    """N random accounts over ``assets`` (collateral in one or two assets, debt in another),
    health factors spread over 1.0 … 3.0: for benches and property tests."""
    m = len(assets)
    p = np.asarray(prices, dtype=np.float64)
    value = 10 ** rng.uniform(3.0, 5.7, n) * 1e8  # $1k … $500k of collateral
    coll = np.zeros((n, m))
    debt = np.zeros((n, m))
    rows = np.arange(n)
    c1 = rng.integers(0, m, n)
    coll[rows, c1] = value / p[c1]
    second = rng.random(n) < 0.3
    c2 = (c1 + 1) % m
    coll[rows[second], c2[second]] = value[second] * 0.5 / p[c2[second]]
    hf = 1.0 + rng.gamma(2.0, 0.25, n)
    debt_value = (coll @ p) * threshold_bps / PERCENTAGE_FACTOR / hf
    d1 = (c1 + m - 1) % m
    debt[rows, d1] = debt_value / p[d1]
    thr = np.full((n, m), threshold_bps) * (coll > 0)
    bon = np.full((n, m), bonus_bps) * (coll > 0)
    return RiskBook(users=tuple(f"0x{i:040x}" for i in range(n)), assets=tuple(assets),
                    decimals=tuple(18 for _ in assets), collateral=coll, thresholds=thr,
                    bonuses=bon, debt=debt, prices=p)
