"""WsRpc against an in-process aiohttp WebSocket server: id matching with answers out of order,
many calls in flight, timeouts, error objects, subscriptions and resubscribe after a drop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from keeper.chain.subscription import RESUBSCRIBED, ReconnectPolicy
from keeper.chain.ws import WsRpc
from keeper.errors import RpcError, RpcResponseError, RpcTimeout


class Server:
    """A scripted JSON-RPC node: ``echo`` answers after a random delay, ``ignore`` never,
    ``fail`` with an error object; ``eth_subscribe`` then ``push`` sends notifications."""

    def __init__(self) -> None:
        self.connections = 0
        self.subscribes: list[Any] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.garble_subscribes = 0  # answers to eth_subscribe cut short (no longer JSON)

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self.sockets.append(ws)
        tasks: set[asyncio.Task[None]] = set()
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            body = json.loads(msg.data)
            if isinstance(body, list):
                await ws.send_str(json.dumps([self.answer(r) for r in body]))
                continue
            task = asyncio.create_task(self.respond(ws, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return ws

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        if req["method"] == "fail":
            return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32000, "message": "nope"}}
        if req["method"] == "eth_subscribe":
            sub_id = f"0xsub{self.connections}{len(self.subscribes)}"
            self.subscribes.append((req["params"], sub_id))
            return {"jsonrpc": "2.0", "id": req["id"], "result": sub_id}
        return {"jsonrpc": "2.0", "id": req["id"], "result": req["params"]}

    async def respond(self, ws: web.WebSocketResponse, req: dict[str, Any]) -> None:
        if req["method"] == "ignore":
            return
        if req["method"] == "eth_subscribe" and self.garble_subscribes > 0:
            self.garble_subscribes -= 1
            await ws.send_str(json.dumps(self.answer(req))[:20])
            return
        if req["method"] == "echo":
            await asyncio.sleep(random.uniform(0, 0.02))
        await ws.send_str(json.dumps(self.answer(req)))

    async def push(self, value: int) -> None:
        """Send ``value`` on the newest subscription over the newest connection."""
        _, sub_id = self.subscribes[-1]
        note = {"jsonrpc": "2.0", "method": "eth_subscription",
                "params": {"subscription": sub_id, "result": value}}
        await self.sockets[-1].send_str(json.dumps(note))

    async def drop(self) -> None:
        await self.sockets[-1].close()


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    # Started inside the test rather than as a fixture: async fixtures run on the session loop,
    # and a server must live on the loop of the test that talks to it.
    srv = Server()
    app = web.Application()
    app.router.add_get("/", srv.handler)
    srv.runner = web.AppRunner(app)
    await srv.runner.setup()
    site = web.TCPSite(srv.runner, "127.0.0.1", 0)
    await site.start()
    host, port = srv.runner.addresses[0][:2]
    srv.url = f"ws://{host}:{port}/"
    try:
        yield srv
    finally:
        await srv.runner.cleanup()


async def test_answers_out_of_order_match_their_requests() -> None:
    async with serving() as server:
        await _test_answers_out_of_order_match_their_requests(server)


async def _test_answers_out_of_order_match_their_requests(server: Server) -> None:
    async with WsRpc(server.url) as ws:
        # Well past web3's 500-in-flight cap.
        results = await asyncio.gather(*(ws.call("echo", [i]) for i in range(2000)))
        assert results == [[i] for i in range(2000)]


async def test_timeout_error_object_and_batch() -> None:
    async with serving() as server:
        await _test_timeout_error_object_and_batch(server)


async def _test_timeout_error_object_and_batch(server: Server) -> None:
    async with WsRpc(server.url) as ws:
        with pytest.raises(RpcTimeout):
            await ws.call("ignore", timeout=0.05)
        with pytest.raises(RpcResponseError, match="nope"):
            await ws.call("fail")
        out = await ws.batch([("a", [1]), ("fail", []), ("b", [2])], return_exceptions=True)
        assert out[0] == [1] and isinstance(out[1], RpcResponseError) and out[2] == [2]
        with pytest.raises(RpcResponseError):
            await ws.batch([("a", [1]), ("fail", [])])
        # The connection still works after all of that.
        assert await ws.call("echo", ["ok"]) == ["ok"]


async def test_subscription_survives_a_dropped_connection() -> None:
    async with serving() as server:
        await _test_subscription_survives_a_dropped_connection(server)


async def _test_subscription_survives_a_dropped_connection(server: Server) -> None:
    async with WsRpc(server.url, reconnect=ReconnectPolicy(initial=0.01, max_wait=0.05)) as ws:
        sub = await ws.subscribe("newHeads")
        await server.push(1)
        assert await asyncio.wait_for(anext(sub), 2) == 1
        pending = asyncio.create_task(ws.call("ignore", timeout=5))
        await asyncio.sleep(0.01)
        await server.drop()
        with pytest.raises(RpcError):  # in flight when the connection dropped: fails, not hangs
            await pending
        assert await asyncio.wait_for(anext(sub), 2) is RESUBSCRIBED
        assert server.subscribes[-1][0] == ["newHeads"] and ws.reconnects == 1
        await server.push(2)
        assert await asyncio.wait_for(anext(sub), 2) == 2
        assert await ws.call("echo", [3]) == [3]
        await sub.unsubscribe()
        with pytest.raises(StopAsyncIteration):
            await anext(sub)


async def test_a_resubscription_whose_answer_is_lost_is_asked_again() -> None:
    """A reconnect's eth_subscribe answered with a garbled frame, on a connection that stays
    up: the client asks again rather than leave the subscription silent for good."""
    async with serving() as server, WsRpc(server.url, timeout=0.2,
                     reconnect=ReconnectPolicy(initial=0.01, max_wait=0.05)) as ws:
        sub = await ws.subscribe("newHeads")
        server.garble_subscribes = 2
        await server.drop()
        assert await asyncio.wait_for(anext(sub), 5) is RESUBSCRIBED
        assert server.connections == 2 and len(server.subscribes) == 4
        await server.push(7)
        assert await asyncio.wait_for(anext(sub), 2) == 7


async def test_connect_fails_fast_on_a_dead_url() -> None:
    with pytest.raises(RpcError):
        await WsRpc("ws://127.0.0.1:9/", connect_timeout=1).connect()


async def test_close_ends_subscriptions_and_refuses_calls() -> None:
    async with serving() as server:
        await _test_close_ends_subscriptions_and_refuses_calls(server)


async def _test_close_ends_subscriptions_and_refuses_calls(server: Server) -> None:
    ws = await WsRpc(server.url).connect()
    sub = await ws.subscribe("newHeads")
    await ws.close()
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    with pytest.raises(RpcError):
        await ws.call("echo", [1])
