"""The WebSocket head source watched for silence: heads come from polling while the
subscription is quiet with its connection up, and from the subscription again once it speaks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, cast

from keeper.chain.head_sources import watched_ws_heads
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import Head
from keeper.chain.ws import WsRpc


def block(n: int) -> dict[str, Any]:
    return {"number": hex(n), "hash": "0x" + f"{n:064x}", "parentHash": "0x" + f"{n - 1:064x}",
            "timestamp": hex(1_700_000_000 + n)}


class Node:
    """A chain of ``tip`` blocks; ``push`` feeds the subscription, ``call`` answers polls."""

    def __init__(self) -> None:
        self.tip = 1
        self.polls = 0
        self.notes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    # the WsRpc side
    async def subscribe(self, kind: str) -> Node:
        assert kind == "newHeads"
        return self

    def __aiter__(self) -> Node:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self.notes.get()

    async def unsubscribe(self) -> None:
        return None

    # the HTTP side
    async def call(self, method: str, params: Any = (), **_: Any) -> dict[str, Any]:
        assert method == "eth_getBlockByNumber" and params[0] == "latest"
        self.polls += 1
        return block(self.tip)

    def mine(self, pushed: bool) -> None:
        self.tip += 1
        if pushed:
            self.notes.put_nowait(block(self.tip))


async def test_a_silent_subscription_is_stood_in_for_by_polling() -> None:
    node = Node()
    got: list[int] = []
    arrived = asyncio.Event()

    async def until(check: Callable[[], bool]) -> None:
        """Wait for heads until ``check()`` holds (a loaded machine delays the consumer)."""
        async with asyncio.timeout(5.0):
            while not check():
                arrived.clear()
                await arrived.wait()

    async def consume() -> None:
        # Silence of 1 s: a consumer a loaded machine delays for a few hundred ms must not
        # take a lively subscription for a silent one.
        async for head in watched_ws_heads(cast(WsRpc, node), cast(JsonRpc, node),
                                           silence=1.0, poll_interval=0.05):
            assert isinstance(head, Head)
            got.append(head.number)
            arrived.set()

    task = asyncio.create_task(consume())
    try:
        for n in range(2, 7):  # a lively subscription: no poll at all
            node.mine(pushed=True)
            await until(lambda n=n: got[-1:] == [n])  # type: ignore[misc]
        assert got == [2, 3, 4, 5, 6] and node.polls == 0
        node.mine(pushed=False)  # the node stops feeding the subscription
        node.mine(pushed=False)
        await until(lambda: got[-1:] == [8])  # found by polling, once silence was over
        assert node.polls >= 1
        node.mine(pushed=True)  # the subscription speaks again: polling stops
        await until(lambda: got[-1:] == [9])
        polls = node.polls
        node.mine(pushed=True)
        await until(lambda: got[-1:] == [10])
        await asyncio.sleep(0.2)  # a poll would come within 0.05 s
        assert got[-2:] == [9, 10] and node.polls == polls
        assert got == sorted(set(got))  # nothing yielded twice
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
