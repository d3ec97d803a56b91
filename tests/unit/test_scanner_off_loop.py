"""The scanner's rebuilds run in a worker thread: the event loop keeps running meanwhile.

A rebuild is held in the worker until a coroutine scheduled on the loop has run; had the
rebuild run on the loop, that coroutine could not run and the rebuild would time out waiting.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import replace
from typing import Any

import pytest

from keeper.domain.account import EModeCategory
from keeper.pipeline.scan import HealthScanner
from keeper.pipeline.scan.prefilter import PrefilterIndex
from keeper.protocols.aave_v3.book import BookBlock
from tests.unit.test_account import EMODES
from tests.unit.test_scanner import (
    _as_book,
    _position_book,
    liquidatable,
    random_account,
    random_book,
    user_address,
)


class _HeldBuild:
    """Stands in for ``PrefilterIndex.build``: records the thread and holds the build until
    the loop has run ``heartbeat``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop_ran = threading.Event()
        self.started = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.threads: list[int] = []
        self.waited: list[bool] = []
        real = PrefilterIndex.build

        def build(book: Any, **kw: Any) -> PrefilterIndex:
            self.threads.append(threading.get_ident())
            loop.call_soon_threadsafe(self.started.set)
            self.waited.append(self.loop_ran.wait(timeout=10))
            return real(book, **kw)

        monkeypatch.setattr(PrefilterIndex, "build", staticmethod(build))

    async def heartbeat(self) -> None:
        await self.started.wait()
        self.loop_ran.set()

    def ran_off_loop(self) -> bool:
        loop_thread = threading.get_ident()
        return bool(self.threads) and all(self.waited) and loop_thread not in self.threads


async def test_a_layout_change_rebuilds_in_a_worker_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    book = random_book(1_500, seed=71)
    scanner = HealthScanner(_as_book(book))
    book.market_ = replace(book.market_, emode_categories={
        **EMODES, 3: EModeCategory(9000, 9100, 10100, label="new")})
    held = _HeldBuild(monkeypatch)
    beat = asyncio.create_task(held.heartbeat())
    await scanner.sync_off_loop()
    await beat
    assert held.ran_off_loop()
    assert scanner.stats.rebuilds == 2
    assert liquidatable(book) <= set(scanner.prefilter_candidates())


async def test_running_out_of_rows_rebuilds_in_a_worker_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    book = random_book(10, seed=73)
    scanner = HealthScanner(_as_book(book))
    rng = random.Random(2)
    fresh = {user_address(6_000_000 + i): random_account(rng, book.market())
             for i in range(1_100)}
    book.accounts.update(fresh)
    held = _HeldBuild(monkeypatch)
    beat = asyncio.create_task(held.heartbeat())
    await scanner.sync_off_loop(fresh)
    await beat
    assert held.ran_off_loop()
    assert scanner.stats.rebuilds == 2
    assert set(fresh) <= set(scanner.users)
    assert liquidatable(book) <= set(scanner.prefilter_candidates())


async def test_a_sync_without_rebuild_stays_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    book = random_book(200, seed=79)
    scanner = HealthScanner(_as_book(book))
    held = _HeldBuild(monkeypatch)
    touched = list(book.accounts)[:5]
    await scanner.sync_off_loop(touched)
    assert held.threads == [] and scanner.stats.rebuilds == 1
    assert scanner.stats.rows_set == scanner.size + len(touched)


async def test_create_builds_from_a_snapshot_and_follows_the_live_book(
        monkeypatch: pytest.MonkeyPatch) -> None:
    book = _position_book(random_book(500, seed=83))
    held = _HeldBuild(monkeypatch)
    applied = asyncio.Event()

    async def apply_a_block_meanwhile() -> None:
        await held.heartbeat()
        b = book.block
        book.begin_block(BookBlock(b.number + 1, "0x02", b.hash, b.timestamp + 12))
        book.end_block()
        applied.set()

    other = asyncio.create_task(apply_a_block_meanwhile())
    scanner = await HealthScanner.create(book)
    await other
    assert applied.is_set() and held.ran_off_loop()
    assert scanner.book is book and scanner.book.block_number == book.block_number
    assert set(scanner.users) == set(book.users())
