"""The scan's read-back in slices, one after the other: in a crash it is the biggest job the
scan gives the node, at the moment the first liquidations are simulated on it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from keeper.chain.multicall import MULTICALL3
from keeper.domain.account import AccountData, calculate_user_account_data
from keeper.pipeline.scan import HealthScanner
from keeper.pipeline.scan import read_back as read_back_module
from keeper.pipeline.scan.read_back import READ_BACK_SLICE, differs, read_back
from tests.unit.test_scanner import POOL, DictBook, FakeChain, _as_book, liquidatable, random_book


class Watched(FakeChain):
    """A ``FakeChain`` that takes a while to answer and counts its requests in flight."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.in_flight = 0
        self.most_in_flight = 0
        self.accounts: list[int] = []  # accounts read per request

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *,
                    timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        asked = len(self.asked)
        try:
            await asyncio.sleep(0.001)
            return await super().batch(calls, timeout=timeout, return_exceptions=return_exceptions)
        finally:
            self.in_flight -= 1
            self.accounts.append(len(self.asked) - asked)



def _accounts(size: int, seed: int, count: int
              ) -> tuple[DictBook, list[str], dict[str, AccountData]]:
    """A random book of ``size`` accounts, ``count`` of them in order, and the book's exact
    figures of those."""
    book = random_book(size, seed=seed)
    users = sorted(book.accounts)[:count]
    return book, users, {u: calculate_user_account_data(book.account(u), book.market())
                         for u in users}

async def test_the_read_back_goes_in_slices_one_at_a_time_and_keeps_the_order() -> None:
    book = random_book(1_000, seed=7)
    users = sorted(book.accounts)[:3 * READ_BACK_SLICE + 17]
    exact = {u: calculate_user_account_data(book.account(u), book.market()) for u in users}
    chain = Watched(book)
    read: list[bool] = []
    got = await read_back(chain, POOL, users, exact, book.block_number, 500, MULTICALL3,
                          lambda: read.append(True))
    # One request in flight at a time (the node answers our sends between two), of at most
    # a slice each; every account once, in order, and the book agreeing: no second read.
    assert chain.most_in_flight == 1
    assert chain.accounts == [READ_BACK_SLICE] * 3 + [17]
    assert chain.asked == users
    assert got == [exact[u] for u in users] and read == [True]


async def test_a_small_chunk_still_splits_a_slice_into_its_multicalls() -> None:
    book = random_book(400, seed=8)
    users = sorted(book.accounts)[:READ_BACK_SLICE]
    exact = {u: calculate_user_account_data(book.account(u), book.market()) for u in users}
    chain = Watched(book)
    await read_back(chain, POOL, users, exact, book.block_number, 30, MULTICALL3, lambda: None)
    assert chain.requests == [4]  # one request of the slice: multicalls of 30, 30, 30, 10
    assert chain.most_in_flight == 1



async def test_a_newer_block_stops_the_read_back_between_two_slices() -> None:
    book = random_book(1_000, seed=9)
    users = sorted(book.accounts)[:3 * READ_BACK_SLICE]
    exact = {u: calculate_user_account_data(book.account(u), book.market()) for u in users}
    chain = Watched(book)
    read: list[bool] = []
    # A block comes while the first slice is read: the read-back answers for that slice.
    got = await read_back(chain, POOL, users, exact, book.block_number, 500, MULTICALL3,
                          lambda: read.append(True), stale=lambda: bool(chain.accounts))
    assert chain.accounts == [READ_BACK_SLICE]
    assert got == [exact[u] for u in users[:READ_BACK_SLICE]] and read == [True]
    # Stale from the start: the first slice still goes (each scan gets somewhere).
    chain = Watched(book)
    got = await read_back(chain, POOL, users, exact, book.block_number, 500, MULTICALL3,
                          lambda: None, stale=lambda: True)
    assert chain.accounts == [READ_BACK_SLICE] and len(got) == READ_BACK_SLICE


async def test_a_stale_read_back_stops_before_a_disagreement_it_could_not_look_at_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_back_module, "READ_BACK_SLICE", 10)
    book, users, exact = _accounts(1_000, 10, 30)
    wrong = [users[i] for i in (3, 6, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27)]
    for u in wrong:
        exact[u] = replace(exact[u], total_debt_base=exact[u].total_debt_base + 1)
    chain = Watched(book)
    # No newer block: each disagreement is read once more, and every account answered.
    got = await read_back(chain, POOL, users, exact, book.block_number, 500, MULTICALL3,
                          lambda: None, stale=lambda: False)
    assert len(got) == 30 and chain.accounts == [10, 10, 10, 10, 2]
    # A block comes once the three slices are read: the second look takes one slice (ten of
    # the twelve), and the answers stop before the eleventh, which had only its first.
    chain = Watched(book)
    got = await read_back(chain, POOL, users, exact, book.block_number, 500, MULTICALL3,
                          lambda: None, stale=lambda: len(chain.accounts) >= 3)
    assert chain.accounts == [10, 10, 10, 10]
    assert got == [calculate_user_account_data(book.account(u), book.market())
                   for u in users[:25]]
    # A few disagreements (as from a node that lost logs) are all looked at twice even
    # when stale: the second look's first slice always goes.
    chain = Watched(book)
    got = await read_back(chain, POOL, users[:20], exact, book.block_number, 500, MULTICALL3,
                          lambda: None, stale=lambda: len(chain.accounts) >= 2)
    assert chain.accounts == [10, 10, 8] and len(got) == 20


async def test_a_scan_cut_short_keeps_the_books_flags_and_the_next_reads_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_back_module, "READ_BACK_SLICE", 20)
    book = random_book(1_200, seed=45)
    under = liquidatable(book)
    chain = FakeChain(DictBook(book.market(), dict(book.accounts)))
    scanner = HealthScanner(_as_book(book))
    flags: list[set[str]] = []
    found = await scanner.scan(chain, POOL, chunk=50, stale=lambda: True,
                               on_book=lambda f: flags.append({c.user for c in f}))
    first = list(chain.asked)
    # One slice read: its accounts confirmed; the others are the book's flags, not failures.
    assert len(first) == 20 and scanner.stats.last_unread > 0
    assert scanner.stats.chain_failures == 0 and scanner.stats.mismatches == 0
    assert {c.user for c in found} == under == flags[0]
    assert {c.user for c in found if c.confirmed_on_chain} == under & set(first)
    # The next scan (no newer block) reads the rest only: the first slice was vouched for.
    chain.asked.clear()
    found = await scanner.scan(chain, POOL, chunk=50)
    assert not set(chain.asked) & set(first) and scanner.stats.last_unread == 0
    assert scanner.stats.last_vouched == len(first)
    assert {c.user for c in found if c.confirmed_on_chain} == under


class SealingNode(Watched):
    """Answers its requests numbered in ``sealing`` (from 0) from ``next_book``, the state of a
    block it is sealing meanwhile (anvil does so even for a read by hash), and announces that
    block (its head moves) as it answers the last of them."""

    def __init__(self, book: DictBook, next_book: DictBook, sealing: set[int]) -> None:
        super().__init__(book)
        self.right, self.next_book, self.sealing = book, next_book, sealing

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *,
                    timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        n = len(self.accounts)  # requests answered so far
        if n not in self.sealing:
            return await super().batch(calls, timeout=timeout, return_exceptions=return_exceptions)
        self.book = self.next_book
        try:
            return await super().batch(calls, timeout=timeout, return_exceptions=return_exceptions)
        finally:
            self.book = self.right
            if n == max(self.sealing):
                self.head += 1


def _next_block(book: DictBook) -> DictBook:
    """``book`` one price move later (every price 10% down)."""
    market = book.market()
    moved = replace(market, prices={a: p * 9 // 10 for a, p in market.prices.items()})
    return DictBook(moved, dict(book.accounts), book.block_number + 1)


async def test_a_disagreement_read_again_while_the_node_sealed_a_block_is_read_once_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_back_module, "REREAD_DELAY", 0.0)
    monkeypatch.setattr(read_back_module, "SEALED_REREADS", (0.0, 0.0))
    book, users, exact = _accounts(400, 11, 40)
    # The first read and the second look both meet the next block's state, and the node
    # announces that block as it answers the second: a third look, which agrees with the book.
    chain = SealingNode(book, _next_block(book), {0, 1})
    got = await read_back(chain, POOL, users, exact, book.block_number, 500, MULTICALL3,
                          lambda: None)
    moved = [u for u in users if differs(exact[u], calculate_user_account_data(
        book.account(u), _next_block(book).market()))]
    assert moved, "the price move must change some accounts' figures"
    assert got == [exact[u] for u in users]
    assert chain.accounts == [40, len(moved), len(moved)]


async def test_a_disagreement_on_a_node_that_sealed_nothing_stands_after_one_second_look(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_back_module, "REREAD_DELAY", 0.0)
    book, users, exact = _accounts(400, 12, 40)
    wrong = users[5]
    exact[wrong] = replace(exact[wrong], total_debt_base=exact[wrong].total_debt_base + 1)
    chain = Watched(book)
    got = await read_back(chain, POOL, users, exact, book.block_number, 500, MULTICALL3,
                          lambda: None)
    # The book's error: looked at twice, no more, and the chain's figures answered.
    assert chain.accounts == [40, 1]
    assert got[5] == calculate_user_account_data(book.account(wrong), book.market())
