"""JSON-RPC over HTTP with aiohttp: single calls and batches, a timeout on every request.

This is the transport the rest of the keeper talks to. It returns the node's ``result`` as
decoded JSON, checked against the method's type (``keeper.chain.replies.check_result``), and
raises what ``keeper.chain.replies.response_error`` makes of an error object, ``RpcTimeout``,
``RpcMalformedReply`` or ``RpcError`` otherwise. It adds no middleware: a call is one request.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from keeper.chain.replies import check_result, response_error
from keeper.errors import RpcError, RpcMalformedReply, RpcResponseError, RpcTimeout

__all__ = ["HttpRpc", "JsonParams", "JsonRpc", "public_url", "response_error"]

JsonParams = Sequence[Any]


class JsonRpc(Protocol):
    """What callers need from a JSON-RPC client: HTTP, a failover pool, WebSocket or a fake.

    ``call`` returns the ``result``; ``batch`` returns results in call order. Both raise
    ``RpcResponseError``/``ExecutionReverted`` for error objects and ``RpcError``/``RpcTimeout``
    for transport failures.
    """

    async def call(
        self, method: str, params: JsonParams = (), *, timeout: float | None = None
    ) -> Any: ...

    async def batch(
        self,
        calls: Sequence[tuple[str, JsonParams]],
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]: ...


def public_url(url: str) -> str:
    """``scheme://host[:port]`` of an endpoint, for logs and errors.

    Node URLs often carry an API key in the path, the query or the userinfo
    (``https://eth.example/v3/<key>``); those parts never go into a log line or a message.
    """
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    hidden = "/…" if parts.path not in ("", "/") or parts.query or parts.username else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{hidden}"


class HttpRpc:
    """An HTTP JSON-RPC endpoint. Use as an async context manager or call ``close()``."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.label = public_url(url)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpRpc:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One keep-alive connection pool per endpoint; the node is usually local or close.
            connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def _post(self, payload: Any, timeout: float | None, what: str) -> Any:
        session = self._get_session()
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                async with session.post(
                    self.url, json=payload, headers={"Content-Type": "application/json"}
                ) as resp:
                    if resp.status != 200:
                        text = (await resp.text())[:200]
                        raise RpcError(f"{what}: HTTP {resp.status} from {self.label}: {text}")
                    return await resp.json(content_type=None)
        except TimeoutError as exc:
            raise RpcTimeout(f"{what}: no answer from {self.label} within {limit:g}s") from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # this task's own cancellation (a shutdown's): it goes on up
            # A future of the HTTP client's own, cancelled under us (aiohttp does so when a
            # connection goes: aio-libs/aiohttp#2056): a transport error of this request. As a
            # CancelledError it would pass every ``except Exception`` on its way and end, in
            # silence, the task that awaited it (a head source's pump, whose consumer would
            # then wait for ever).
            raise RpcError(f"{what}: the request was cancelled under us talking to "
                           f"{self.label}") from None
        except aiohttp.ClientError as exc:
            raise RpcError(f"{what}: {type(exc).__name__} talking to {self.label}: {exc}") from exc
        except ValueError as exc:
            # A proxy's HTML error page or a truncated body: the endpoint is unhealthy, not the call.
            raise RpcMalformedReply(f"{what}: invalid JSON from {self.label}: {exc}") from exc

    async def call(self, method: str, params: JsonParams = (), *, timeout: float | None = None) -> Any:
        """Send one JSON-RPC request and return its ``result``."""
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        body = await self._post(payload, timeout, method)
        if not isinstance(body, dict):
            raise RpcMalformedReply(f"{method}: malformed response from {self.label}")
        if "error" in body and body["error"] is not None:
            raise response_error(method, body["error"])
        return check_result(method, params, body.get("result"))

    async def batch(
        self,
        calls: Sequence[tuple[str, JsonParams]],
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Send several requests in one JSON-RPC batch; results come back in call order.

        With ``return_exceptions`` an error object becomes an exception instance in the list
        instead of being raised, so one failed call does not hide the others' results.
        """
        if not calls:
            return []
        first = next(self._ids)
        ids = range(first, first + len(calls))
        # Reserve the ids so that concurrent calls never reuse them.
        for _ in range(len(calls) - 1):
            next(self._ids)
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        body = await self._post(payload, timeout, f"batch of {len(calls)}")
        if isinstance(body, dict) and "error" in body:
            raise response_error("batch", body["error"])
        if not isinstance(body, list):
            raise RpcMalformedReply(f"batch: malformed response from {self.label}")
        by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
        out: list[Any] = []
        for i, (method, params) in zip(ids, calls, strict=True):
            item = by_id.get(i)
            if item is None:
                raise RpcMalformedReply(f"batch: no answer for {method} (id {i}) from {self.label}")
            try:
                if item.get("error") is not None:
                    raise response_error(method, item["error"])
                out.append(check_result(method, params, item.get("result")))
            except (RpcError, RpcResponseError) as err:
                if not return_exceptions:
                    raise
                out.append(err)
        return out
