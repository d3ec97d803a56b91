"""The scan's read-back in slices, one after the other: in a crash it is the biggest job the
scan gives the node, at the moment the first liquidations are simulated on it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from keeper.chain.multicall import MULTICALL3
from keeper.domain.account import calculate_user_account_data
from keeper.pipeline.scan.read_back import READ_BACK_SLICE, read_back
from tests.unit.test_scanner import POOL, FakeChain, random_book


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

