"""Retries for idempotent JSON-RPC reads, and only for them.

A read that failed in transit can be asked again without changing anything. A write cannot: a
``eth_sendRawTransaction`` that timed out may well have reached the mempool, so it is never
retried here; the executor checks nonce and receipt before it sends anything again. Error
objects from the node (a revert, a bad argument) are answers, not transport failures, and are
never retried either.
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
    """True for failures in transit (connection, timeout, HTTP status), the retryable kind.

    ``RpcResponseError`` and ``ExecutionReverted`` are not ``RpcError``: the node answered.
    """
    return isinstance(exc, RpcError)


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
        """``inner.batch``, retried as a whole when every call in it is a read."""
        return await retry_read(
            [m for m, _ in calls],
            lambda: self.inner.batch(calls, timeout=timeout, return_exceptions=return_exceptions),
            self.policy,
        )
