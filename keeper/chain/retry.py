"""Retries for idempotent JSON-RPC reads, and only for them.

A read that failed in transit can be asked again without changing anything. A write cannot: a
``eth_sendRawTransaction`` that timed out may well have reached the mempool, so it is never
retried here; the executor checks nonce and receipt before it sends anything again.

What is retried is what ``keeper.errors`` calls transient, an ``RpcError``: no connection, a
timeout, a malformed reply, an error object that says nothing about the request (overloaded,
rate limited). Error objects about the request (a revert, a bad argument) are answers and are
never retried. In a batch of reads only the calls that failed are asked again: under a 20%
error rate a batch of 20 calls almost never comes back whole, while its failed calls do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from keeper.chain.rpc import JsonParams, JsonRpc
from keeper.errors import RpcError

T = TypeVar("T")

IDEMPOTENT_METHODS: frozenset[str] = frozenset(
    {
        "eth_blockNumber",
        "eth_call",
        "eth_chainId",
        "eth_estimateGas",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_getBalance",
        "eth_getBlockByHash",
        "eth_getBlockByNumber",
        "eth_getBlockReceipts",
        "eth_getCode",
        "eth_getLogs",
        "eth_getProof",
        "eth_getStorageAt",
        "eth_getTransactionByHash",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_maxPriorityFeePerGas",
        "eth_syncing",
        "net_version",
        "web3_clientVersion",
    }
)
"""Methods that only read. Anything not listed (sends, filters, subscriptions, anvil_*) is
treated as a write: sent once."""


def is_idempotent(method: str) -> bool:
    """True when ``method`` may be retried or sent to another endpoint after a failure."""
    return method in IDEMPOTENT_METHODS


def all_idempotent(methods: Iterable[str]) -> bool:
    """True when every method of a batch is idempotent (one write makes the batch a write)."""
    return all(m in IDEMPOTENT_METHODS for m in methods)


def is_transport_error(exc: BaseException) -> bool:
    """True for transient failures (``RpcError``: connection, timeout, HTTP status, malformed
    reply, an error object about the node rather than the request), the retryable kind.

    A plain ``RpcResponseError`` or ``ExecutionReverted`` is not an ``RpcError``: the node
    answered about the request.
    """
    return isinstance(exc, RpcError)


ErrorObserver = Callable[[str, RpcError], None]
"""Told of every transient failure: (method, or "batch" for a whole batch; the error)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter.

    At most ``attempts`` tries and about ``total`` seconds (checked after each failed try, so
    the last try may run its own timeout past it). Waits grow from ``initial`` and are capped at
    ``max_wait``; jitter spreads keepers that fail together so they do not retry together.
    """

    attempts: int = 4
    initial: float = 0.05
    max_wait: float = 1.0
    total: float = 5.0

    def retrying(self) -> AsyncRetrying:
        """A tenacity controller that retries transport errors under this policy."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.total),
            wait=wait_random_exponential(multiplier=self.initial, max=self.max_wait),
            retry=retry_if_exception(is_transport_error),
            reraise=True,
        )


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


async def retry_read(
    methods: Sequence[str], fn: Callable[[], Awaitable[T]], policy: RetryPolicy
) -> T:
    """Run ``fn`` under ``policy`` if every method it sends is idempotent, else exactly once."""
    if policy.attempts <= 1 or not all_idempotent(methods):
        return await fn()
    async for attempt in policy.retrying():
        with attempt:
            return await fn()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


async def retry_batch(
    calls: Sequence[tuple[str, JsonParams]],
    send: Callable[[Sequence[tuple[str, JsonParams]]], Awaitable[list[Any]]],
    policy: RetryPolicy,
    *,
    return_exceptions: bool,
    observe: ErrorObserver | None = None,
) -> list[Any]:
    """A batch through ``send`` (which must return per-call exceptions in its list); reads
    whose answer was transient are sent again, alone, under ``policy``, until every call has a
    definite answer or the policy gives up (then the last transient error is raised).

    A batch with a write in it is sent once. Without ``return_exceptions`` the first error in
    call order is raised, as ``JsonRpc.batch`` does.
    """
    results: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))

    async def once() -> None:
        nonlocal todo
        got = await send([calls[i] for i in todo])
        for i, answer in zip(todo, got, strict=True):
            results[i] = answer
        todo = [i for i in todo if isinstance(results[i], RpcError)]
        if observe is not None:
            for i in todo:
                observe(calls[i][0], results[i])

    async def until_definite() -> None:
        await once()
        if todo:
            raise results[todo[0]]

    if policy.attempts > 1 and all_idempotent(m for m, _ in calls):
        async for attempt in policy.retrying():
            with attempt:
                await until_definite()
    else:
        await once()  # a write: its transient answers stay in the list, like the others
    if not return_exceptions:
        for answer in results:
            if isinstance(answer, BaseException):
                raise answer
    return results


class RetryingRpc:
    """Wrap any ``JsonRpc`` so that idempotent reads are retried on transport errors."""

    def __init__(self, inner: JsonRpc, policy: RetryPolicy = DEFAULT_RETRY) -> None:
        self.inner = inner
        self.policy = policy

    async def call(
        self, method: str, params: JsonParams = (), *, timeout: float | None = None
    ) -> Any:
        """``inner.call``, retried when ``method`` is an idempotent read."""
        return await retry_read(
            (method,), lambda: self.inner.call(method, params, timeout=timeout), self.policy
        )

    async def batch(
        self,
        calls: Sequence[tuple[str, JsonParams]],
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """``inner.batch``; when every call in it is a read, the calls that failed in transit
        are sent again (``retry_batch``)."""
        if not calls:
            return []
        return await retry_batch(
            calls, lambda sub: self.inner.batch(sub, timeout=timeout, return_exceptions=True),
            self.policy, return_exceptions=return_exceptions)
