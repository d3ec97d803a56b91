"""The daemon's view of the chain head: readiness (``/readyz``) and ``keeper_head_block``."""

from __future__ import annotations

import asyncio
from typing import NoReturn

from keeper.chain.rpc import JsonRpc
from keeper.errors import RpcError
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.obs.server import Readiness

log = get_logger(__name__)


class DaemonReadiness(Readiness):
    """``Readiness`` fed by the head watcher and the scan task: ready while the last scan is
    within ``max_lag_blocks`` of a head the node reported recently, and unready at once while
    the node does not answer (rather than ``max_head_age`` later)."""

    def __init__(self, max_lag_blocks: int = 2, max_head_age: float = 120.0) -> None:
        super().__init__(max_lag_blocks, max_head_age)
        self.node_error: str | None = None
        self.node_head: int | None = None  # the newest head the node reported
        self.scanned_block: int | None = None  # the block of the newest finished scan

    def saw_head(self, head: int) -> None:
        """The node answered with ``head``."""
        self.node_error = None
        self.node_head = head
        if self.scanned_block is not None:
            self.update(self.scanned_block, max(head, self.scanned_block))

    def scanned(self, block: int) -> None:
        """A scan of ``block`` finished."""
        self.scanned_block = block
        if self.node_head is not None:
            self.update(block, max(self.node_head, block))

    def check(self, now: float | None = None) -> tuple[bool, str]:
        if self.node_error is not None:
            return False, f"node unreachable: {self.node_error}"
        return super().check(now)


async def watch_head(rpc: JsonRpc, readiness: DaemonReadiness, metrics: Metrics,
                     interval: float) -> NoReturn:
    """Read the head every ``interval`` seconds, for readiness and ``keeper_head_block``.

    A heartbeat, not a retry: a node that does not answer is logged once when it goes away and
    once when it comes back, and makes the keeper unready meanwhile.
    """
    down = False
    while True:
        try:
            head = int(await rpc.call("eth_blockNumber"), 16)
        except RpcError as exc:
            metrics.rpc_errors.labels(method="eth_blockNumber").inc()
            if not down:
                log.warning("node_unreachable", error=str(exc))
            down = True
            readiness.node_error = str(exc)
        else:
            if down:
                log.info("node_reachable_again", head=head)
            down = False
            metrics.head_block.set(head)
            readiness.saw_head(head)
        await asyncio.sleep(interval)
