"""JSON-RPC over a WebSocket with aiohttp: calls, batches and ``eth_subscribe`` that survive
reconnects.

One connection carries any number of requests in flight (matched to answers by id, no cap)
and subscription notifications. When the connection drops, calls in flight fail with
``RpcError`` (wrap the client in ``RetryingRpc`` to retry reads), the client reconnects with
backoff and re-issues every live subscription; the node gives new subscription ids, the
``Subscription`` objects stay the same and yield ``RESUBSCRIBED`` first so a consumer knows
it may have missed notifications. Heads never have that problem: ``heads.py`` backfills gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from keeper.chain.replies import check_result, response_error
from keeper.chain.rpc import JsonParams, public_url
from keeper.chain.subscription import (
    DEFAULT_RECONNECT,
    END,
    RESUBSCRIBED,
    ReconnectPolicy,
    Subscription,
)
from keeper.errors import RpcError, RpcErrorReply, RpcMalformedReply, RpcResponseError, RpcTimeout
from keeper.obs.logging import get_logger

log = get_logger(__name__)




@dataclass(slots=True)
class _Pending:
    method: str
    future: asyncio.Future[Any]
    # Runs in the reader, before anyone awaiting the future resumes: used to register a
    # subscription id before its first notification can be dispatched.
    on_result: Callable[[Any], None] | None = None




class WsRpc:
    """A JSON-RPC WebSocket client; ``async with WsRpc(url) as ws`` connects and closes it.

    Satisfies ``JsonRpc`` (``call``/``batch``) and adds ``subscribe``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        heartbeat: float | None = 15.0,
        reconnect: ReconnectPolicy = DEFAULT_RECONNECT,
        max_msg_size: int = 64 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.label = public_url(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.reconnect_policy = reconnect
        self.max_msg_size = max_msg_size
        self.reconnects = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subs: list[Subscription] = []
        self._subs_by_id: dict[str, Subscription] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ready = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> WsRpc:
        """Open the connection; raise ``RpcError`` if the first attempt fails.

        Failing fast here catches a wrong URL at startup; after a first success the client
        reconnects on its own, forever, until ``close()``.
        """
        if self._supervisor is not None:
            return self
        self._session = aiohttp.ClientSession()
        try:
            ws = await self._open()
        except RpcError:
            await self.close()
            raise
        self._supervisor = asyncio.create_task(self._supervise(ws), name=f"ws-rpc {self.label}")
        return self

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def close(self) -> None:
        """Close the connection, fail calls in flight and end every subscription."""
        self._closed = True
        self._ready.clear()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._fail_pending(RpcError(f"websocket {self.label} closed"))
        for sub in self._subs:
            sub.push(END)
        self._subs.clear()
        self._subs_by_id.clear()

    async def __aenter__(self) -> WsRpc:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        assert self._session is not None
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await self._session.ws_connect(
                    self.url, heartbeat=self.heartbeat, max_msg_size=self.max_msg_size
                )
        except TimeoutError as exc:
            raise RpcTimeout(f"websocket {self.label}: no connection within {self.connect_timeout:g}s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise RpcError(f"websocket {self.label}: {type(exc).__name__}: {exc}") from exc

    async def _supervise(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read until the connection drops, then reconnect with backoff and resubscribe."""
        first = True
        while not self._closed:
            if not first:
                ws = await self._reconnect()
                self.reconnects += 1
            self._ws = ws
            self._ready.set()
            resubscribe = None if first else asyncio.create_task(self._resubscribe_all())
            first = False
            try:
                await self._read(ws)
            finally:
                self._ready.clear()
                if resubscribe is not None and not resubscribe.done():
                    resubscribe.cancel()
                self._fail_pending(RpcError(f"websocket {self.label}: connection lost"))
                self._subs_by_id.clear()
                with contextlib.suppress(Exception):
                    await ws.close()
            if not self._closed:
                log.warning("websocket_lost", url=self.label)

    async def _reconnect(self) -> aiohttp.ClientWebSocketResponse:
        for attempt in itertools.count():
            await asyncio.sleep(self.reconnect_policy.delay(attempt))
            try:
                return await self._open()
            except RpcError as exc:
                if attempt % 20 == 0:
                    log.warning("websocket_reconnect_failed", url=self.label, attempt=attempt + 1,
                                error=str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _resubscribe_all(self) -> None:
        for sub in list(self._subs):
            for attempt in itertools.count():
                try:
                    await self._subscribe_on_node(sub, resubscribe=True)
                except (RpcErrorReply, RpcMalformedReply):
                    # An answer that says nothing about the subscription (overloaded, junk):
                    # the connection is up, ask again.
                    await asyncio.sleep(self.reconnect_policy.delay(attempt))
                    continue
                except RpcResponseError as exc:
                    # The node answered no: this subscription cannot continue; tell its consumer.
                    self._subs.remove(sub)
                    sub.push(exc)
                except RpcError:
                    if not self.connected:
                        return  # the connection dropped again; the next reconnect retries
                    # No answer on a live connection (a reply lost or garbled on the way):
                    # nothing else would ask again, and the subscription would stay silent.
                    log.warning("websocket_resubscribe_unanswered", url=self.label,
                                kind=sub.params[0] if sub.params else None)
                    await asyncio.sleep(self.reconnect_policy.delay(attempt))
                    continue
                break

    # -- reading ---------------------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                try:
                    body = json.loads(msg.data)
                except ValueError:
                    log.warning("websocket_message_not_json", url=self.label)
                    continue
                for item in body if isinstance(body, list) else (body,):
                    if isinstance(item, dict):
                        self._dispatch(item)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                log.warning("websocket_error", url=self.label, error=str(ws.exception()))
                break

    def _dispatch(self, item: dict[str, Any]) -> None:
        if item.get("method") == "eth_subscription":
            params = item.get("params") or {}
            sub_id = params.get("subscription")
            sub = self._subs_by_id.get(sub_id) if isinstance(sub_id, str) else None
            if sub is not None:
                sub.push(params.get("result"))
            return
        ident = item.get("id")
        pending = self._pending.pop(ident, None) if isinstance(ident, int) else None
        if pending is None or pending.future.done():
            return  # an answer to a call that already timed out
        if item.get("error") is not None:
            pending.future.set_exception(response_error(pending.method, item["error"]))
            return
        result = item.get("result")
        if pending.on_result is not None:
            pending.on_result(result)
        pending.future.set_result(result)

    def _fail_pending(self, exc: RpcError) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(exc)

    # -- requests --------------------------------------------------------------------------

    def _register(
        self, method: str, on_result: Callable[[Any], None] | None = None
    ) -> tuple[int, asyncio.Future[Any]]:
        ident = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = _Pending(method, fut, on_result)
        return ident, fut

    async def _wait_ready(self, what: str) -> None:
        if self._closed or self._supervisor is None:
            raise RpcError(f"{what}: websocket {self.label} is not connected (closed or never opened)")
        await self._ready.wait()  # while reconnecting, wait (under the caller's timeout)

    async def _send(self, payload: Any, what: str) -> None:
        ws = self._ws
        assert ws is not None
        try:
            await ws.send_str(json.dumps(payload, separators=(",", ":")))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise RpcError(f"{what}: send on websocket {self.label} failed: {exc}") from exc

    async def call(
        self,
        method: str,
        params: JsonParams = (),
        *,
        timeout: float | None = None,
        _on_result: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send one request and wait for its answer (``RpcTimeout`` after ``timeout``)."""
        limit = self.timeout if timeout is None else timeout
        ident = -1
        try:
            async with asyncio.timeout(limit):
                # Register only once connected, so a drop while we wait cannot fail this call.
                await self._wait_ready(method)
                ident, fut = self._register(method, _on_result)
                payload = {"jsonrpc": "2.0", "id": ident, "method": method, "params": list(params)}
                await self._send(payload, method)
                result = await fut
        except TimeoutError as exc:
            raise RpcTimeout(f"{method}: no answer from {self.label} within {limit:g}s") from exc
        finally:
            self._pending.pop(ident, None)
        return check_result(method, params, result)

    async def batch(
        self,
        calls: Sequence[tuple[str, JsonParams]],
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Send several requests in one frame; results in call order (see ``HttpRpc.batch``)."""
        if not calls:
            return []
        limit = self.timeout if timeout is None else timeout
        what = f"batch of {len(calls)}"
        regs: list[tuple[int, asyncio.Future[Any]]] = []
        try:
            async with asyncio.timeout(limit):
                await self._wait_ready(what)
                regs = [self._register(m) for m, _ in calls]
                payload = [
                    {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
                    for (i, _), (m, p) in zip(regs, calls, strict=True)
                ]
                futs = [f for _, f in regs]
                await self._send(payload, what)
                results = await asyncio.gather(*futs, return_exceptions=True)
        except TimeoutError as exc:
            raise RpcTimeout(f"{what}: no answer from {self.label} within {limit:g}s") from exc
        finally:
            for i, _ in regs:
                self._pending.pop(i, None)
        out: list[Any] = []
        for (method, params), r in zip(calls, results, strict=True):
            # A lost connection fails the whole batch; error objects and malformed results are
            # per call.
            if isinstance(r, RpcError) and not isinstance(r, RpcErrorReply):
                raise r
            if not isinstance(r, BaseException):
                try:
                    r = check_result(method, params, r)
                except RpcMalformedReply as exc:
                    r = exc
            if isinstance(r, BaseException) and not return_exceptions:
                raise r
            out.append(r)
        return out

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(
        self, kind: str, *params: Any, timeout: float | None = None
    ) -> Subscription:
        """``eth_subscribe`` (``"newHeads"``, or ``"logs", {"address": ..., "topics": ...}``)."""
        sub = Subscription(self._unsubscribe, (kind, *params))
        # Listed before the node answers, so a reconnect in between still resubscribes it.
        self._subs.append(sub)
        try:
            await self._subscribe_on_node(sub, resubscribe=False, timeout=timeout)
        except BaseException:
            if sub in self._subs:
                self._subs.remove(sub)
            raise
        return sub

    async def _subscribe_on_node(
        self, sub: Subscription, *, resubscribe: bool, timeout: float | None = None
    ) -> None:
        def register(sub_id: Any) -> None:
            if not isinstance(sub_id, str):
                return
            if resubscribe:
                sub.generation += 1
                sub.push(RESUBSCRIBED)
            sub.sub_id = sub_id
            self._subs_by_id[sub_id] = sub

        sub_id = await self.call("eth_subscribe", sub.params, timeout=timeout, _on_result=register)
        if not isinstance(sub_id, str):
            raise RpcError(f"eth_subscribe{sub.params!r}: unexpected answer {sub_id!r}")

    async def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        sub_id, sub.sub_id = sub.sub_id, None
        if sub_id is not None:
            self._subs_by_id.pop(sub_id, None)
            if self.connected:
                with contextlib.suppress(RpcError, RpcResponseError):
                    await self.call("eth_unsubscribe", [sub_id], timeout=min(self.timeout, 2.0))
        sub.push(END)

