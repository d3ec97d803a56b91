"""The keeper's HTTP endpoints for operators: ``/metrics``, ``/healthz``, ``/readyz``.

- ``/metrics``: Prometheus text exposition of a ``Metrics`` registry.
- ``/healthz``: 200 while the process (and its event loop) answers at all.
- ``/readyz``: 200 when the keeper has processed a block within ``max_lag_blocks`` of the chain
  head it last saw, and saw that head within ``max_head_age`` seconds; 503 otherwise, with the
  reason in the body.

Usage::

    readiness = Readiness(max_lag_blocks=2)
    async with ObsServer(metrics, readiness, host, port) as server:  # port 0 picks a free port
        ...                     # call readiness.update(processed, head) on each block
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType

from aiohttp import web

from keeper.obs.metrics import CONTENT_TYPE, Metrics


class Readiness:
    """Whether the keeper keeps up with the chain. Feed it with ``update`` on each block."""

    def __init__(self, max_lag_blocks: int = 2, max_head_age: float = 120.0) -> None:
        self.max_lag_blocks = max_lag_blocks
        self.max_head_age = max_head_age
        self.processed: int | None = None
        self.head: int | None = None
        self._updated_at: float | None = None

    def update(self, processed: int, head: int, now: float | None = None) -> None:
        """Record the last block processed and the chain head seen (``now`` = loop time)."""
        self.processed = processed
        self.head = head
        self._updated_at = asyncio.get_running_loop().time() if now is None else now

    def check(self, now: float | None = None) -> tuple[bool, str]:
        """(ready, reason)."""
        if self.processed is None or self.head is None or self._updated_at is None:
            return False, "no block processed yet"
        t = asyncio.get_running_loop().time() if now is None else now
        if t - self._updated_at > self.max_head_age:
            return False, f"no new head for {t - self._updated_at:.0f}s"
        lag = self.head - self.processed
        if lag > self.max_lag_blocks:
            return False, f"{lag} blocks behind head {self.head}"
        return True, f"synced to {self.processed} (head {self.head})"

    def body(self, now: float | None = None) -> dict[str, object]:
        """The ``/readyz`` JSON: ready, the reason, and what it is based on."""
        ready, reason = self.check(now)
        return {"ready": ready, "reason": reason, "processed": self.processed, "head": self.head}


class ObsServer:
    """aiohttp server for the three endpoints; ``port=0`` binds a free port (see ``.port``)."""

    def __init__(self, metrics: Metrics, readiness: Readiness, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _metrics(self, _: web.Request) -> web.Response:
        body = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        body = self.readiness.body()
        return web.Response(status=200 if body["ready"] else 503, text=json.dumps(body) + "\n",
                            content_type="application/json")

    async def start(self) -> int:
        """Bind and serve; returns the bound port."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ObsServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
