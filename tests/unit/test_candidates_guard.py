"""The oracle guard's read of a block runs beside the book's math: the book's flags are heard
once the guard has observed the block, released by it, and before the chain is asked."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from keeper.app import steps
from keeper.errors import RpcError


class _Guard:
    def __init__(self, read_seconds: float, fails: bool = False) -> None:
        self.read_seconds, self.fails = read_seconds, fails
        self.observed = False

    async def check(self, book: Any) -> dict[str, Any]:
        await asyncio.sleep(self.read_seconds)
        if self.fails:
            raise RpcError("node down")
        self.observed = True
        return {}

    def release(self, book: Any, found: list[Any]) -> list[Any]:
        assert self.observed, "released before the guard observed the block"
        return [c for c in found if c.user != "held"]


class _Scanner:
    """The book's flags at once, the chain's answer ``chain_seconds`` later."""

    def __init__(self, heard: list[tuple[str, list[str]]], chain_seconds: float,
                 guard: _Guard | None = None) -> None:
        self.heard, self.chain_seconds, self.guard = heard, chain_seconds, guard
        self.began_while_guard_read: bool | None = None

    async def scan(self, rpc: Any, pool: Any, *, chunk: int, multicall: Any,
                   on_book: Any, ready: Any = None) -> list[Any]:
        if self.guard is not None:
            self.began_while_guard_read = not self.guard.observed
        flagged = [SimpleNamespace(user=u, confirmed_on_chain=True) for u in ("a", "held")]
        if ready is not None:
            await ready
        if on_book is not None:
            on_book(flagged)
        await asyncio.sleep(self.chain_seconds)
        self.heard.append(("chain", [c.user for c in flagged]))
        return flagged


def _keeper(guard: _Guard) -> Any:
    return SimpleNamespace(
        oracle_guard=guard, sync=SimpleNamespace(book=SimpleNamespace()), rpc=None,
        contracts=SimpleNamespace(pool="0xpool", multicall3="0xmc"), decisions=None,
        cfg=SimpleNamespace(scanner=SimpleNamespace(confirm_batch_size=500)),
        metrics=SimpleNamespace(liquidatable=SimpleNamespace(set=lambda n: None)))


@pytest.mark.parametrize(("guard_seconds", "chain_seconds"), [(0.0, 0.05), (0.02, 0.05),
                                                              (0.05, 0.0)])
async def test_the_books_flags_wait_for_the_guard_and_come_before_the_chain(
        guard_seconds: float, chain_seconds: float) -> None:
    heard: list[tuple[str, list[str]]] = []
    guard = _Guard(guard_seconds)
    scanner = _Scanner(heard, chain_seconds, guard)
    found = await steps.candidates(
        _keeper(guard), scanner,  # type: ignore[arg-type]
        on_book=lambda flagged: heard.append(("book", [c.user for c in flagged])))
    assert [c.user for c in found] == ["a"]
    if guard_seconds > 0:  # the book's math did not wait for the guard's read
        assert scanner.began_while_guard_read
    # Heard once, released by the guard, before the chain's answer.
    assert heard == [("book", ["a"]), ("chain", ["a", "held"])]


async def test_a_failed_guard_read_fails_the_scan_and_releases_nothing_early() -> None:
    heard: list[tuple[str, list[str]]] = []
    with pytest.raises(RpcError):
        await steps.candidates(
            _keeper(_Guard(0.01, fails=True)), _Scanner(heard, 0.02),  # type: ignore[arg-type]
            on_book=lambda flagged: heard.append(("book", [c.user for c in flagged])))
    assert not [h for h in heard if h[0] == "book"]


async def test_a_scan_that_fails_leaves_no_guard_read_running() -> None:
    guard = _Guard(10.0)

    class Failing(_Scanner):
        async def scan(self, *a: Any, **kw: Any) -> list[Any]:
            raise RpcError("chain read failed")

    with pytest.raises(RpcError):
        await steps.candidates(_keeper(guard), Failing([], 0.0))  # type: ignore[arg-type]
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
