"""A JSON-RPC / WebSocket fault proxy between a client (the daemon) and an upstream anvil.

It listens on 127.0.0.1 on a free port, forwards HTTP JSON-RPC (single calls and batches) and
WebSocket connections (calls and ``eth_subscribe`` notifications), and misbehaves on demand.
The fault mode is a plain object the test swaps at run time (``proxy.faults = Faults(...)``):

- ``error_rate``: that share of calls is answered, without reaching the node, with a JSON-RPC
  error object (code -32000), as a rate-limiting or overloaded provider does;
- ``junk_rate``: that share of calls reaches the node, but the reply's ``result`` is replaced
  by a well-formed value of the wrong type (an int for a hex string, null, a list, an object);
- ``truncate_rate``: that share of HTTP bodies / WS frames is cut short (no longer JSON);
- ``lost_logs_rate``: that share of ``eth_getLogs`` answers holding logs come back as ``[]``,
  as from a node behind a load balancer that has not processed the block yet;
- ``latency``: seconds added before each request is forwarded;
- ``blackhole``: requests are accepted and never answered (WS frames are swallowed);
- ``down()`` / ``up()``: the listener closes (connections refused, open ones dropped) and
  comes back on the same port; ``drop_ws()`` closes every open WebSocket.

``methods`` limits the per-call faults to those methods (None: every method) and ``spared``
exempts methods from them. Randomness comes from one seeded ``random.Random``; ``counts``
says what the proxy did (``counts["error", "eth_call"]``, ``counts["passed", "eth_call"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from keeper.devnet.anvil import free_port

JUNK_KINDS = ("int", "null", "list", "object")


@dataclass(frozen=True, slots=True)
class Faults:
    """One fault mode; the default passes everything through untouched."""

    error_rate: float = 0.0
    junk_rate: float = 0.0
    junk_kinds: tuple[str, ...] = JUNK_KINDS
    truncate_rate: float = 0.0
    lost_logs_rate: float = 0.0
    latency: float = 0.0
    blackhole: bool = False
    methods: frozenset[str] | None = None
    spared: frozenset[str] = field(default_factory=frozenset)

    def applies_to(self, method: str) -> bool:
        return method not in self.spared and (self.methods is None or method in self.methods)


PASS = Faults()


def wrong_type(result: Any, kind: str) -> Any:
    """A well-formed JSON value of another type than ``result``."""
    if kind == "int":
        if isinstance(result, str) and result.startswith("0x"):
            # A long hex (an eth_call's return data) as a number would be too long for JSON.
            return int(result[:66], 16) if len(result) > 2 else 0
        return 12345 if not isinstance(result, int) or isinstance(result, bool) else str(result)
    if kind == "null":
        return None if result is not None else "0x"
    if kind == "list":
        return [result] if not isinstance(result, list) else {"items": result}
    if kind == "object":
        return {"result": result} if not isinstance(result, dict) else [result]
    raise ValueError(f"unknown junk kind {kind!r}")


class FaultProxy:
    """``async with FaultProxy(http_url, ws_url, seed=1) as p:`` then point a client at
    ``p.url`` / ``p.ws_url`` and set ``p.faults``."""

    def __init__(self, upstream: str, upstream_ws: str | None = None, *, seed: int = 0,
                 port: int | None = None) -> None:
        self.upstream = upstream
        self.upstream_ws = upstream_ws or "ws" + upstream.removeprefix("http")
        self.faults = PASS
        self.rng = random.Random(seed)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.port = port or free_port()
        self.is_down = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def total(self, kind: str) -> int:
        """How many calls got fault ``kind`` ("error", "junk", "truncated", ...) so far."""
        return sum(n for (k, _), n in self.counts.items() if k == kind)

    # ---- life cycle ----------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/", self._ws_or_get)
        app.router.add_post("/", self._http)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await self.up()
        return self

    async def up(self) -> None:
        """Listen again on the same port (connections are accepted)."""
        assert self._runner is not None
        if self._site is None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()
        self.is_down = False

    async def down(self) -> None:
        """Stop listening and drop every open connection: clients get connection refused."""
        self.is_down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        await self.drop_ws()

    async def drop_ws(self) -> int:
        """Close every client WebSocket (their subscriptions die with them)."""
        sockets = list(self._sockets)
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        self.counts["ws_dropped", "*"] += len(sockets)
        return len(sockets)

    async def stop(self) -> None:
        self._closing.set()
        await self.drop_ws()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- HTTP ----------------------------------------------------------------------------
    async def _hold(self) -> None:
        """A blackhole: the request stays open until the proxy stops (the client times out)."""
        self.counts["blackholed", "*"] += 1
        await self._closing.wait()

    def _drop_connection(self, request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        self.counts["refused", "*"] += 1
        return web.Response(status=503)

    async def _http(self, request: web.Request) -> web.StreamResponse:
        if self.is_down:
            return self._drop_connection(request)
        faults = self.faults
        if faults.blackhole:
            await self._hold()
            return web.Response(status=503)
        if faults.latency:
            self.counts["delayed", "*"] += 1
            await asyncio.sleep(faults.latency)
        raw = await request.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        calls = payload if isinstance(payload, list) else [payload]
        if payload is None or not all(isinstance(c, dict) for c in calls):
            return web.Response(body=await self._forward_raw(raw), content_type="application/json")
        # Calls the proxy fails itself never reach the node; the rest go up in one request.
        errors = {i: self._error_reply(c) for i, c in enumerate(calls) if self._roll(c, "error")}
        forward = [c for i, c in enumerate(calls) if i not in errors]
        replies: dict[Any, Any] = {}
        if forward:
            got = json.loads(await self._forward_raw(json.dumps(
                forward if isinstance(payload, list) else forward[0]).encode()))
            for item in got if isinstance(got, list) else [got]:
                if isinstance(item, dict):
                    replies[json.dumps(item.get("id"))] = item
        out: list[Any] = []
        for i, c in enumerate(calls):
            item = errors.get(i) or replies.get(json.dumps(c.get("id")))
            if item is not None:
                out.append(self._maybe_junk(c, item))
        body = json.dumps(out if isinstance(payload, list) else (out[0] if out else None))
        return web.Response(body=self._maybe_truncate(body, calls), content_type="application/json")

    async def _forward_raw(self, raw: bytes) -> bytes:
        assert self._session is not None
        try:
            async with self._session.post(self.upstream, data=raw,
                                          headers={"Content-Type": "application/json"}) as resp:
                return await resp.read()
        except aiohttp.ClientError as exc:  # the node itself is gone: a gateway error
            self.counts["upstream_failed", "*"] += 1
            raise web.HTTPBadGateway(text=str(exc)) from exc

    def _roll(self, call: dict[str, Any], kind: str) -> bool:
        method = str(call.get("method"))
        rate = {"error": self.faults.error_rate, "junk": self.faults.junk_rate,
                "truncated": self.faults.truncate_rate, "lost": self.faults.lost_logs_rate}[kind]
        if rate <= 0 or not self.faults.applies_to(method):
            return False
        return self.rng.random() < rate

    def _error_reply(self, call: dict[str, Any]) -> dict[str, Any]:
        self.counts["error", str(call.get("method"))] += 1
        return {"jsonrpc": "2.0", "id": call.get("id"),
                "error": {"code": -32000, "message": "fault proxy: injected error (overloaded)"}}

    def _maybe_junk(self, call: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        method = str(call.get("method"))
        if method == "eth_getLogs" and reply.get("result") and self._roll(call, "lost"):
            self.counts["lost", method] += 1
            return {**reply, "result": []}
        if "result" not in reply or not self._roll(call, "junk"):
            self.counts["passed", method] += 1
            return reply
        kind = self.rng.choice(self.faults.junk_kinds)
        self.counts["junk", method] += 1
        self.counts["junk:" + kind, method] += 1
        return {**reply, "result": wrong_type(reply["result"], kind)}

    def _maybe_truncate(self, body: str, calls: list[Any]) -> bytes:
        data = body.encode()
        first = calls[0] if calls else {}
        if len(data) < 2 or not self._roll(first, "truncated"):
            return data
        self.counts["truncated", str(first.get("method"))] += 1
        return data[: self.rng.randrange(1, len(data))]

    # ---- WebSocket -----------------------------------------------------------------------
    async def _ws_or_get(self, request: web.Request) -> web.StreamResponse:
        if self.is_down:
            return self._drop_connection(request)
        ws = web.WebSocketResponse(max_msg_size=64 * 2**20)
        if not ws.can_prepare(request).ok:
            return web.Response(status=405)
        await ws.prepare(request)
        assert self._session is not None
        self._sockets.add(ws)
        self.counts["ws_opened", "*"] += 1
        try:
            async with self._session.ws_connect(self.upstream_ws, max_msg_size=64 * 2**20) as up:
                methods: dict[str, str] = {}  # json(id) -> method, for replies to calls
                pumps = [asyncio.create_task(self._ws_up(ws, up, methods)),
                         asyncio.create_task(self._ws_down(up, ws, methods))]
                _, rest = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for task in rest:
                    task.cancel()
                await asyncio.gather(*rest, return_exceptions=True)
        except aiohttp.ClientError:
            self.counts["ws_upstream_failed", "*"] += 1
        finally:
            self._sockets.discard(ws)
            await ws.close()
        return ws

    async def _ws_up(self, client: web.WebSocketResponse, up: aiohttp.ClientWebSocketResponse,
                     methods: dict[str, str]) -> None:
        async for msg in client:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            if self.faults.blackhole:
                self.counts["blackholed", "ws"] += 1
                continue
            try:
                payload = json.loads(msg.data)
            except ValueError:
                payload = None
            calls = payload if isinstance(payload, list) else [payload]
            for c in calls:
                if isinstance(c, dict) and "id" in c:
                    methods[json.dumps(c["id"])] = str(c.get("method"))
            if isinstance(payload, dict) and "id" in payload and self._roll(payload, "error"):
                methods.pop(json.dumps(payload["id"]), None)
                await client.send_str(json.dumps(self._error_reply(payload)))  # never forwarded
                continue
            await up.send_str(msg.data)

    async def _ws_down(self, up: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse,
                       methods: dict[str, str]) -> None:
        async for msg in up:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            if self.faults.blackhole:
                self.counts["blackholed", "ws"] += 1
                continue
            if self.faults.latency:
                await asyncio.sleep(self.faults.latency)
            text = msg.data
            with contextlib.suppress(ValueError):
                text = self._ws_reply(json.loads(text), methods, text)
            await client.send_str(text)

    def _ws_reply(self, item: Any, methods: dict[str, str], text: str) -> str:
        """A reply (or a batch of replies) from the node with the per-call faults applied;
        subscription notifications pass untouched."""
        items = item if isinstance(item, list) else [item]
        calls = [(methods.pop(json.dumps(i.get("id")), None) if isinstance(i, dict) else None, i)
                 for i in items]
        if all(m is None for m, _ in calls):
            self.counts["notified", "ws"] += 1
            return text
        out = [self._maybe_junk({"method": m, "id": i.get("id")}, i) if m is not None else i
               for m, i in calls]
        text = json.dumps(out if isinstance(item, list) else out[0])
        first = {"method": calls[0][0]}
        if self._roll(first, "truncated"):
            self.counts["truncated", str(calls[0][0])] += 1
            text = text[: self.rng.randrange(1, len(text))]
        return text
