"""The scan task's read-back and the next block: a block applied while the chain is read back
stops the read (the next slice would hold up that block's scan), and the book's flags, out
already, stand till that scan's; a scan with no newer block publishes the chain's answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import pytest

from keeper.app import steps
from keeper.app.inflight import Lane
from keeper.app.scan_task import Candidates, ScanTask
from keeper.chain.multicall import MULTICALL3
from keeper.domain.account import UserAccount
from keeper.domain.reserve_config import UserConfiguration
from keeper.errors import KeeperError
from keeper.obs.metrics import Metrics
from keeper.pipeline.scan import HealthScanner
from keeper.pipeline.scan import read_back as read_back_module
from keeper.protocols.aave_v3.book import BlockUpdate
from tests.unit.test_scanner import POOL, DictBook, FakeChain, _as_book, liquidatable, random_book


class Arriving(FakeChain):
    """A ``FakeChain`` during whose first answer the sync applies a block (``arrives``)."""

    def __init__(self, book: DictBook, updates: asyncio.Queue[BlockUpdate], *,
                 arrives: bool) -> None:
        super().__init__(book)
        self.updates = updates
        self.arrives = arrives

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *,
                    timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        out = await super().batch(calls, timeout=timeout, return_exceptions=return_exceptions)
        if self.arrives and len(self.requests) == 1:
            self.updates.put_nowait(cast(BlockUpdate, object()))  # only its presence counts
        return out


async def _scanned(arrives: bool, healed: str = "", guard: object = None, flying: str = "",
                   ) -> tuple[set[str], Arriving, Candidates, ScanTask]:
    """A first scan of the book; ``healed``: an account the chain says has no position."""
    book = random_book(1_200, seed=45)
    updates: asyncio.Queue[BlockUpdate] = asyncio.Queue()
    on_chain = dict(book.accounts)
    if healed:
        on_chain[healed] = UserAccount(UserConfiguration())
    chain = Arriving(DictBook(book.market(), on_chain), updates, arrives=arrives)
    keeper = SimpleNamespace(
        sync=SimpleNamespace(book=_as_book(book), reader=None, on_update=lambda callback: None,
                            on_head=lambda callback: None),
        planner=None, executor=None, oracle_guard=guard, decisions=None, metrics=Metrics(),
        rpc=chain, contracts=SimpleNamespace(pool=POOL, multicall3=MULTICALL3),
        cfg=SimpleNamespace(scanner=SimpleNamespace(confirm_batch_size=50)))
    candidates = Candidates()
    lane = Lane(8)
    if flying:
        lane.take(flying)
    task = ScanTask(cast(Any, keeper), updates, cast(Any, None),
                    cast(Any, SimpleNamespace(scanned=lambda block: None)), lane, candidates)
    repaired: list[str] = []

    async def repair(book: object, reader: object, users: set[str]) -> list[str]:
        repaired.extend(users)  # what the chain contradicted goes to the book's repair
        return []

    task.repair = cast(Any, SimpleNamespace(repair=repair, repaired=repaired))
    task.scanner = await task._scan(None, set(), True)
    return liquidatable(book), chain, candidates, task


async def _last_read() -> str:
    """The liquidatable account the read-back reads last."""
    under, chain, _, _ = await _scanned(arrives=False)
    return [u for u in chain.asked if u in under][-1]


async def test_with_no_newer_block_the_chains_answer_replaces_the_books_flags(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_back_module, "READ_BACK_SLICE", 20)
    healed = await _last_read()
    under, chain, candidates, task = await _scanned(arrives=False, healed=healed)
    assert task.scanner is not None and task.scanner.stats.last_unread == 0
    assert set(chain.asked) >= under and candidates.scans == 2
    assert {c.user for c in candidates.items} == under - {healed}
    assert all(c.confirmed_on_chain for c in candidates.items)
    assert cast(Any, task.repair).repaired == [healed]


async def test_a_block_applied_during_the_read_back_cuts_it_short(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_back_module, "READ_BACK_SLICE", 20)
    healed = await _last_read()
    under, chain, candidates, task = await _scanned(arrives=True, healed=healed)
    assert task.scanner is not None
    # One slice read, the rest left to the next scan; the book's flags, published before
    # the chain was asked, stand till then (the account the chain would clear included).
    assert len(chain.asked) == 20 and task.scanner.stats.last_unread > len(under) - 20
    assert healed not in chain.asked and task.scanner.stats.chain_failures == 0
    assert candidates.scans == 1 and {c.user for c in candidates.items} == under


async def test_while_a_liquidation_is_in_flight_the_read_back_reads_one_slice_a_scan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_back_module, "READ_BACK_SLICE", 20)
    under, chain, candidates, task = await _scanned(arrives=False, flying="0x" + "ee" * 20)
    assert task.scanner is not None
    # The node's time goes to our simulations and sends: the rest waits for the next scans,
    # and the book's flags stand till then.
    assert len(chain.asked) == 20 and task.scanner.stats.last_unread > len(under) - 20
    assert candidates.scans == 1 and {c.user for c in candidates.items} == under


class SlowGuard:
    """An oracle guard whose check takes ``read_s`` (or fails), logging what happens when."""

    def __init__(self, events: list[str], read_s: float, fails: bool = False) -> None:
        self.events = events
        self.read_s = read_s
        self.fails = fails
        self.last_check_seconds = 0.0

    async def check(self, book: object) -> dict[str, object]:
        self.events.append("guard_read")
        await asyncio.sleep(self.read_s)
        if self.fails:
            raise KeeperError("node down")
        self.events.append("guard_answered")
        return {}

    def release(self, book: object, found: list[Any]) -> list[Any]:
        self.events.append("released")
        return found


def _record_book_math(monkeypatch: pytest.MonkeyPatch, events: list[str]) -> None:
    book_pass = HealthScanner._book_pass

    def recorded(self: HealthScanner, *args: Any) -> Any:
        events.append("book_math")
        return book_pass(self, *args)

    monkeypatch.setattr(HealthScanner, "_book_pass", recorded)


async def test_the_books_math_does_not_wait_for_the_guards_check_and_its_flags_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    _record_book_math(monkeypatch, events)
    under, _, candidates, _ = await _scanned(arrives=False, guard=SlowGuard(events, 0.2))
    # The book's math runs while the guard's check is out; the book's flags (then the
    # chain's) are released once it has answered.
    assert events.index("book_math") < events.index("guard_answered") < events.index("released")
    assert {c.user for c in candidates.items} == under and under


async def test_a_failed_guard_check_releases_no_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    _record_book_math(monkeypatch, events)
    with pytest.raises(KeeperError, match="node down"):
        await _scanned(arrives=False, guard=SlowGuard(events, 0.01, fails=True))
    assert "guard_read" in events and "released" not in events


async def test_a_scan_that_fails_first_sees_the_guards_check_to_its_end() -> None:
    # The check may hold a breaker reset request it took from its file: not cancelled.
    events: list[str] = []
    keeper = SimpleNamespace(oracle_guard=SlowGuard(events, 0.05), sync=SimpleNamespace(book=None))
    with pytest.raises(KeeperError, match="block gone"):
        async with steps.guard_observing(cast(Any, keeper)):
            await asyncio.sleep(0)
            raise KeeperError("block gone")
    assert events == ["guard_read", "guard_answered"]


def test_a_heads_reads_go_out_as_it_arrives() -> None:
    # The oracle guard's read and the planner's round reads need the block, not the book at
    # it: they go out as the head arrives, while the sync reads and applies it.
    heard: list[Any] = []
    calls: list[tuple[object, ...]] = []
    book = object()
    guard = SimpleNamespace(read_early=lambda b, h: calls.append(("guard", h, b is book)))
    planner = SimpleNamespace(venue=SimpleNamespace(a_tokens={"0xweth": "0xaweth"}),
                              prefetch=lambda h, assets: calls.append(("plan", h, *assets)))
    keeper = SimpleNamespace(
        sync=SimpleNamespace(book=book, on_update=lambda callback: None, on_head=heard.append),
        oracle_guard=guard, planner=planner, executor=object(), rpc=None, metrics=Metrics())
    ScanTask(cast(Any, keeper), asyncio.Queue(), cast(Any, None), cast(Any, None), Lane(8),
             Candidates())
    [arriving] = heard
    arriving(SimpleNamespace(hash="0xb1", number=7))
    assert calls == [("guard", "0xb1", True), ("plan", "0xb1", "0xweth")]
