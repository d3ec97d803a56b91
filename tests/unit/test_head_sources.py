"""The WebSocket head source watched for silence: heads come from polling while the
subscription is quiet with its connection up, and from the subscription again once it speaks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, cast

import pytest

from keeper.chain.head_sources import watched_ws_heads
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import Head
from keeper.chain.ws import WsRpc
from keeper.errors import RpcError


def block(n: int, branch: int = 0) -> dict[str, Any]:
    """Block ``n``; another ``branch`` gives it another hash (a chain after a restore)."""
    return {"number": hex(n), "hash": "0x" + f"{branch:04x}{n:060x}",
            "parentHash": "0x" + f"{branch:04x}{n - 1:060x}",
            "timestamp": hex(1_700_000_000 + n)}


class Node:
    """A chain of ``tip`` blocks; ``push`` feeds the subscription, ``call`` answers polls."""

    def __init__(self) -> None:
        self.tip = 1
        self.branch = 0
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
        return block(self.tip, self.branch)

    def mine(self, pushed: bool) -> None:
        self.tip += 1
        if pushed:
            self.notes.put_nowait(block(self.tip, self.branch))


class Heads:
    """What ``watched_ws_heads`` yields from ``node``, and a wait for a condition on it (a
    loaded machine delays the consumer)."""

    def __init__(self, node: Node, *, silence: float, poll_interval: float) -> None:
        self.got: list[Head] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._consume(node, silence, poll_interval))

    async def _consume(self, node: Node, silence: float, poll_interval: float) -> None:
        async for head in watched_ws_heads(cast(WsRpc, node), cast(JsonRpc, node),
                                           silence=silence, poll_interval=poll_interval):
            assert isinstance(head, Head)
            self.got.append(head)
            self._arrived.set()

    @property
    def numbers(self) -> list[int]:
        return [h.number for h in self.got]

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(5.0):
            while not check():
                self._arrived.clear()
                await self._arrived.wait()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_a_silent_subscription_is_stood_in_for_by_polling() -> None:
    node = Node()
    # Silence of 1 s: a consumer a loaded machine delays for a few hundred ms must not take a
    # lively subscription for a silent one.
    heads = Heads(node, silence=1.0, poll_interval=0.05)
    try:
        for n in range(2, 7):  # a lively subscription: no poll at all
            node.mine(pushed=True)
            await heads.until(lambda n=n: heads.numbers[-1:] == [n])  # type: ignore[misc]
        assert heads.numbers == [2, 3, 4, 5, 6] and node.polls == 0
        node.mine(pushed=False)  # the node stops feeding the subscription
        node.mine(pushed=False)
        await heads.until(lambda: heads.numbers[-1:] == [8])  # found by polling, once silent
        assert node.polls >= 1
        node.mine(pushed=True)  # the subscription speaks again: polling stops
        await heads.until(lambda: heads.numbers[-1:] == [9])
        polls = node.polls
        node.mine(pushed=True)
        await heads.until(lambda: heads.numbers[-1:] == [10])
        await asyncio.sleep(0.2)  # a poll would come within 0.05 s
        assert heads.numbers[-2:] == [9, 10] and node.polls == polls
        assert heads.numbers == sorted(set(heads.numbers))  # nothing yielded twice
    finally:
        await heads.stop()


async def test_a_lower_head_after_a_restore_is_polled_while_the_subscription_is_silent() -> None:
    # The node goes back to an older state and its subscription says nothing: the poll yields
    # the restored chain's head though its number is below the last one yielded (the follower
    # finds the fork from it), and then the same head only once.
    node = Node()
    for _ in range(5):
        node.mine(pushed=True)  # 2..6 through the subscription
    heads = Heads(node, silence=0.1, poll_interval=0.02)
    try:
        await heads.until(lambda: len(heads.got) == 5)
        node.tip, node.branch = 3, 1  # restored: 3 again, on another branch, and silence
        await heads.until(lambda: heads.numbers[-1] == 3)
        assert (heads.got[-1].number, heads.got[-1].hash) == (3, block(3, 1)["hash"])
        await asyncio.sleep(0.2)  # several polls of the same head
        assert heads.numbers == [2, 3, 4, 5, 6, 3]
    finally:
        await heads.stop()


class CancelledUnder(Node):
    """A subscription that gives one head, then ends by a CancelledError of its own (a
    library's future cancelled under it), not by its consumer's cancel."""

    async def __anext__(self) -> dict[str, Any]:
        if self.tip > 1:
            raise asyncio.CancelledError
        self.tip += 1
        return block(self.tip)


async def test_a_subscription_cancelled_from_under_it_is_an_error_at_once() -> None:
    # As a CancelledError it ended the pump in silence: heads then came only from polling,
    # one silence late each, on a subscription never made again. The consumer raises at once
    # (the sync's supervisor then subscribes anew).
    node = CancelledUnder()
    got: list[int] = []
    with pytest.raises(RpcError, match="cancelled under it"):
        async with asyncio.timeout(2.0):
            async for head in watched_ws_heads(cast(WsRpc, node), cast(JsonRpc, node),
                                               silence=30.0, poll_interval=30.0):
                got.append(head.number)
    assert got == [2] and node.polls == 0
