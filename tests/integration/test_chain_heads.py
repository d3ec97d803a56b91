"""Heads over WebSocket and HTTP polling against real anvil: order, reconnect, backfill, reorg."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from keeper.chain.heads import HeadFollower, follow_heads
from keeper.chain.rpc import HttpRpc
from keeper.chain.subscription import ReconnectPolicy
from keeper.chain.types import ChainEvent, Head, Reorg
from keeper.chain.ws import WsRpc
from keeper.devnet.anvil import Anvil, AnvilOptions

pytestmark = pytest.mark.integration


async def take(follower: HeadFollower, n: int, wait: float = 5.0) -> list[ChainEvent]:
    it = aiter(follower)
    return [await asyncio.wait_for(anext(it), wait) for _ in range(n)]


def numbers(events: list[ChainEvent]) -> list[int]:
    return [e.number for e in events if isinstance(e, Head)]


async def test_ws_new_heads_in_order(anvil: Anvil) -> None:
    async with HttpRpc(anvil.url) as rpc, WsRpc(anvil.ws_url) as ws:
        follower = follow_heads(rpc, ws=ws)
        first = asyncio.create_task(take(follower, 1))
        await asyncio.sleep(0.1)  # let the subscription start before mining
        await rpc.call("anvil_mine", ["0x1"])
        got = await first
        await rpc.call("anvil_mine", ["0x9"])
        got += await take(follower, 9)
        assert numbers(got) == list(range(1, 11))
        heads = [e for e in got if isinstance(e, Head)]
        assert all(b.parent_hash == a.hash for a, b in itertools.pairwise(heads))
        assert heads[0].base_fee is not None and heads[0].timestamp > 0
        await follower.aclose()


async def test_polling_sees_the_same_heads_and_backfills_slow_polls(anvil: Anvil) -> None:
    async with HttpRpc(anvil.url) as rpc, WsRpc(anvil.ws_url) as ws:
        await rpc.call("anvil_mine", ["0x2"])
        polled = follow_heads(rpc, poll_interval=0.05, start=1)
        streamed = follow_heads(rpc, ws=ws, start=1)
        assert numbers(await take(polled, 2)) == [1, 2]
        assert numbers(await take(streamed, 2)) == [1, 2]
        await rpc.call("anvil_mine", ["0x6"])  # one poll sees only 8: 3..7 are backfilled
        by_poll, by_ws = await take(polled, 6), await take(streamed, 6)
        assert numbers(by_poll) == list(range(3, 9))
        assert by_poll == by_ws
        await polled.aclose()
        await streamed.aclose()


@pytest.mark.parametrize("transport", ["ws", "poll"])
async def test_anvil_reorg_is_detected_with_its_common_ancestor(anvil: Anvil, transport: str) -> None:
    async with HttpRpc(anvil.url) as rpc, WsRpc(anvil.ws_url) as ws:
        await rpc.call("anvil_mine", ["0x5"])
        follower = follow_heads(rpc, ws=ws if transport == "ws" else None, poll_interval=0.05, start=0)
        before = await take(follower, 6)
        assert numbers(before) == list(range(6))
        await rpc.call("anvil_reorg", [3, []])
        await rpc.call("anvil_mine", ["0x1"])
        reorg, *after = await take(follower, 5)
        assert isinstance(reorg, Reorg)
        assert reorg.depth == 3
        assert reorg.common_ancestor == before[2]
        assert reorg.old_tip == before[5]
        assert numbers(after) == [3, 4, 5, 6]
        canonical = [await rpc.call("eth_getBlockByNumber", [hex(n), False]) for n in (3, 4, 5, 6)]
        assert [h.hash for h in after if isinstance(h, Head)] == [b["hash"] for b in canonical]
        await follower.aclose()


async def test_ws_reconnects_after_restart_resubscribes_and_backfills(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    node = await Anvil.start(AnvilOptions(extra_args=("--dump-state", str(state))))
    port = node.port
    try:
        async with HttpRpc(node.url) as rpc, WsRpc(
            node.ws_url, reconnect=ReconnectPolicy(initial=0.02, max_wait=0.2)
        ) as ws:
            await rpc.call("anvil_mine", ["0x3"])
            follower = follow_heads(rpc, ws=ws, start=1)
            assert numbers(await take(follower, 3)) == [1, 2, 3]
            await node.stop()  # dumps state (blocks and hashes) on the way out
            node = await Anvil.start(AnvilOptions(port=port, load_state=state))
            # Mine at once: some of these heads go out before the client is back.
            await rpc.call("anvil_mine", ["0x4"])
            after = await take(follower, 4)
            assert numbers(after) == [4, 5, 6, 7]
            assert ws.reconnects >= 1
            await rpc.call("anvil_mine", ["0x1"])  # and the new subscription delivers
            assert numbers(await take(follower, 1)) == [8]
            await follower.aclose()
    finally:
        await node.stop()
