"""A cancellation that is not the caller's is a transport error of the request; the caller's
own still cancels it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.errors import RpcError


class _Session:
    """Stands in for aiohttp's session: ``post`` awaits ``waiting`` (a future of its own)."""

    def __init__(self, waiting: asyncio.Future[None]) -> None:
        self.waiting = waiting
        self.closed = False

    @asynccontextmanager
    async def post(self, *_: Any, **__: Any) -> AsyncIterator[None]:
        await self.waiting
        yield None

    async def close(self) -> None:
        self.closed = True


def _rpc(waiting: asyncio.Future[None]) -> HttpRpc:
    rpc = HttpRpc("http://127.0.0.1:1", timeout=5)
    rpc._session = _Session(waiting)  # type: ignore[assignment]
    return rpc


async def test_a_future_of_the_client_cancelled_under_the_request_is_a_transport_error() -> None:
    waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    call = asyncio.create_task(_rpc(waiting).call("eth_blockNumber"))
    await asyncio.sleep(0)
    waiting.cancel()  # the client's own future, not the task awaiting it
    with pytest.raises(RpcError, match="cancelled under us"):
        await call


async def test_the_callers_own_cancellation_still_cancels_the_request() -> None:
    waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    call = asyncio.create_task(_rpc(waiting).call("eth_blockNumber"))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert call.cancelled()
