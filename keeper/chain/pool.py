"""Failover over several HTTP JSON-RPC endpoints behind the ``JsonRpc`` interface.

Endpoints are tried in their configured order (the first is the preferred one). A transport
error puts an endpoint in cool-down and a read moves on to the next one at once; a round
through all of them that fails is retried with backoff (``RetryPolicy``); in a batch of reads,
only the calls that failed are asked again (``retry_batch``). Every transient failure is told
to ``on_error`` (the composition root counts them in ``keeper_rpc_errors_total``), and every
call put to an endpoint to ``on_request`` (``keeper_rpc_requests_total``). Writes go once to
one endpoint and their failure surfaces to the caller: a timed-out send may still have reached
the mempool, so only the caller, after checking nonce and receipt, may send again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from keeper.chain.retry import (
    DEFAULT_RETRY,
    ErrorObserver,
    RetryPolicy,
    all_idempotent,
    retry_batch,
    retry_read,
)
from keeper.chain.rpc import HttpRpc, JsonParams, JsonRpc, public_url
from keeper.errors import ConfigError, RpcError
from keeper.obs.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class Endpoint:
    """One upstream and its health: usable again once the clock passes ``unhealthy_until``."""

    name: str
    rpc: JsonRpc
    unhealthy_until: float = 0.0
    failures: int = 0


class RpcPool:
    """Several JSON-RPC endpoints used as one, with failover for reads.

    ``RpcPool(["http://a", "http://b"])`` builds ``HttpRpc`` clients; ``RpcPool.of([...])``
    takes ready clients (any ``JsonRpc``), which is how tests put fakes behind it.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 10.0,
        cooldown: float = 5.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        if not urls:
            raise ConfigError("RpcPool needs at least one RPC URL")
        self._init([Endpoint(public_url(u), HttpRpc(u, timeout=timeout)) for u in urls],
                   cooldown, retry)

    @classmethod
    def of(
        cls,
        clients: Sequence[tuple[str, JsonRpc]],
        *,
        cooldown: float = 5.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Callable[[], float] | None = None,
    ) -> RpcPool:
        """A pool over ready clients, given as ``(name, client)`` pairs."""
        if not clients:
            raise ConfigError("RpcPool needs at least one RPC client")
        pool = cls.__new__(cls)
        pool._init([Endpoint(n, c) for n, c in clients], cooldown, retry, clock)
        return pool

    def _init(
        self,
        endpoints: list[Endpoint],
        cooldown: float,
        retry: RetryPolicy,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.cooldown = cooldown
        self.retry = retry
        self._clock = clock
        self.on_error: ErrorObserver | None = None
        self.on_request: Callable[[str], None] | None = None

    def _count(self, methods: Sequence[str]) -> None:
        if self.on_request is not None:
            for method in methods:
                self.on_request(method)

    def _observe(self, method: str, exc: RpcError) -> None:
        if self.on_error is not None:
            self.on_error(method, exc)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def ordered(self) -> list[Endpoint]:
        """Endpoints to try now: healthy ones in configured order, then the cooling ones.

        Cooling endpoints come last rather than not at all: when every endpoint failed a moment
        ago, trying them beats failing without asking anyone.
        """
        now = self._now()
        healthy = [e for e in self.endpoints if e.unhealthy_until <= now]
        cooling = sorted(
            (e for e in self.endpoints if e.unhealthy_until > now), key=lambda e: e.unhealthy_until
        )
        return healthy + cooling

    @property
    def current(self) -> Endpoint:
        """The endpoint the next call goes to first."""
        return self.ordered()[0]

    def _mark_down(self, ep: Endpoint, exc: RpcError) -> None:
        ep.failures += 1
        ep.unhealthy_until = self._now() + self.cooldown
        # Log the transition, not every failed retry while it stays down.
        if ep.failures == 1:
            log.warning("rpc_endpoint_down", url=ep.name, cooldown=self.cooldown, error=str(exc))

    def _mark_up(self, ep: Endpoint) -> None:
        if ep.failures:
            log.info("rpc_endpoint_up", url=ep.name, failures=ep.failures)
        ep.failures = 0
        ep.unhealthy_until = 0.0

    async def _one_round(self, what: str, send: Callable[[JsonRpc], Awaitable[T]]) -> T:
        """Try each endpoint once, in order, until one answers."""
        last: RpcError | None = None
        for ep in self.ordered():
            try:
                result = await send(ep.rpc)
            except RpcError as exc:
                self._observe(what, exc)
                self._mark_down(ep, exc)
                last = exc
                continue
            self._mark_up(ep)
            return result
        assert last is not None
        raise last

    async def _send_once(self, what: str, send: Callable[[JsonRpc], Awaitable[T]]) -> T:
        ep = self.current
        try:
            result = await send(ep.rpc)
        except RpcError as exc:
            self._observe(what, exc)
            self._mark_down(ep, exc)
            raise
        self._mark_up(ep)
        return result

    async def call(
        self, method: str, params: JsonParams = (), *, timeout: float | None = None
    ) -> Any:
        """One JSON-RPC call; reads fail over and retry, writes are sent once."""
        def send(rpc: JsonRpc) -> Awaitable[Any]:
            self._count((method,))
            return rpc.call(method, params, timeout=timeout)

        if not all_idempotent((method,)):
            return await self._send_once(method, send)
        return await retry_read((method,), lambda: self._one_round(method, send), self.retry)

    async def batch(
        self,
        calls: Sequence[tuple[str, JsonParams]],
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """A JSON-RPC batch; it fails over, and its failed calls are asked again, only if
        every call in it is a read."""
        if not calls:
            return []

        def to(rpc: JsonRpc, sub: Sequence[tuple[str, JsonParams]],
               exceptions: bool) -> Awaitable[list[Any]]:
            self._count([m for m, _ in sub])
            return rpc.batch(sub, timeout=timeout, return_exceptions=exceptions)

        def send(sub: Sequence[tuple[str, JsonParams]]) -> Awaitable[list[Any]]:
            return self._one_round("batch", lambda rpc: to(rpc, sub, True))

        if not all_idempotent(m for m, _ in calls):
            return await self._send_once("batch", lambda rpc: to(rpc, calls, return_exceptions))
        return await retry_batch(calls, send, self.retry, return_exceptions=return_exceptions,
                                 observe=self._observe)

    async def close(self) -> None:
        """Close every endpoint's client that has a ``close``."""
        for ep in self.endpoints:
            closer = getattr(ep.rpc, "close", None)
            if closer is not None:
                await closer()

    async def __aenter__(self) -> RpcPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
