"""The two steps every pass takes, shared by ``run_once`` and the daemon: find the confirmed
liquidatable accounts, and liquidate one of them."""

from __future__ import annotations

from keeper.app.root import Keeper
from keeper.exec.executor import Execution
from keeper.pipeline.scan import HealthScanner, LiquidatableAccount


async def candidates(keeper: Keeper, scanner: HealthScanner) -> list[LiquidatableAccount]:
    """Liquidatable accounts, confirmed on chain, best first."""
    found = await scanner.scan(keeper.rpc, keeper.contracts.pool,
                               chunk=keeper.cfg.scanner.confirm_batch_size,
                               multicall=keeper.contracts.multicall3)
    keeper.metrics.liquidatable.set(len(found))
    return [c for c in found if c.confirmed_on_chain]


async def liquidate(keeper: Keeper, candidate: LiquidatableAccount) -> Execution:
    """Plan, simulate and (unless a dry run) send the liquidation of ``candidate``."""
    assert keeper.executor is not None
    book = keeper.sync.book
    return await keeper.executor.handle(candidate.user, book.account(candidate.user),
                                        book.market())
