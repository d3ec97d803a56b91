"""One pass of the keeper (``keeper run --once``): the daemon's work, once, in order."""

from __future__ import annotations

import asyncio

from keeper.app import steps
from keeper.app.root import Keeper
from keeper.exec.executor import Execution
from keeper.pipeline.scan import HealthScanner


async def run_once(keeper: Keeper, *, max_rounds: int | None = None) -> list[Execution]:
    """Sync, scan, and liquidate every liquidatable account once; re-sync between sends so
    each plan sees the state the previous liquidation left.

    Every candidate is covered: each round takes one account never tried before, so the pass
    ends once all of them are done (``max_rounds`` caps it only when given). Rounds whose
    book did not move reuse the last scan instead of scanning again (a dry run, or a string
    of rejections, sends nothing that would change it)."""
    done: set[str] = set()
    results: list[Execution] = []
    scanned_at: int | None = None
    todo: list[str] = []
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        await keeper.sync.catch_up()
        book = keeper.sync.book
        if scanned_at != book.block_number or not todo:
            scanner = await asyncio.to_thread(HealthScanner, book)
            found = await steps.candidates(keeper, scanner)
            scanned_at = book.block_number
            todo = [c.user for c in found if c.user not in done]
            by_user = {c.user: c for c in found}
        todo = [u for u in todo if u not in done]
        if not todo:
            break
        candidate = by_user[todo[0]]
        done.add(candidate.user)
        results.append(await steps.liquidate(keeper, candidate))
    return results
