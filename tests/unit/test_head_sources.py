"""The WebSocket head source watched for silence: heads come from polling while the
subscription is quiet with its connection up, and from the subscription again once it speaks."""

from __future__ import annotations

import asyncio
import contextlib
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

    async def consume() -> None:
        async for head in watched_ws_heads(cast(WsRpc, node), cast(JsonRpc, node),
                                           silence=0.3, poll_interval=0.05):
            assert isinstance(head, Head)
            got.append(head.number)

    task = asyncio.create_task(consume())
    try:
        for _ in range(5):  # a lively subscription: no poll at all
            node.mine(pushed=True)
            await asyncio.sleep(0.05)
        assert got == [2, 3, 4, 5, 6] and node.polls == 0
        node.mine(pushed=False)  # the node stops feeding the subscription
        node.mine(pushed=False)
        await asyncio.sleep(0.45)
        assert got[-1] == 8 and node.polls >= 2  # found by polling, once silence was over
        node.mine(pushed=True)  # the subscription speaks again: polling stops
        await asyncio.sleep(0.05)
        polls = node.polls
        node.mine(pushed=True)
        await asyncio.sleep(0.2)
        assert got[-2:] == [9, 10] and node.polls == polls
        assert got == sorted(set(got))  # nothing yielded twice
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
