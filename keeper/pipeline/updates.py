"""Who hears of each block the sync applies (or rolls back): queues and callbacks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from keeper.chain.types import Head
from keeper.protocols.aave_v3.book import BlockUpdate


class UpdateFeed:
    """Fans every ``BlockUpdate`` out to the queues and callbacks that asked for it."""

    def __init__(self) -> None:
        self._subscribers: list[asyncio.Queue[BlockUpdate]] = []
        self._callbacks: list[Callable[[BlockUpdate], None]] = []
        self._arrivals: list[Callable[[Head], None]] = []

    def subscribe(self) -> asyncio.Queue[BlockUpdate]:
        """A queue that receives every ``BlockUpdate`` from now on (unbounded: drain it)."""
        q: asyncio.Queue[BlockUpdate] = asyncio.Queue()
        self._subscribers.append(q)
        return q

    def unsubscribe(self, queue: asyncio.Queue[BlockUpdate]) -> None:
        """Stop feeding a queue from ``subscribe``."""
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    def on_update(self, callback: Callable[[BlockUpdate], None]) -> None:
        """Call ``callback`` (synchronously, on the loop) after each applied block."""
        self._callbacks.append(callback)

    def on_head(self, callback: Callable[[Head], None]) -> None:
        """Call ``callback`` (synchronously, on the loop) with each head as it arrives, before
        its reads: a reader may start its own reads of the block meanwhile."""
        self._arrivals.append(callback)

    def _arriving(self, head: Head) -> None:
        for cb in self._arrivals:
            cb(head)

    def _publish(self, update: BlockUpdate) -> None:
        for q in self._subscribers:
            q.put_nowait(update)
        for cb in self._callbacks:
            cb(update)
