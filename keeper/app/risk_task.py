"""The daemon's stress gauges: every ``[risk] refresh_blocks`` blocks, the debt a −10/−20/−30%
price drop would make liquidatable, and the bad debt it would leave, per asset and for the
volatile assets together (``keeper_risk_*`` in ``keeper.obs.metrics``).

The figures come from a snapshot of the book, computed in a worker thread: the event loop keeps
following heads and sending meanwhile. A failure is logged and tried again at the next refresh;
it never touches the circuit breaker (the gauges inform, they do not liquidate).
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

from keeper.app.risk import STABLE_BAND
from keeper.app.risk_analysis import stress_figures
from keeper.app.root import Keeper
from keeper.domain.risk_book import build_risk_book
from keeper.obs.logging import get_logger
from keeper.protocols.aave_v3.book import PositionBook

log = get_logger(__name__)


def figures_of(book: PositionBook, stables: tuple[str, ...], symbols: dict[str, str]
               ) -> list[tuple[str, str, float, float]]:
    """The gauges' figures for a (snapshot of the) book; CPU-bound."""
    market = book.market()
    risk_book = build_risk_book(market, {u: book.account(u) for u in book.users()})
    chosen = stables or tuple(a for a in risk_book.assets
                              if abs(market.prices.get(a, 0) / 1e8 - 1) <= STABLE_BAND)
    return stress_figures(risk_book, chosen, symbols)


class RiskGaugeTask:
    """Refreshes the stress gauges every ``every_blocks`` applied blocks."""

    def __init__(self, keeper: Keeper, every_blocks: int, poll: float) -> None:
        self.keeper = keeper
        self.every_blocks = every_blocks
        self.poll = poll
        self.refreshed_at = -1
        self.refreshes = 0
        self._stables = tuple(s.lower() for s in keeper.cfg.risk.stables)
        self._symbols = {a.lower(): s for a, s in keeper.target.symbols.items()}

    async def run(self, prepared: asyncio.Event) -> NoReturn:
        """Once the book is prepared: refresh at once, then every ``every_blocks`` blocks."""
        await prepared.wait()
        while True:
            block = self.keeper.sync.book.block_number
            if self.refreshed_at < 0 or block - self.refreshed_at >= self.every_blocks:
                await self.refresh()
            await asyncio.sleep(self.poll)

    async def refresh(self) -> None:
        """Compute and publish the gauges for the book as it is now."""
        book = self.keeper.sync.book
        block = book.block_number
        try:
            snapshot = book.snapshot()  # on the loop: no block is applied mid-copy
            rows = await asyncio.to_thread(figures_of, snapshot, self._stables, self._symbols)
        except Exception as exc:  # a task boundary: log, and try again at the next refresh
            log.warning("risk_gauges_failed", block=block, error=f"{type(exc).__name__}: {exc}")
            self.refreshed_at = block
            return
        metrics = self.keeper.metrics
        for asset, shock, liquidatable, bad in rows:
            metrics.risk_liquidatable_debt_usd.labels(asset=asset, shock=shock).set(liquidatable)
            metrics.risk_bad_debt_usd.labels(asset=asset, shock=shock).set(bad)
        metrics.risk_block.set(block)
        self.refreshed_at = block
        self.refreshes += 1
        log.info("risk_gauges_refreshed", block=block, series=len(rows))
