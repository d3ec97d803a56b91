"""A head follower's events in batches: whatever is ready when the consumer asks.

A consumer that applies one block per round trip falls behind a chain that makes blocks
faster than that (an L2, a node catching up after an outage, our own liquidations mined one
per block on a devnet). ``head_batches`` runs the follower in its own task and hands the
consumer, each time it asks, every event that arrived meanwhile (at least one, at most
``limit``), so a backlog is applied in one step instead of one round trip per block.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable

from keeper.chain.types import Head, Reorg
from keeper.errors import RpcError

ChainEvent = Head | Reorg

_END = object()  # the follower is exhausted


async def head_batches(events: AsyncIterable[ChainEvent], *,
                       limit: int = 100) -> AsyncGenerator[list[ChainEvent], None]:
    """Batches of ``events`` in order; an error of the follower is raised here, after the
    events that came before it. Closing the iterator stops the follower's task."""
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except Exception as exc:  # handed to the consumer, which decides
            await queue.put(exc)
        except asyncio.CancelledError:
            # The consumer's own cancel (it is gone), or one from under the follower: then the
            # consumer would wait for an event that never comes; it gets an error instead.
            queue.put_nowait(RpcError("head batches: the follower was cancelled under it"))
            raise
        else:
            await queue.put(_END)

    task = asyncio.create_task(pump(), name="head batches")
    try:
        while True:
            items = [await queue.get()]
            while len(items) < limit and not queue.empty() and not _is_last(items[-1]):
                items.append(queue.get_nowait())
            batch = [i for i in items if isinstance(i, Head | Reorg)]
            if batch:
                yield batch
            if _is_last(items[-1]):
                if isinstance(items[-1], Exception):
                    raise items[-1]
                return
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _is_last(item: object) -> bool:
    return item is _END or isinstance(item, Exception)


def runs(batch: list[ChainEvent]) -> list[list[Head] | Reorg]:
    """``batch`` as runs of consecutive heads, split at each ``Reorg`` (kept in place)."""
    out: list[list[Head] | Reorg] = []
    for event in batch:
        if isinstance(event, Reorg):
            out.append(event)
        elif out and isinstance(out[-1], list) and out[-1][-1].number + 1 == event.number:
            out[-1].append(event)
        else:
            out.append([event])
    return out
