"""The steps every pass takes, shared by ``run_once`` and the daemon: find the confirmed
liquidatable accounts, plan one of them, and liquidate it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from keeper.app.claims import send_claimed, standing_by
from keeper.app.root import Keeper
from keeper.domain.account import Market, UserAccount
from keeper.domain.plan import Plan, Rejection
from keeper.exec.executor import Execution
from keeper.pipeline.plan_round import PlanRound
from keeper.pipeline.scan import HealthScanner, LiquidatableAccount


@contextlib.asynccontextmanager
async def guard_observing(keeper: Keeper) -> AsyncIterator[asyncio.Task[object] | None]:
    """The oracle guard's observation of the book's block (None without a guard), started
    now and awaited by ``candidates`` after the book's math: its read (made as the block
    arrived, ``OracleGuard.read_early``) is waited for beside that math, not before it.
    When the caller's code raises first, the observation is still seen to its end."""
    guard = keeper.oracle_guard
    task: asyncio.Task[object] | None = None if guard is None else \
        asyncio.create_task(guard.check(keeper.sync.book))
    try:
        yield task
    finally:
        if task is not None:
            # Waited for, not cancelled: it may have taken a breaker reset request from its
            # file (applied once its read is in); its read's timeout bounds the wait.
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the caller raised its own, or took the result


async def candidates(keeper: Keeper, scanner: HealthScanner,
                     on_book: Callable[[list[LiquidatableAccount]], None] | None = None,
                     stale: Callable[[], bool] | None = None,
                     checked: Awaitable[object] | None = None) -> list[LiquidatableAccount]:
    """Liquidatable accounts, confirmed on chain, best first; less those the oracle guard
    holds (an asset they use as collateral or debt is halted). ``on_book`` hears the ones the
    book's exact math finds, less those the guard holds, before the chain confirms them;
    ``stale`` may cut the chain's confirmation short (``HealthScanner.scan``). ``checked``:
    the guard's observation of this block, started by ``guard_observing`` (else it is made
    here, before the scan)."""
    guard = keeper.oracle_guard
    if guard is not None and checked is None:
        # The guard observes every scanned block, candidates or not (its resume counts
        # blocks), before anything the book finds is released on this block's prices.
        await guard.check(keeper.sync.book)
    early = on_book if on_book is None or guard is None else \
        (lambda found: on_book(guard.release(keeper.sync.book, found)))
    # The guard's read (19-36 ms of a loaded node in the 10,000-borrower crash) is waited for
    # beside the book's math (10-40 ms there); the book's flags wait for it.
    found = await scanner.scan(keeper.rpc, keeper.contracts.pool,
                               chunk=keeper.cfg.scanner.confirm_batch_size,
                               multicall=keeper.contracts.multicall3, on_book=early,
                               stale=stale, ready=checked)
    keeper.metrics.liquidatable.set(len(found))
    confirmed = [c for c in found if c.confirmed_on_chain]
    if guard is None:
        return confirmed
    released = guard.release(keeper.sync.book, confirmed)
    if keeper.decisions is not None:
        book = keeper.sync.book
        free = {c.user for c in released}
        held = [c.user for c in confirmed if c.user not in free]
        market = book.market() if held else None
        keeper.decisions.held(book.block_number, {
            u: guard.holding(book.account(u), market) for u in held} if market else {})
    return released


async def liquidate(keeper: Keeper, candidate: LiquidatableAccount) -> Execution:
    """Plan ``candidate`` on the book's view (pipeline), then simulate and (unless a dry run)
    send the plan (exec)."""
    assert keeper.executor is not None and keeper.planner is not None
    if (standby := standing_by(keeper, candidate.user)) is not None:
        return standby
    detected = time.monotonic()
    book = keeper.sync.book
    market = book.market()
    plan = await keeper.planner.plan(candidate.user, book.account(candidate.user), market)
    if isinstance(plan, Rejection):
        return Execution(candidate.user, rejection=plan)
    return await send_claimed(
        keeper, await keeper.executor.prepare(plan, market, detected_at=detected), candidate.block)


async def plan(keeper: Keeper, user: str, market: Market, round_: PlanRound, *,
               account: UserAccount | None = None) -> Plan | Rejection:
    """Plan ``user`` on ``account`` (the book's, unless given) and ``market``, in ``round_``
    (the block's shared reads, and the pools and funding our earlier plans of the block
    leave)."""
    assert keeper.planner is not None
    if account is None:
        account = keeper.sync.book.account(user)
    return await keeper.planner.plan(user, account, market, round_=round_)
