"""One ``eth_subscribe`` as an async iterator, and the reconnect policy of the WebSocket client.

``keeper.chain.ws.WsRpc`` owns the connection and pushes each notification into its
``Subscription``; after a reconnect it pushes ``RESUBSCRIBED`` so a consumer knows it may have
missed notifications, and ``END`` when the subscription is over.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final


class Resubscribed:
    """Marker yielded by a ``Subscription`` after a reconnect: notifications may be missing."""

    _instance: Resubscribed | None = None

    def __new__(cls) -> Resubscribed:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "RESUBSCRIBED"


RESUBSCRIBED: Final = Resubscribed()
END: Final = object()
"""Pushed into a subscription to end its iteration."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential backoff with full jitter between connection attempts, never giving up."""

    initial: float = 0.05
    max_wait: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based)."""
        return random.uniform(0, min(self.max_wait, self.initial * 2**attempt))


DEFAULT_RECONNECT = ReconnectPolicy()


class Subscription:
    """The notifications of one ``eth_subscribe``; iterate it with ``async for``.

    Yields each notification's ``result`` (raw JSON, typed by ``heads.py`` / ``logs.py``) and
    ``RESUBSCRIBED`` after a reconnect. Iteration ends when it is unsubscribed or the client
    closes; it raises if the node refuses to resubscribe.
    """

    def __init__(self, unsubscribe: Callable[[Subscription], Awaitable[None]],
                 params: tuple[Any, ...]) -> None:
        self._unsubscribe = unsubscribe
        self.params = params
        self.sub_id: str | None = None
        self.generation = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if item is END:
            self._queue.put_nowait(END)  # stay ended for any later reader
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def push(self, item: Any) -> None:
        self._queue.put_nowait(item)

    async def unsubscribe(self) -> None:
        """Stop the subscription on the node (best effort) and end the iteration."""
        await self._unsubscribe(self)
