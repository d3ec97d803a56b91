"""eth_getLogs in chunks against real anvil: every log once, in order, also when a (wrapped)
node refuses large answers; and a live logs subscription."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from keeper.chain.logs import get_block_logs, get_logs, subscribe_logs
from keeper.chain.rpc import HttpRpc
from keeper.chain.types import Log
from keeper.chain.ws import WsRpc
from keeper.devnet.anvil import Anvil
from keeper.errors import RpcResponseError

pytestmark = pytest.mark.integration

# LOG1(topic = calldata[0:32], data = calldata[32:64]), hand-assembled:
# CALLDATACOPY(0, 32, 32); PUSH1 0 CALLDATALOAD; LOG1(0, 32, topic); STOP
EMITTER_CODE = "0x6020602060003760003560206000a100"
EMITTER_A = "0x" + "a1" * 20
EMITTER_B = "0x" + "b2" * 20
TOPIC_X = "0x" + "11" * 32
TOPIC_Y = "0x" + "22" * 32
PER_BLOCK = [3, 0, 1, 4, 2, 0, 0, 5, 1, 2, 0, 3, 1, 0, 4]


def calldata(topic: str, value: int) -> str:
    return topic + f"{value:064x}"


class Capped:
    """Passes calls through, but refuses an eth_getLogs answer of more than ``cap`` logs."""

    def __init__(self, inner: HttpRpc, cap: int) -> None:
        self.inner, self.cap, self.refused = inner, cap, 0

    async def call(self, method: str, params: Sequence[Any] = (), *, timeout: float | None = None) -> Any:
        result = await self.inner.call(method, params, timeout=timeout)
        if method == "eth_getLogs" and len(result) > self.cap:
            self.refused += 1
            raise RpcResponseError(method, -32005, f"query returned more than {self.cap} results")
        return result

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, timeout: float | None = None,
                    return_exceptions: bool = False) -> list[Any]:
        return await self.inner.batch(calls, timeout=timeout, return_exceptions=return_exceptions)


async def emit_history(rpc: HttpRpc) -> int:
    """Mine PER_BLOCK[i] emitting transactions into block i+1; return the last block number."""
    for addr in (EMITTER_A, EMITTER_B):
        await rpc.call("anvil_setCode", [addr, EMITTER_CODE])
    sender = (await rpc.call("eth_accounts"))[0]
    await rpc.call("evm_setAutomine", [False])
    value = 0
    for count in PER_BLOCK:
        for i in range(count):
            value += 1
            to = EMITTER_A if i % 3 else EMITTER_B
            topic = TOPIC_X if value % 2 else TOPIC_Y
            await rpc.call("eth_sendTransaction", [{"from": sender, "to": to, "data": calldata(topic, value), "gas": "0x20000"}])
        await rpc.call("anvil_mine", ["0x1"])
    await rpc.call("evm_setAutomine", [True])
    return int(await rpc.call("eth_blockNumber"), 16)


def keys(logs: Sequence[Log]) -> list[tuple[int, int]]:
    return [lg.key for lg in logs]


async def test_get_logs_in_chunks_returns_every_log_once(anvil: Anvil) -> None:
    async with HttpRpc(anvil.url) as rpc:
        tip = await emit_history(rpc)
        everything = await get_logs(rpc, None, None, 0, tip, chunk=10_000)
        assert len(everything) == sum(PER_BLOCK)
        assert {lg.address for lg in everything} == {EMITTER_A, EMITTER_B}
        for chunk in (1, 2, 3, 7):
            assert await get_logs(rpc, None, None, 0, tip, chunk=chunk) == everything
        only_a_x = await get_logs(rpc, [EMITTER_A], [TOPIC_X], 0, tip, chunk=4)
        assert only_a_x == [lg for lg in everything if lg.address == EMITTER_A and lg.topics == (TOPIC_X,)]
        assert keys(everything) == sorted(keys(everything))
        assert int(everything[-1].data, 16) == sum(PER_BLOCK)


async def test_adaptive_split_when_the_node_refuses(anvil: Anvil) -> None:
    async with HttpRpc(anvil.url) as rpc:
        tip = await emit_history(rpc)
        everything = await get_logs(rpc, None, None, 0, tip)
        capped = Capped(rpc, cap=5)
        assert await get_logs(capped, None, None, 0, tip, chunk=1_000) == everything
        assert capped.refused > 0
        one_block = everything[0].block_hash
        assert await get_block_logs(rpc, one_block, None, None) == [
            lg for lg in everything if lg.block_hash == one_block]


async def test_logs_subscription_delivers_typed_logs(anvil: Anvil) -> None:
    async with HttpRpc(anvil.url) as rpc, WsRpc(anvil.ws_url) as ws:
        await rpc.call("anvil_setCode", [EMITTER_A, EMITTER_CODE])
        sender = (await rpc.call("eth_accounts"))[0]
        logs = subscribe_logs(ws, EMITTER_A, [TOPIC_Y])
        first = asyncio.ensure_future(anext(logs))
        await asyncio.sleep(0.1)  # let the subscription reach the node
        for topic, value in ((TOPIC_X, 1), (TOPIC_Y, 2)):
            await rpc.call("eth_sendTransaction", [{"from": sender, "to": EMITTER_A, "data": calldata(topic, value)}])
        got = await asyncio.wait_for(first, 5)
        assert isinstance(got, Log) and got.topics == (TOPIC_Y,) and int(got.data, 16) == 2
        await logs.aclose()
