"""A backlog of heads in one step: the follower's events batched as they are ready
(keeper.chain.head_batches), and a ranged getLogs split back into blocks
(keeper.pipeline.block_events.events_by_block)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from keeper.chain.head_batches import ChainEvent, head_batches, runs
from keeper.chain.types import Head, Log, Reorg
from keeper.errors import RpcError
from keeper.pipeline.block_events import events_by_block
from keeper.protocols.aave_v3 import events as ev


def head(n: int, fork: str = "a") -> Head:
    return Head(n, f"0x{fork}{n}", f"0x{fork}{n - 1}", 1_000 + n, None)


async def source(events: Sequence[ChainEvent], *, gate: asyncio.Event | None = None,
                 fail: Exception | None = None) -> AsyncIterator[ChainEvent]:
    for i, e in enumerate(events):
        if gate is not None and i == 1:
            await gate.wait()  # the first comes alone, the rest only once let through
        yield e
    if fail is not None:
        raise fail


async def test_a_backlog_comes_in_one_batch_and_a_single_head_alone() -> None:
    gate = asyncio.Event()
    heads = [head(n) for n in range(1, 8)]
    got = []
    async for batch in head_batches(source(heads, gate=gate), limit=100):
        got.append([h.number for h in batch if isinstance(h, Head)])
        if len(got) == 1:
            gate.set()
            await asyncio.sleep(0.01)  # the consumer is busy: six more heads arrive
    assert got == [[1], [2, 3, 4, 5, 6, 7]]


async def test_the_limit_splits_a_long_backlog() -> None:
    heads = [head(n) for n in range(1, 11)]
    sizes = []
    async for batch in head_batches(source(heads), limit=4):
        sizes.append(len(batch))
        await asyncio.sleep(0.01)
    assert sum(sizes) == 10 and max(sizes) <= 4


async def test_a_follower_error_is_raised_after_the_events_before_it() -> None:
    seen: list[int] = []
    with pytest.raises(ValueError, match="too deep"):
        async for batch in head_batches(source([head(1), head(2)], fail=ValueError("too deep"))):
            seen += [h.number for h in batch if isinstance(h, Head)]
    assert seen == [1, 2]


async def test_closing_the_batches_stops_the_follower() -> None:
    stopped = asyncio.Event()

    async def endless() -> AsyncIterator[ChainEvent]:
        try:
            n = 0
            while True:
                n += 1
                yield head(n)
                await asyncio.sleep(0.001)
        finally:
            stopped.set()

    batches = head_batches(endless())
    await anext(batches)
    await batches.aclose()
    assert stopped.is_set()


def test_runs_split_at_reorgs_and_gaps() -> None:
    reorg = Reorg(head(2), 1, head(3))
    batch: list[ChainEvent] = [head(1), head(2), head(3), reorg, head(3, "b"), head(4, "b"),
                               head(9)]
    out = runs(batch)
    assert [r if isinstance(r, Reorg) else [h.number for h in r] for r in out] == [
        [1, 2, 3], reorg, [3, 4], [9]]


def log_at(h: Head, index: int, block_hash: str | None = None) -> Log:
    return Log("0xpool", ("0xtopic",), "0x", h.number, block_hash or h.hash, "0xtx", index)


def supply(h: Head, user: str) -> ev.Supply:
    return ev.Supply(address="0xpool", block_number=h.number, log_index=0, reserve="0xasset",
                     user=user, on_behalf_of=user, amount=1)


def test_a_ranged_get_logs_is_split_by_block() -> None:
    heads = [head(n) for n in range(5, 9)]
    events = [supply(heads[0], "0xu1"), supply(heads[2], "0xu2"), supply(heads[2], "0xu3")]
    logs = [log_at(heads[0], 0), log_at(heads[2], 0), log_at(heads[2], 1)]
    by_block = events_by_block(heads, events, logs)
    assert by_block is not None
    users = {n: [e.user for e in es if isinstance(e, ev.Supply)] for n, es in by_block.items()}
    assert users == {5: ["0xu1"], 7: ["0xu2", "0xu3"]}


def test_a_range_that_moved_under_the_headers_is_refused() -> None:
    heads = [head(n) for n in range(5, 9)]
    # A log from another branch's block 6: the chain reorganised between headers and logs.
    assert events_by_block(heads, [], [log_at(heads[1], 0, block_hash="0xb6")]) is None
    # Heads that do not chain.
    assert events_by_block([head(5), head(6, "b")], [], []) is None


async def test_a_follower_cancelled_from_under_it_is_an_error_not_a_silent_end() -> None:
    # A CancelledError from inside the follower (a library's future cancelled under it, not
    # the consumer's cancel) passes every ``except Exception``: the pump ended and its
    # consumer waited for ever. The consumer gets an error instead, after what came before.
    async def cancelled_under() -> AsyncIterator[ChainEvent]:
        yield head(1)
        raise asyncio.CancelledError

    seen: list[int] = []
    with pytest.raises(RpcError, match="cancelled under it"):
        async with asyncio.timeout(2.0):
            async for batch in head_batches(cancelled_under()):
                seen += [h.number for h in batch if isinstance(h, Head)]
    assert seen == [1]
