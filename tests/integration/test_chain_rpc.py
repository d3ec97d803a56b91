"""HTTP transport, retries and failover against a real anvil, a dead port and a silent server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from keeper.chain.pool import RpcPool
from keeper.chain.retry import RetryingRpc, RetryPolicy
from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil, free_port
from keeper.errors import ExecutionReverted, RpcError, RpcTimeout

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, initial=0.01, max_wait=0.05, total=2.0)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers: the worst kind of dead endpoint."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_batch_and_revert(anvil: Anvil) -> None:
    async with HttpRpc(anvil.url) as rpc:
        chain_id, number, block = await rpc.batch(
            [("eth_chainId", []), ("eth_blockNumber", []), ("eth_getBlockByNumber", ["0x0", False])]
        )
        assert int(chain_id, 16) == 31337 and number == "0x0" and block["number"] == "0x0"
        # A contract that always reverts: PUSH0 PUSH0 REVERT.
        target = "0x" + "c0" * 20
        await rpc.call("anvil_setCode", [target, "0x5f5ffd"])
        with pytest.raises(ExecutionReverted):
            await rpc.call("eth_call", [{"to": target, "data": "0x"}, "latest"])


async def test_dead_endpoints_time_out_fast_then_fail_over(anvil: Anvil) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with silent_server() as silent:
        pool = RpcPool([silent, dead, anvil.url], timeout=0.2, cooldown=30, retry=FAST)
        async with pool:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await pool.call("eth_chainId") == hex(31337)
            assert loop.time() - t0 < 1.0  # one 0.2 s timeout, one refused connection
            assert pool.current.rpc is pool.endpoints[2].rpc
            t0 = loop.time()
            assert await pool.call("eth_blockNumber") == "0x0"
            assert loop.time() - t0 < 0.1  # the dead ones are cooling down: straight to anvil


async def test_a_write_to_a_dead_endpoint_fails_once_and_is_not_resent(anvil: Anvil) -> None:
    async with (
        silent_server() as silent,
        RpcPool([silent, anvil.url], timeout=0.2, retry=FAST) as pool,
        HttpRpc(anvil.url) as direct,
    ):
        accounts = await direct.call("eth_accounts")
        tx = {"from": accounts[0], "to": accounts[1], "value": "0x1"}
        with pytest.raises(RpcTimeout):
            await pool.call("eth_sendTransaction", [tx])
        # Anvil never saw it: nothing was mined and the nonce did not move.
        assert await pool.call("eth_getTransactionCount", [accounts[0], "latest"]) == "0x0"


async def test_retrying_a_dead_single_endpoint_is_bounded() -> None:
    rpc = HttpRpc(f"http://127.0.0.1:{free_port()}", timeout=0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(RpcError):
        await RetryingRpc(rpc, FAST).call("eth_blockNumber")
    assert loop.time() - t0 < 1.0
    await rpc.close()
