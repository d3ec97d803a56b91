"""The daemon's view of the chain head and of its own guards: readiness (``/readyz``),
``keeper_head_block`` and ``keeper_sending_halted{reason}``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NoReturn

from keeper.chain.decode import quantity
from keeper.chain.rpc import JsonRpc
from keeper.errors import RpcError
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.obs.server import Readiness

log = get_logger(__name__)


class DaemonReadiness(Readiness):
    """``Readiness`` fed by the head watcher and the scan task: ready while the last scan is
    within ``max_lag_blocks`` of a head the node reported recently, the node answered within
    ``silence`` seconds (a node that went quiet makes the keeper unready at once, not after a
    request timeout) and nothing halts sending (``halted``: why, e.g. the kill switch)."""

    def __init__(self, max_lag_blocks: int = 2, max_head_age: float = 120.0,
                 silence: float = 1.0) -> None:
        super().__init__(max_lag_blocks, max_head_age)
        self.silence = silence
        self.node_error: str | None = None
        self.node_head: int | None = None  # the newest head the node reported
        self.scanned_block: int | None = None  # the block of the newest finished scan
        self.answered_at: float | None = None  # loop time of the last good head read
        self.halted: list[str] = []
        self.details: Callable[[], dict[str, object]] | None = None  # e.g. the cluster role

    def saw_head(self, head: int, now: float | None = None) -> None:
        """The node answered with ``head``."""
        self.node_error = None
        self.node_head = head
        self.answered_at = _now(now)
        if self.scanned_block is not None:
            self.update(self.scanned_block, max(head, self.scanned_block), now)

    def scanned(self, block: int) -> None:
        """A scan of ``block`` finished."""
        self.scanned_block = block
        if self.node_head is not None:
            self.update(block, max(self.node_head, block))

    def check(self, now: float | None = None) -> tuple[bool, str]:
        if self.node_error is not None:
            return False, f"node unreachable: {self.node_error}"
        t = _now(now)
        if self.answered_at is not None and t - self.answered_at > self.silence:
            return False, f"node unreachable: no answer for {t - self.answered_at:.1f}s"
        if self.halted:
            return False, "sending halted: " + "; ".join(self.halted)
        return super().check(now)

    def body(self, now: float | None = None) -> dict[str, object]:
        extra = self.details() if self.details is not None else {}
        return super().body(now) | {"sending_halted": list(self.halted) or None} | extra


def _now(now: float | None) -> float:
    return asyncio.get_running_loop().time() if now is None else now


async def watch_head(rpc: JsonRpc, readiness: DaemonReadiness, metrics: Metrics,
                     interval: float, timeout: float,
                     on_tick: Callable[[float], None] | None = None) -> NoReturn:
    """Read the head every ``interval`` seconds, for readiness and ``keeper_head_block``;
    call ``on_tick(now)`` after each read (the guards' state for readiness and metrics).

    A heartbeat, not a retry: each read may take ``timeout`` at most (retries included), so
    a node that goes silent is noticed within that. A node that does not answer is logged once
    when it goes away and once when it comes back, and makes the keeper unready meanwhile.
    Failed reads are counted by the RPC pool; a read cut short here as ``kind="timeout"``.
    """
    loop = asyncio.get_running_loop()
    down = False
    while True:
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                head = quantity(await rpc.call("eth_blockNumber", timeout=timeout),
                                "eth_blockNumber")
        except (RpcError, TimeoutError) as exc:
            if not isinstance(exc, RpcError):
                metrics.rpc_errors.labels("eth_blockNumber", "timeout").inc()
            error = str(exc) or f"eth_blockNumber: no answer within {timeout:g}s"
            if not down:
                log.warning("node_unreachable", error=error)
            down = True
            readiness.node_error = error
        else:
            if down:
                log.info("node_reachable_again", head=head)
            down = False
            metrics.head_block.set(head)
            readiness.saw_head(head)
        if on_tick is not None:
            on_tick(loop.time())
        await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
