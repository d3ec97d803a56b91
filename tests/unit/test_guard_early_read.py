"""The oracle guard's early read: its read of a block goes out as the block arrives (the sync
reads the block meanwhile), and ``check`` takes it when it asks the same, else reads again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

from keeper.domain.oracle_guard import GuardParams
from keeper.obs.metrics import Metrics
from keeper.pipeline.oracle_guard import GuardSettings, OracleGuard

WETH, USDC = "0x" + "aa" * 20, "0x" + "bb" * 20
FEED_WETH, FEED_USDC, FEED_NEW = "0x" + "a1" * 20, "0x" + "b1" * 20, "0x" + "c1" * 20


class Node:
    """Answers the guard's batches (``symbol()``: none; ``latestRoundData()``: round data
    updated at the block's stamp) and keeps them."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, Sequence[Any]]]] = []

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *,
                    timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        self.batches.append(list(calls))
        await asyncio.sleep(0.01)
        words = [1, 2000 * 10**8, 100, 12_345, 1]
        return ["0x" + "".join(w.to_bytes(32, "big").hex() for w in words)] * len(calls)


def _book(number: int, sources: dict[str, str]) -> Any:
    market = SimpleNamespace(prices={WETH: 2000 * 10**8, USDC: 10**8}, reserves={})
    return SimpleNamespace(
        state=SimpleNamespace(read=SimpleNamespace(reserves=[WETH, USDC], sources=sources)),
        market=lambda: market, block_number=number, block_hash=_hash(number),
        block_timestamp=12_345)


def _hash(number: int) -> str:
    return "0x" + f"{number:064x}"


def _read_at(batch: list[tuple[str, Sequence[Any]]]) -> set[str]:
    return {params[1]["blockHash"] for _, params in batch}


async def test_check_takes_the_read_started_as_the_block_arrived() -> None:
    node = Node()
    settings = GuardSettings(GuardParams(500, 0, 0, 3), {}, (), None)
    guard = OracleGuard(cast(Any, node), settings, Metrics(), dex=None)
    sources = {WETH: FEED_WETH, USDC: FEED_USDC}
    await guard.check(_book(10, sources))  # learns the symbols, reads block 10
    assert len(node.batches) == 2 and _read_at(node.batches[1]) == {_hash(10)}

    # Block 11 arrives while the book is at 10: its read goes out at once.
    guard.read_early(_book(10, sources), _hash(11))
    assert len(node.batches) == 2  # sent on the loop's next turn, not before
    await asyncio.sleep(0)
    assert len(node.batches) == 3 and _read_at(node.batches[2]) == {_hash(11)}
    await guard.check(_book(11, sources))
    assert len(node.batches) == 3  # the check read nothing of its own

    # Block 12 moves WETH to a new feed: the early read (on block 11's sources) is not it.
    guard.read_early(_book(11, sources), _hash(12))
    await asyncio.sleep(0)
    moved = {WETH: FEED_NEW, USDC: FEED_USDC}
    await guard.check(_book(12, moved))
    assert len(node.batches) == 5
    assert _read_at(node.batches[4]) == {_hash(12)}
    assert {params[0]["to"] for _, params in node.batches[4]} == {FEED_NEW, FEED_USDC}
    assert {guard.symbol(a) for a in guard.states} == {WETH, USDC}


async def test_without_the_symbols_known_nothing_is_read_early() -> None:
    node = Node()
    guard = OracleGuard(cast(Any, node), GuardSettings(GuardParams(500, 0, 0, 3), {}, (), None),
                        Metrics(), dex=None)
    guard.read_early(_book(10, {WETH: FEED_WETH, USDC: FEED_USDC}), _hash(11))
    await asyncio.sleep(0.02)
    assert node.batches == []
