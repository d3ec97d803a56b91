"""The task boundary every daemon task runs behind, and the restart of a task that failed.

A boundary is the one place a broad ``except`` belongs: an unexpected error is logged with
context, counted in ``keeper_task_failures_total{task}`` and recorded by the task's circuit
breaker; ``max_consecutive_failures`` in a row engage the sender's kill switch (scanning and
reporting go on). A transient node error (any ``RpcError``: down, slow, overloaded, junk) is no
failure of the keeper: it is counted in ``keeper_rpc_errors_total`` and retried, never shown
to a breaker.

The breaker closes again after ``breaker_cooldown`` seconds without a failure (``resume``,
called on every head tick), and releases the kill switch it engaged itself; a kill switch an
operator engaged (the config's ``executor.kill_switch``) is never released here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

from prometheus_client import Counter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from keeper.errors import KeeperError, RpcError
from keeper.exec.executor import LiquidationExecutor
from keeper.exec.guards import CircuitBreaker
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics

log = get_logger(__name__)

TASKS = ("sync", "scan", "execute", "backrun", "head")
"""The tasks that run behind a boundary (``head``: the watcher of ``keeper.app.head``)."""


class Backoff:
    """A tenacity wait: ``initial`` seconds doubling up to ``maximum``, back to ``initial`` as
    soon as the task made progress since the previous failure (a sync that applied blocks, a
    scan that finished): a node that comes and goes is not punished for its old outages."""

    def __init__(self, initial: float, maximum: float, progress: Callable[[], int]) -> None:
        self.initial = initial
        self.maximum = maximum
        self.progress = progress
        self._seen = progress()
        self._streak = 0

    def __call__(self, state: RetryCallState) -> float:
        now = self.progress()
        if now != self._seen:
            self._seen, self._streak = now, 0
        delay = min(self.initial * (1 << min(self._streak, 32)), self.maximum)
        self._streak += 1
        return delay


class Supervisor:
    """Boundaries, circuit breakers and restarts for the daemon's tasks."""

    def __init__(self, metrics: Metrics, executor: LiquidationExecutor | None, *,
                 max_consecutive_failures: int, retry_min: float, retry_max: float,
                 breaker_cooldown: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.executor = executor
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.clock = clock
        self.breakers = {task: CircuitBreaker(max_consecutive_failures, breaker_cooldown)
                         for task in TASKS}
        self._engaged: str | None = None  # the kill switch reason we set, to release it later
        self.task_failures = Counter("task_failures", "Unexpected errors at a daemon task boundary",
                                     ["task"], namespace="keeper", registry=metrics.registry)

    def succeeded(self, task: str) -> None:
        """``task`` did its work: its run of failures is over."""
        self.breakers[task].record_success()

    def failed(self, task: str, exc: BaseException, **context: object) -> None:
        """An unexpected error at ``task``'s boundary: log, count, let the breaker decide."""
        breaker = self.breakers[task]
        breaker.record_failure(f"{type(exc).__name__}: {exc}", self.clock())
        self.task_failures.labels(task=task).inc()
        log.error("task_failed", task=task, error=f"{type(exc).__name__}: {exc}",
                  consecutive=breaker.consecutive,
                  # The traceback once per streak: a repeating failure must not flood the log.
                  exc_info=exc if breaker.consecutive == 1 else None, **context)
        executor = self.executor
        if breaker.is_open and executor is not None and not executor.sender.guards.kill.engaged:
            reason = (f"circuit breaker: {task} failed {breaker.consecutive} times in a row "
                      f"(last: {breaker.last_reason})")
            executor.sender.guards.kill.engage(reason)
            self._engaged = reason
            self.metrics.circuit_breaker_open.set(1)
            log.error("circuit_breaker_open_sending_halted", task=task, reason=reason)

    def resume(self) -> None:
        """Close the breakers that stayed quiet for their cooldown; once none is open, release
        the kill switch if this supervisor engaged it (and nobody re-engaged it since)."""
        now = self.clock()
        for task, breaker in self.breakers.items():
            if breaker.close_if_quiet(now):
                log.info("circuit_breaker_closed_after_quiet_period", task=task,
                         cooldown=breaker.cooldown, last=breaker.last_reason)
        if self._engaged is None or any(b.is_open for b in self.breakers.values()):
            return
        kill = self.executor.sender.guards.kill if self.executor is not None else None
        if kill is not None and kill.engaged and kill.reason == self._engaged:
            kill.release()
            self.metrics.circuit_breaker_open.set(0)
            log.warning("sending_resumed", reason="circuit breaker closed after a quiet period")
        self._engaged = None

    async def forever(self, task: str, body: Callable[[], Awaitable[object]], *,
                      progress: Callable[[], int] = lambda: 0,
                      sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> NoReturn:
        """Run ``body`` again and again behind ``task``'s boundary; between two runs wait with
        ``Backoff`` (through ``sleep``, which may end early when there is new work).

        ``body`` is a loop restart of idempotent work (follow the chain, scan, watch the
        mempool): running it again after a failure changes nothing that was done.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),  # never stops; cancellation ends it
            wait=Backoff(self.retry_min, self.retry_max, progress),
            sleep=sleep,
            before_sleep=lambda state: self._report(task, state),
            reraise=True,
        )
        await retrying(_never_returns, task, body)
        raise AssertionError("unreachable: the body never returns")  # pragma: no cover

    def _report(self, task: str, state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        exc = state.outcome.exception()
        if isinstance(exc, RpcError):
            self.metrics.rpc_errors.labels(task, exc.kind).inc()
            log.warning("task_node_unreachable_retrying", task=task, error=str(exc),
                        retry_in=state.next_action.sleep)
        elif exc is not None:
            self.failed(task, exc)


async def _never_returns(task: str, body: Callable[[], Awaitable[object]]) -> NoReturn:
    await body()
    # Every task loops until cancelled: one that ends on its own is a failure to restart.
    raise KeeperError(f"daemon task {task} ended")
