"""The daemon's task boundary: restarts with backoff (tenacity), counting, the circuit breaker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, NoReturn, cast

import pytest

from keeper.app.supervise import Backoff, Supervisor
from keeper.errors import RpcError
from keeper.exec.executor import LiquidationExecutor
from keeper.exec.guards import KillSwitch
from keeper.obs.metrics import Metrics


def test_backoff_doubles_to_the_cap_and_starts_over_after_progress() -> None:
    progress = 0
    wait = Backoff(0.5, 4.0, lambda: progress)
    state: Any = None
    assert [wait(state) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    progress = 7  # the task did some work between two failures
    assert [wait(state) for _ in range(2)] == [0.5, 1.0]


def supervisor(metrics: Metrics, executor: object = None, failures: int = 3) -> Supervisor:
    return Supervisor(metrics, cast(LiquidationExecutor | None, executor),
                      max_consecutive_failures=failures, retry_min=0.5, retry_max=2.0)


async def test_forever_restarts_counts_and_waits_between_runs() -> None:
    metrics = Metrics()
    sup = supervisor(metrics)
    slept: list[float] = []
    runs = 0
    started = asyncio.Event()

    async def sleep(delay: float) -> None:
        slept.append(delay)

    async def body() -> NoReturn:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RpcError("connection refused")
        if runs == 3:
            raise ValueError("a bug")
        if runs == 4:
            return  # type: ignore[misc]  # a loop that ends on its own is restarted too
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    task = asyncio.create_task(sup.forever("sync", body, sleep=sleep))
    await asyncio.wait_for(started.wait(), 5)
    assert runs == 5
    assert slept == [0.5, 1.0, 2.0, 2.0]
    assert metrics.value("keeper_rpc_errors_total", {"method": "sync", "kind": "connection"}) == 2
    assert metrics.value("keeper_task_failures_total", {"task": "sync"}) == 2
    assert sup.breakers["sync"].consecutive == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_the_breaker_engages_the_kill_switch_once_and_success_resets_it() -> None:
    metrics = Metrics()
    kill = KillSwitch()
    executor = SimpleNamespace(sender=SimpleNamespace(guards=SimpleNamespace(kill=kill)))
    sup = supervisor(metrics, executor, failures=2)
    sup.failed("scan", ValueError("one"))
    sup.succeeded("scan")
    sup.failed("scan", ValueError("two"))
    assert not kill.engaged
    sup.failed("scan", ValueError("three"))
    assert kill.engaged and "scan failed 2 times in a row" in kill.reason
    assert "ValueError: three" in kill.reason
    assert metrics.value("keeper_circuit_breaker_open") == 1
    assert metrics.value("keeper_task_failures_total", {"task": "scan"}) == 3


def test_the_breaker_closes_after_a_quiet_period_and_releases_only_its_own_kill() -> None:
    metrics = Metrics()
    kill = KillSwitch()
    executor = SimpleNamespace(sender=SimpleNamespace(guards=SimpleNamespace(kill=kill)))
    now = [0.0]
    sup = Supervisor(metrics, cast(LiquidationExecutor | None, executor),
                     max_consecutive_failures=2, retry_min=0.5, retry_max=2.0,
                     breaker_cooldown=60, clock=lambda: now[0])
    sup.failed("execute", ValueError("one"))
    sup.failed("execute", ValueError("two"))
    assert kill.engaged
    now[0] = 59
    sup.resume()
    assert kill.engaged
    now[0] = 61
    sup.resume()
    assert not kill.engaged and metrics.value("keeper_circuit_breaker_open") == 0
    # An operator's kill switch is never released by a quiet period.
    sup.failed("execute", ValueError("three"))  # half-open: opens again at once
    assert kill.engaged
    kill.engage("operator says stop")
    now[0] = 1000
    sup.resume()
    assert kill.engaged and kill.reason == "operator says stop"


async def test_transient_node_errors_never_reach_a_breaker() -> None:
    from keeper.errors import RpcErrorReply, RpcMalformedReply

    metrics = Metrics()
    sup = supervisor(metrics, failures=1)
    slept: list[float] = []
    runs = 0
    started = asyncio.Event()

    async def sleep(delay: float) -> None:
        slept.append(delay)

    async def body() -> NoReturn:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RpcErrorReply("eth_blockNumber", -32000, "overloaded")
        if runs == 2:
            raise RpcMalformedReply("eth_blockNumber: malformed quantity: None")
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    task = asyncio.create_task(sup.forever("sync", body, sleep=sleep))
    await asyncio.wait_for(started.wait(), 5)
    assert sup.breakers["sync"].consecutive == 0 and not sup.breakers["sync"].is_open
    assert metrics.value("keeper_rpc_errors_total", {"method": "sync", "kind": "error_reply"}) == 1
    assert metrics.value("keeper_rpc_errors_total", {"method": "sync", "kind": "malformed"}) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
