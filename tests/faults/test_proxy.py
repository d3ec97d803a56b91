"""The fault proxy itself, against a real anvil: each fault does what it says, and only that.

These run in the ordinary suite (they pass on any keeper): the daemon's fault tests, marked
``faults``, trust the proxy because of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from keeper.errors import RpcError, RpcMalformedReply, RpcResponseError, RpcTimeout
from tests.faults.proxy import JUNK_KINDS, PASS, FaultProxy, Faults, wrong_type

# The proxy serves on the loop that started it: the fixture's (session) loop, so the tests too.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
async def proxy(anvil: Anvil) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(anvil.url, anvil.ws_url, seed=7) as p:
        yield p


async def test_passes_calls_and_batches_through(proxy: FaultProxy, anvil: Anvil) -> None:
    async with HttpRpc(proxy.url, timeout=5) as rpc, HttpRpc(anvil.url, timeout=5) as direct:
        assert await rpc.call("eth_chainId") == await direct.call("eth_chainId")
        got = await rpc.batch([("eth_blockNumber", []), ("eth_chainId", []),
                               ("eth_getBalance", ["0x" + "00" * 20, "latest"])])
        assert got == await direct.batch([("eth_blockNumber", []), ("eth_chainId", []),
                                          ("eth_getBalance", ["0x" + "00" * 20, "latest"])])
    assert proxy.counts["passed", "eth_chainId"] == 2
    assert proxy.total("error") == proxy.total("junk") == 0


async def test_error_replies_at_a_rate_per_method_with_spared_methods(proxy: FaultProxy) -> None:
    proxy.faults = Faults(error_rate=1.0, methods=frozenset({"eth_blockNumber", "eth_chainId"}),
                          spared=frozenset({"eth_chainId"}))
    async with HttpRpc(proxy.url, timeout=5) as rpc:
        with pytest.raises(RpcResponseError) as err:
            await rpc.call("eth_blockNumber")
        assert err.value.code == -32000
        assert await rpc.call("eth_chainId") == "0x7a69"  # spared
        assert await rpc.call("net_version") == "31337"  # not in ``methods``
        # In a batch only the faulted call fails; the others are answered by the node.
        got = await rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])],
                              return_exceptions=True)
        assert got[0] == "0x7a69" and isinstance(got[1], RpcResponseError)
        proxy.faults = Faults(error_rate=0.2)
        outcomes = await asyncio.gather(*(rpc.call("eth_chainId") for _ in range(400)),
                                        return_exceptions=True)
    failed = sum(isinstance(o, RpcResponseError) for o in outcomes)
    assert 40 <= failed <= 120, failed
    assert proxy.counts["error", "eth_blockNumber"] == 2
    assert proxy.counts["error", "eth_chainId"] == failed


async def test_the_same_seed_makes_the_same_faults(anvil: Anvil) -> None:
    async def run() -> list[bool]:
        async with FaultProxy(anvil.url, seed=3) as p, HttpRpc(p.url, timeout=5) as rpc:
            p.faults = Faults(error_rate=0.5)
            out = []
            for _ in range(40):
                try:
                    await rpc.call("eth_chainId")
                    out.append(True)
                except RpcResponseError:
                    out.append(False)
            return out

    first = await run()
    assert first == await run() and 5 < first.count(False) < 35


async def test_wrong_type_changes_the_type() -> None:
    for value in ("0x1a", "0x", None, [1], {"a": 1}, 5):
        for kind in JUNK_KINDS:
            assert type(wrong_type(value, kind)) is not type(value), (value, kind)
    assert wrong_type("0x1a", "int") == 26


async def raw_results(url: str, payload: object) -> object:
    """The ``result`` (or list of results) of a raw JSON-RPC request: the keeper's own client
    refuses wrong-typed results, so the proxy is judged on the wire."""
    async with aiohttp.ClientSession() as session, session.post(url, json=payload) as resp:
        body = await resp.json(content_type=None)
    return [item["result"] for item in body] if isinstance(body, list) else body["result"]


async def test_wrong_typed_replies(proxy: FaultProxy) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    batch = [{"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockByNumber",
              "params": ["latest", False]}]
    for kind, expected in (("int", int), ("null", type(None)), ("list", list), ("object", dict)):
        proxy.faults = Faults(junk_rate=1.0, junk_kinds=(kind,))
        assert type(await raw_results(proxy.url, call)) is expected, kind
        results = await raw_results(proxy.url, batch)
        assert isinstance(results, list)
        block = results[0]
        assert not isinstance(block, dict) or set(block) == {"result"}, kind
    proxy.faults = PASS
    assert isinstance(await raw_results(proxy.url, call), str)
    assert proxy.total("junk") == 8 and proxy.counts["junk:int", "eth_blockNumber"] == 1
    # And the keeper's client says so: a malformed reply, a transient RpcError.
    async with HttpRpc(proxy.url, timeout=5) as rpc:
        proxy.faults = Faults(junk_rate=1.0)
        with pytest.raises(RpcMalformedReply):
            await rpc.call("eth_blockNumber")
        got = await rpc.batch([("eth_getBlockByNumber", ["latest", False])],
                              return_exceptions=True)
        assert isinstance(got[0], RpcMalformedReply)
        proxy.faults = PASS


async def test_truncated_replies_are_not_json(proxy: FaultProxy) -> None:
    proxy.faults = Faults(truncate_rate=1.0)
    async with HttpRpc(proxy.url, timeout=5) as rpc:
        for _ in range(5):
            with pytest.raises(RpcError, match="invalid JSON"):
                await rpc.call("eth_getBlockByNumber", ["latest", True])
    assert proxy.counts["truncated", "eth_getBlockByNumber"] == 5


async def test_latency_and_blackhole(proxy: FaultProxy) -> None:
    async with HttpRpc(proxy.url, timeout=5) as rpc:
        proxy.faults = Faults(latency=0.3)
        t0 = time.monotonic()
        await rpc.call("eth_chainId")
        assert time.monotonic() - t0 >= 0.3
        proxy.faults = Faults(blackhole=True)
        t0 = time.monotonic()
        with pytest.raises(RpcTimeout):
            await rpc.call("eth_chainId", timeout=0.5)
        assert time.monotonic() - t0 < 1.5
        proxy.faults = PASS
        assert await rpc.call("eth_chainId") == "0x7a69"
    assert proxy.counts["blackholed", "*"] == 1


async def test_down_refuses_connections_and_up_serves_again(proxy: FaultProxy) -> None:
    async with HttpRpc(proxy.url, timeout=2) as rpc:
        assert await rpc.call("eth_chainId") == "0x7a69"  # a keep-alive connection is open
        await proxy.down()
        for _ in range(2):
            with pytest.raises(RpcError) as err:
                await rpc.call("eth_chainId")
            assert not isinstance(err.value, RpcTimeout)
        await proxy.up()
        assert await rpc.call("eth_chainId") == "0x7a69"


async def test_websocket_calls_subscriptions_and_drops(proxy: FaultProxy, anvil: Anvil) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(proxy.ws_url) as ws, \
            HttpRpc(anvil.url, timeout=5) as direct:
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                      "params": ["newHeads"]}))
        sub = json.loads((await ws.receive(timeout=5)).data)["result"]
        await direct.call("evm_mine")
        note = json.loads((await ws.receive(timeout=5)).data)
        assert note["method"] == "eth_subscription" and note["params"]["subscription"] == sub
        proxy.faults = Faults(junk_rate=1.0, junk_kinds=("int",))
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber"}))
        assert isinstance(json.loads((await ws.receive(timeout=5)).data)["result"], int)
        proxy.faults = Faults(error_rate=1.0)
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "eth_chainId"}))
        assert json.loads((await ws.receive(timeout=5)).data)["error"]["code"] == -32000
        proxy.faults = PASS
        await ws.send_str(json.dumps([{"jsonrpc": "2.0", "id": 4, "method": "eth_chainId"},
                                      {"jsonrpc": "2.0", "id": 5, "method": "net_version"}]))
        assert {r["id"] for r in json.loads((await ws.receive(timeout=5)).data)} == {4, 5}
        assert await proxy.drop_ws() == 1
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert proxy.counts["notified", "ws"] >= 1 and proxy.counts["ws_dropped", "*"] == 1
