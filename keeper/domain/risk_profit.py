"""What liquidating a shocked market pays: seized collateral sold into the DEX, less the debt
repaid and the gas. Pure.

Each liquidatable account is taken on its largest (collateral, debt) pair, at the size the close
factor allows; the seized collateral is sold on a ``Quoter`` (exact integer pool math; Uniswap
V2 today, any venue with the same interface tomorrow) whose pools stand at the shocked oracle
prices with the depth they have now (``repriced_pairs``: the arbitrage that follows an oracle
move keeps each pool's ``k``). Each liquidation is quoted alone, as the first liquidator sees
it; the cascade (``keeper.domain.risk_cascade``) sells them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from keeper.domain.amm import PairReserves, SwapRevert
from keeper.domain.quote import Quoter
from keeper.domain.risk_book import FloatArray, RiskBook
from keeper.domain.risk_shock import Liquidations

QuoterFor = Callable[[Mapping[str, int]], Quoter]
"""The DEX as it would stand at these oracle prices (a V2 snapshot repriced, a V3 one, ...)."""


def repriced_pairs(reserves: PairReserves, prices: Mapping[str, int],
                   decimals: Mapping[str, int]) -> dict[tuple[str, str], tuple[int, int]]:
    """Each pair traded to the oracle ratio of its tokens with its ``k`` kept (pairs with an
    unpriced token are left as they are)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for (t0, t1), (r0, r1) in reserves.items():
        p0, p1 = prices.get(t0), prices.get(t1)
        if not p0 or not p1 or t0 not in decimals or t1 not in decimals or r0 <= 0 or r1 <= 0:
            out[(t0, t1)] = (r0, r1)
            continue
        # r1 / r0 = p0 / p1 × 10^(d1 − d0), with r0 × r1 = k.
        num, den = p0 * 10 ** decimals[t1], p1 * 10 ** decimals[t0]
        k = r0 * r1
        new0 = max(math.isqrt(k * den // num), 1)
        out[(t0, t1)] = (new0, max(k // new0, 1))
    return out


@dataclass(frozen=True, slots=True)
class ProfitSummary:
    """Liquidators' take over the accounts quoted (base units)."""

    profit: float
    """Sum of the positive net profits (a liquidator skips the others)."""
    profitable: int
    unprofitable: int
    profitable_debt: float
    """Debt covered by the profitable liquidations."""
    quoted_debt: float


def liquidators_profit(book: RiskBook, liq: Liquidations, prices: Mapping[str, int],
                       quoter: Quoter, *, gas_cost_base: float, limit: int = 2000
                       ) -> ProfitSummary:
    """Net profit of liquidating the ``limit`` largest liquidatable accounts, one at a time."""
    rows = np.flatnonzero(liq.liquidatable & (liq.covered > 0))
    rows = rows[np.argsort(-liq.covered[rows], kind="stable")][:limit]
    p = book.price_vector(prices)
    profit = profitable_debt = quoted = 0.0
    good = bad = 0
    for i in rows:
        net = _one(book, int(i), p, quoter, float(liq.covered[i]))
        quoted += float(liq.covered[i])
        if net is not None and net - gas_cost_base > 0:
            profit += net - gas_cost_base
            profitable_debt += float(liq.covered[i])
            good += 1
        else:
            bad += 1
    return ProfitSummary(profit, good, bad, profitable_debt, quoted)


def _one(book: RiskBook, i: int, p: FloatArray, quoter: Quoter, covered_base: float
         ) -> float | None:
    # The gross profit (base units) of liquidating account i on its largest pair, None when the
    # DEX cannot take the collateral.
    c = int(np.argmax(book.collateral[i] * p))
    d = int(np.argmax(book.debt[i] * p))
    if p[c] <= 0 or p[d] <= 0:
        return None
    bonus = book.bonuses[i, c] / 1e4 or 1.0
    # The Pool caps the repayment at the close factor's share of the *chosen* debt asset, and
    # at what the chosen collateral can pay for with its bonus.
    share = covered_base / max(float(book.debt[i] @ p), 1e-300)
    repay = min(share * book.debt[i, d] * p[d], book.collateral[i, c] * p[c] / bonus)
    seized_tokens = repay * bonus / p[c]
    if c == d:
        return float(repay * (bonus - 1))
    amount = int(seized_tokens * 10 ** book.decimals[c])
    if amount <= 0:
        return None
    try:
        out = quoter.quote_exact_in(book.assets[c], book.assets[d], amount).amount_out
    except SwapRevert:
        return None
    return float(out / 10 ** book.decimals[d] * p[d] - repay)
