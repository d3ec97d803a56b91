"""A warning, with where the chain-following tasks wait, when the book or the scan stops
keeping up with a node that answers.

A follower stuck at an ``await`` is not an error: nothing raises, the supervisor sees no
failure, and the keeper goes on planning on a book that no longer moves (a fault test's run
under 20% error replies: the book stopped at one block while the chain went on for 17 s,
every re-plan refused by its simulation on the stale pools). ``/readyz`` turns unready; this
says which stage stopped and where its tasks are waiting (their stacks), once per episode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from keeper.obs.logging import get_logger

log = get_logger(__name__)

STALL_BLOCKS = 3
"""Blocks the node's head may be ahead of a stage before its silence counts."""
STALL_SECONDS = 10.0
"""Seconds a stage may go without progress while behind, before the warning."""
FOLLOWING_TASKS = ("sync", "scan", "head source", "head batches", "ws heads")
"""The tasks that carry blocks from the node to the scan (``asyncio.Task`` names)."""


def task_stacks(names: Iterable[str] = FOLLOWING_TASKS, limit: int = 8) -> dict[str, list[str]]:
    """Where each running task named in ``names`` waits: the innermost ``limit`` frames of its
    chain of awaits, outermost first, as ``file:line function``."""
    wanted = set(names)
    stacks: dict[str, list[str]] = {}
    for task in asyncio.all_tasks():
        name = task.get_name()
        if name in wanted:
            key = name if name not in stacks else f"{name} ({id(task):x})"
            stacks[key] = _awaits(task.get_coro())[-limit:]
    return stacks


def _awaits(coro: object) -> list[str]:
    """The frames of ``coro`` and of what it awaits, down to the innermost. (``Task.get_stack``
    gives a suspended coroutine's own frame only.) The walk ends at a future, or where an
    ``async for`` awaits an async generator's step (which does not say whose)."""
    frames: list[str] = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            where = frame.f_code.co_filename.rsplit("/", 2)[-1]
            frames.append(f"{where}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


class _Stage:
    """One stage's progress: the last count seen, and since when it has not moved."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count: int | None = None
        self.since = 0.0
        self.warned = False

    def observe(self, count: int, behind: int, now: float) -> bool:
        """Whether the stage has just been stuck long enough to warn (once an episode)."""
        if count != self.count or behind < STALL_BLOCKS:
            self.count, self.since, self.warned = count, now, False
            return False
        if self.warned or now - self.since < STALL_SECONDS:
            return False
        self.warned = True
        return True


class LagWatch:
    """Fed on every head read: the node's head, the book's block and blocks applied, the last
    scan's block and scans finished."""

    def __init__(self) -> None:
        self.sync = _Stage("sync")
        self.scan = _Stage("scan")

    def observe(self, now: float, head: int | None, book_block: int, applied: int,
                scanned_block: int | None, scans: int) -> list[str]:
        """The stages found stuck on this read (each logged with the tasks' stacks)."""
        if head is None:
            return []
        stuck = [stage for stage, count, behind in (
            (self.sync, applied, head - book_block),
            (self.scan, scans, None if scanned_block is None else book_block - scanned_block),
        ) if behind is not None and stage.observe(count, behind, now)]
        for stage in stuck:
            log.warning("chain_following_stalled", stage=stage.name, head=head,
                        book_block=book_block, scanned_block=scanned_block,
                        still_for_s=round(now - stage.since, 1), tasks=task_stacks())
        return [stage.name for stage in stuck]
