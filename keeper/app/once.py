"""One pass of the keeper (``keeper run --once``): the daemon's work, once, in order."""

from __future__ import annotations

import asyncio

from keeper.app import steps
from keeper.app.root import Keeper
from keeper.exec.executor import Execution
from keeper.pipeline.scan import HealthScanner


async def run_once(keeper: Keeper, *, max_rounds: int = 1000) -> list[Execution]:
    """Sync, scan, and liquidate every liquidatable account once; re-sync between sends so
    each plan sees the state the previous liquidation left."""
    done: set[str] = set()
    results: list[Execution] = []
    for _ in range(max_rounds):
        await keeper.sync.catch_up()
        scanner = await asyncio.to_thread(HealthScanner, keeper.sync.book)
        todo = [c for c in await steps.candidates(keeper, scanner) if c.user not in done]
        if not todo:
            break
        candidate = todo[0]
        done.add(candidate.user)
        results.append(await steps.liquidate(keeper, candidate))
    return results
