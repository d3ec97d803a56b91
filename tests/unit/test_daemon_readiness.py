"""``/readyz`` of the daemon: unready within one head_poll of the node going silent, and while
sending is halted, with the reason in the body."""

from __future__ import annotations

import asyncio
from typing import Any

from keeper.app.head import DaemonReadiness, watch_head
from keeper.chain.rpc import JsonParams
from keeper.errors import RpcErrorReply
from keeper.obs.metrics import Metrics


def ready_at(now: float) -> DaemonReadiness:
    r = DaemonReadiness(max_lag_blocks=2, max_head_age=30, silence=0.5)
    r.scanned(10)
    r.saw_head(10, now=now)
    r.update(10, 10, now=now)
    return r


def test_silence_makes_it_unready_after_one_head_poll() -> None:
    r = ready_at(100.0)
    assert r.check(100.4) == (True, "synced to 10 (head 10)")
    ready, reason = r.check(100.6)
    assert not ready and reason.startswith("node unreachable: no answer for 0.6s")


def test_a_halt_is_unready_and_says_why() -> None:
    r = ready_at(100.0)
    r.halted = ["kill switch engaged (circuit breaker: execute failed 5 times in a row)"]
    ready, reason = r.check(100.1)
    assert not ready and reason.startswith("sending halted: kill switch engaged")
    body = r.body(100.1)
    assert body["ready"] is False and body["sending_halted"] == r.halted
    r.halted = []
    assert r.body(100.1)["ready"] is True and r.body(100.1)["sending_halted"] is None


class Silent:
    """A node that answers the first read, then never again."""

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, method: str, params: JsonParams = (), *,
                   timeout: float | None = None) -> Any:
        self.calls += 1
        if self.calls == 1:
            return "0xa"
        if self.calls == 2:
            raise RpcErrorReply(method, -32000, "overloaded")
        await asyncio.Event().wait()

    async def batch(self, *_: Any, **__: Any) -> list[Any]:
        raise NotImplementedError


async def test_the_head_watcher_notices_a_silent_node_within_its_timeout() -> None:
    metrics = Metrics()
    r = DaemonReadiness(silence=10)  # only the watcher's own timeout can make it unready
    r.scanned(10)
    ticks: list[float] = []
    task = asyncio.create_task(watch_head(Silent(), r, metrics, interval=0.02, timeout=0.05,
                                          on_tick=ticks.append))
    try:
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
    assert r.node_head == 10 and metrics.value("keeper_head_block") == 10
    ready, reason = r.check()
    assert not ready and "node unreachable" in reason
    timeouts = metrics.value("keeper_rpc_errors_total",
                             {"method": "eth_blockNumber", "kind": "timeout"})
    assert timeouts is not None and timeouts >= 2
    assert len(ticks) >= 3
