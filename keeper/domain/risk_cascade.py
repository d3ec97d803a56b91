"""Liquidation cascades: seized collateral sold into the pools moves the DEX, the oracle follows,
more accounts fall under water; iterated to a fixed point. Pure.

Each round liquidates every account under HF 1 once, on its largest (collateral, debt) pair,
for the close factor's share of that debt (capped by what the collateral pays with its bonus),
as ``Pool.liquidationCall(..., type(uint256).max)`` would; the seized collateral is sold for the
debt asset along the best Uniswap V2 route (exact pool integers); then each sold asset's oracle
price moves ``pass_through`` of the way to its DEX price against ``quote_asset``. The rounds
stop when nothing is liquidatable or no price moves by more than ``tolerance``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np

from keeper.domain.amm import SwapRevert, sort_tokens
from keeper.domain.quote import UniswapV2Quoter
from keeper.domain.risk_book import FloatArray, RiskBook
from keeper.domain.risk_shock import PriceLink, liquidations
from keeper.domain.wadray import WAD


@dataclass(frozen=True, slots=True)
class CascadeConfig:
    """How the market reacts: the oracle's pass-through of the DEX price (1 = it follows
    fully), the asset DEX prices are read against, the hubs of two-hop routes."""

    quote_asset: str
    pass_through: float = 1.0
    hubs: tuple[str, ...] = ()
    max_rounds: int = 20
    tolerance: float = 1e-4
    links: tuple[PriceLink, ...] = ()
    """Assets priced off another's feed: they follow it, not their own pools."""


@dataclass(frozen=True, slots=True)
class CascadeRound:
    """One round: accounts liquidated, debt repaid and collateral seized (base units at the
    round's prices), and the oracle prices after it."""

    liquidated: int
    repaid: float
    seized: float
    prices: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class CascadeOutcome:
    """The fixed point: rounds, final prices, amplification (final move / initial shock, per
    moved asset) and the bad debt left (base units)."""

    rounds: tuple[CascadeRound, ...]
    start_prices: Mapping[str, int]
    shocked_prices: Mapping[str, int]
    final_prices: Mapping[str, int]
    bad_debt: float
    bad_debt_initial: float
    amplification: Mapping[str, float] = field(default_factory=dict)


def run_cascade(book: RiskBook, start: Mapping[str, int], shocked: Mapping[str, int],
                pairs: Mapping[tuple[str, str], tuple[int, int]],
                config: CascadeConfig) -> CascadeOutcome:
    """The cascade that ``shocked`` (oracle prices just after the shock; ``start`` before it)
    sets off, with the pools in ``pairs`` (reserves keyed ``(token0, token1)``, already at the
    shocked prices)."""
    coll, debt = book.collateral.copy(), book.debt.copy()
    pools = {sort_tokens(a, b): r for (a, b), r in pairs.items()}
    prices = dict(shocked)
    rounds: list[CascadeRound] = []
    state = replace(book, collateral=coll, debt=debt)
    bad_initial = float(liquidations(state, state.price_vector(prices)).bad_debt.sum())
    for _ in range(config.max_rounds):
        done = _round(state, prices, pools, config)
        if done is None:
            break
        # The round changed the balances in place: a fresh book drops its cached products.
        state = replace(state)
        rounds.append(done)
        moved = max((abs(done.prices[a] / prices[a] - 1) for a in prices if prices[a]),
                    default=0.0)
        prices = dict(done.prices)
        if moved < config.tolerance:
            break
    bad = float(liquidations(state, state.price_vector(prices)).bad_debt.sum())
    amp = {a: (prices[a] / start[a] - 1) / (shocked[a] / start[a] - 1)
           for a in shocked if start.get(a) and shocked[a] != start[a]}
    return CascadeOutcome(tuple(rounds), dict(start), dict(shocked), prices, bad,
                          bad_initial, amp)


def _round(state: RiskBook, prices: dict[str, int],
           pools: dict[tuple[str, str], tuple[int, int]],
           config: CascadeConfig) -> CascadeRound | None:
    p = state.price_vector(prices)
    liq = liquidations(state, p)
    rows = np.flatnonzero(liq.liquidatable & (liq.covered > 0))
    if rows.size == 0:
        return None
    sold: dict[tuple[int, int], int] = {}
    repaid = seized = 0.0
    for i in rows:
        c, d, repay_tokens, seized_tokens = liquidation_of(state, int(i), p, liq.covered)
        state.debt[i, d] -= repay_tokens
        state.collateral[i, c] = max(state.collateral[i, c] - seized_tokens, 0.0)
        repaid += repay_tokens * p[d]
        seized += seized_tokens * p[c]
        if c != d:
            amount = int(seized_tokens * 10 ** state.decimals[c])
            sold[(c, d)] = sold.get((c, d), 0) + amount
    for (c, d), amount in sold.items():
        _sell(state.assets[c], state.assets[d], amount, pools, config.hubs)
    moved = dict(prices)
    followers = {link.asset for link in config.links}
    for c in {c for c, _ in sold}:
        asset = state.assets[c]
        dex = dex_price(asset, config.quote_asset, prices, pools, state)
        if dex is not None and asset not in followers:
            moved[asset] = int(prices[asset] + config.pass_through * (dex - prices[asset]))
    for link in config.links:
        if link.base in moved and moved[link.base] != prices.get(link.base):
            moved[link.asset] = moved[link.base] * link.rate_wad // WAD
    return CascadeRound(int(rows.size), repaid, seized, moved)


def liquidation_of(book: RiskBook, i: int, p: FloatArray, covered: FloatArray
                   ) -> tuple[int, int, float, float]:
    """(collateral column, debt column, debt repaid, collateral seized), in whole tokens, of
    liquidating account ``i`` once on its largest pair."""
    c = int(np.argmax(book.collateral[i] * p))
    d = int(np.argmax(book.debt[i] * p))
    bonus = book.bonuses[i, c] / 1e4 or 1.0
    share = covered[i] / max(float(book.debt[i] @ p), 1e-300)
    repay_base = min(share * book.debt[i, d] * p[d], book.collateral[i, c] * p[c] / bonus)
    return c, d, repay_base / p[d], repay_base * bonus / p[c]


def _sell(token_in: str, token_out: str, amount: int,
          pools: dict[tuple[str, str], tuple[int, int]], hubs: tuple[str, ...]) -> None:
    # The best route for the whole amount, then the pools moved by it.
    if amount <= 0:
        return
    try:
        quote = UniswapV2Quoter(pools, hubs).quote_exact_in(token_in, token_out, amount)
    except SwapRevert:
        return  # no pool takes it: the collateral is held, the DEX does not move
    for (a, b), (x, y) in zip(pairwise(quote.path), pairwise(quote.amounts), strict=True):
        key = sort_tokens(a, b)
        r0, r1 = pools[key]
        pools[key] = (r0 + x, r1 - y) if key[0] == a else (r0 - y, r1 + x)


def dex_price(asset: str, quote_asset: str, oracle: Mapping[str, int],
              pools: Mapping[tuple[str, str], tuple[int, int]], book: RiskBook) -> float | None:
    """The marginal DEX price of ``asset`` in oracle units: its pool against ``quote_asset``
    times the quote asset's oracle price (None without that pool)."""
    if asset == quote_asset:
        return None
    key = sort_tokens(asset, quote_asset)
    if key not in pools:
        return None
    dec = dict(zip(book.assets, book.decimals, strict=True))
    r0, r1 = pools[key]
    r_asset, r_quote = (r0, r1) if key[0] == asset else (r1, r0)
    if r_asset <= 0:
        return None
    return float((r_quote / 10 ** dec[quote_asset]) / (r_asset / 10 ** dec[asset])
                 * oracle[quote_asset])

