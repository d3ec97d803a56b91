"""ReorgTracker bookkeeping and HeadFollower's backfill / walk-back, against an in-memory chain."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.heads import HeadFollower, fetch_head_prefix, fetch_heads
from keeper.chain.reorg import Fit, ReorgTooDeep, ReorgTracker
from keeper.chain.types import ChainEvent, Head, Reorg
from keeper.errors import RpcError, RpcNotAvailable

_salt = itertools.count(1)


def make_head(number: int, parent: str, branch: int) -> Head:
    return Head(number, f"0x{branch:08x}{number:056x}", parent, 1_700_000_000 + number, 7)


def linear(n: int, branch: int = 0, start: Head | None = None) -> list[Head]:
    heads = [start or make_head(0, "0x" + "00" * 32, branch)]
    while len(heads) < n:
        heads.append(make_head(heads[-1].number + 1, heads[-1].hash, branch))
    return heads


class FakeChain:
    """Canonical blocks by number plus every block ever made by hash; answers like a node."""

    def __init__(self, length: int = 1) -> None:
        self.canonical = linear(length)
        self.by_hash = {h.hash: h for h in self.canonical}
        self.requests: list[str] = []
        self.fail_next = 0

    def mine(self, n: int = 1) -> None:
        for _ in range(n):
            tip = self.canonical[-1]
            self._add(make_head(tip.number + 1, tip.hash, 0 if tip.hash[2:10] == "00000000" else int(tip.hash[2:10], 16)))

    def reorg(self, depth: int) -> None:
        """Replace the last ``depth`` blocks with a new branch of the same length."""
        branch = next(_salt)
        keep = self.canonical[: len(self.canonical) - depth]
        self.canonical = keep
        for _ in range(depth):
            tip = self.canonical[-1]
            self._add(make_head(tip.number + 1, tip.hash, branch))

    def _add(self, head: Head) -> None:
        self.canonical.append(head)
        self.by_hash[head.hash] = head

    @property
    def tip(self) -> Head:
        return self.canonical[-1]

    @staticmethod
    def as_json(h: Head | None) -> dict[str, str] | None:
        if h is None:
            return None
        return {"number": hex(h.number), "hash": h.hash, "parentHash": h.parent_hash,
                "timestamp": hex(h.timestamp), "baseFeePerGas": hex(h.base_fee or 0)}

    async def call(self, method: str, params: Sequence[Any] = (), *, timeout: float | None = None) -> Any:
        self.requests.append(method)
        if self.fail_next:
            self.fail_next -= 1
            raise RpcError("flaky")
        if method == "eth_getBlockByNumber":
            tag = params[0]
            n = self.tip.number if tag == "latest" else int(tag, 16)
            return self.as_json(self.canonical[n] if n < len(self.canonical) else None)
        if method == "eth_getBlockByHash":
            return self.as_json(self.by_hash.get(params[0]))
        raise AssertionError(method)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, timeout: float | None = None,
                    return_exceptions: bool = False) -> list[Any]:
        return [await self.call(m, p) for m, p in calls]


async def from_list(heads: Sequence[Head]) -> AsyncIterator[Head]:
    for h in heads:
        yield h


async def feed(chain: FakeChain, heads: Sequence[Head], **kw: Any) -> list[ChainEvent]:
    """Ingest each head in turn, as if the source delivered them one by one."""
    follower = HeadFollower(chain, from_list(()), **kw)
    return [e for h in heads async for e in follower.ingest(h)]


async def collect(follower: HeadFollower) -> list[ChainEvent]:
    return [e async for e in follower]


# -- ReorgTracker -------------------------------------------------------------------------


def test_tracker_classifies_heads() -> None:
    chain = linear(6)
    t = ReorgTracker(window=4)
    assert t.fit(chain[0]) is Fit.FIRST
    for h in chain[:4]:
        t.push(h)
    assert t.fit(chain[4]) is Fit.EXTENDS
    assert t.fit(chain[2]) is Fit.KNOWN
    assert t.fit(chain[5]) is Fit.GAP
    other = make_head(4, "0x" + "ab" * 32, 9)
    assert t.fit(other) is Fit.FORK
    same_height = make_head(3, chain[2].hash, 9)
    assert t.fit(same_height) is Fit.FORK and t.links(same_height)
    with pytest.raises(ValueError):
        t.push(chain[5])


def test_tracker_keeps_a_window_and_rewinds() -> None:
    chain = linear(10)
    t = ReorgTracker(window=4)
    for h in chain:
        t.push(h)
    assert len(t) == 4 and t.oldest == chain[6] and t.tip == chain[9]
    assert t.hash_at(5) is None and t.hash_at(7) == chain[7].hash
    reorg = t.rewind(7)
    assert reorg == Reorg(common_ancestor=chain[7], depth=2, old_tip=chain[9])
    assert t.tip == chain[7]
    assert t.rewind(7) is None
    with pytest.raises(ReorgTooDeep):
        t.rewind(5)


# -- HeadFollower -------------------------------------------------------------------------


async def test_follower_backfills_a_gap_in_order() -> None:
    chain = FakeChain(3)
    chain.mine(7)  # 0..9
    source = [chain.canonical[1], chain.canonical[2], chain.canonical[6], chain.canonical[9]]
    events = await feed(chain, source, fetch_batch=2)
    assert events == chain.canonical[1:10]


async def test_follower_reports_reorg_with_common_ancestor() -> None:
    chain = FakeChain(6)  # 0..5
    seen = list(chain.canonical[1:6])
    chain.reorg(3)  # replaces 3, 4, 5
    chain.mine(1)  # the next head, 6', is what tells us
    events = await feed(chain, [*seen, chain.tip])
    assert events[:5] == seen
    reorg = events[5]
    assert isinstance(reorg, Reorg)
    assert reorg.common_ancestor == seen[1] and reorg.depth == 3 and reorg.old_tip == seen[-1]
    assert events[6:] == chain.canonical[3:7]


async def test_follower_same_height_replacement() -> None:
    chain = FakeChain(4)
    seen = list(chain.canonical[:4])
    chain.reorg(1)
    events = await feed(chain, [*seen, chain.tip])
    assert events[4] == Reorg(common_ancestor=seen[2], depth=1, old_tip=seen[3])
    assert events[5:] == [chain.tip]


async def test_follower_takes_only_the_newest_waiting_head() -> None:
    chain = FakeChain(8)
    # Without start/known the first head taken starts the chain; older queued heads are dropped.
    assert await collect(HeadFollower(chain, from_list(chain.canonical[3:]))) == [chain.tip]


async def test_follower_start_and_known_checkpoint() -> None:
    chain = FakeChain(12)
    events = await collect(HeadFollower(chain, from_list([chain.tip]), start=8))
    assert events == chain.canonical[8:12]
    known = chain.canonical[2:5]
    events = await collect(HeadFollower(chain, from_list([chain.tip]), known=known))
    assert events == chain.canonical[5:12]


async def test_follower_too_deep_reorg_raises() -> None:
    chain = FakeChain(10)
    seen = list(chain.canonical[1:10])
    chain.reorg(6)
    with pytest.raises(ReorgTooDeep):
        await feed(chain, [*seen, chain.tip], window=4)


async def test_follower_retries_transport_errors_during_backfill() -> None:
    chain = FakeChain(2)
    chain.mine(5)
    chain.fail_next = 2
    follower = HeadFollower(chain, from_list([chain.tip]), start=1, retry_delay=0.001)
    assert await collect(follower) == chain.canonical[1:]


def replay(events: Sequence[ChainEvent]) -> list[Head]:
    """Apply events as a consumer would, checking the follower's promises on the way."""
    out: list[Head] = []
    for e in events:
        if isinstance(e, Reorg):
            assert out and out[-1] == e.old_tip
            idx = next(i for i, h in enumerate(out) if h == e.common_ancestor)
            assert len(out) - 1 - idx == e.depth
            del out[idx + 1:]
        else:
            if out:
                assert e.number == out[-1].number + 1 and e.parent_hash == out[-1].hash
            out.append(e)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["mine", "reorg"]), st.integers(1, 5), st.booleans()),
                min_size=1, max_size=25))
async def test_follower_output_always_replays_to_the_canonical_chain(
    ops: list[tuple[str, int, bool]],
) -> None:
    chain = FakeChain(2)
    observed: list[Head] = [chain.tip]
    for op, n, observe in ops:
        if op == "mine":
            chain.mine(n)
        else:
            # Never below the first head we saw: no follower can know what came before it.
            depth = min(n, chain.tip.number - observed[0].number)
            if depth:
                chain.reorg(depth)
        if observe:  # sources miss heads: only some states of the chain are seen
            observed.append(chain.tip)
    observed.append(chain.tip)
    events = await feed(chain, observed, window=64)
    assert replay(events) == chain.canonical[observed[0].number:]


class HoleyChain(FakeChain):
    """A node that reports its tip but answers null for some blocks below it by number (anvil
    after ``evm_revert``); by hash it has them all."""

    def __init__(self, length: int, holes: set[int]) -> None:
        super().__init__(length)
        self.holes = holes

    async def call(self, method: str, params: Sequence[Any] = (), *,
                   timeout: float | None = None) -> Any:
        if method == "eth_getBlockByNumber" and params[0] != "latest" \
                and int(params[0], 16) in self.holes:
            self.requests.append(method)
            return None
        return await super().call(method, params, timeout=timeout)


async def test_a_hole_below_the_tip_is_crossed_by_parent_hash_and_a_reorg_still_found() -> None:
    chain = HoleyChain(11, holes=set())  # 0..10
    known = chain.canonical[3:11]
    chain.reorg(4)  # replaces 7..10
    chain.mine(6)  # 0..16 on the new branch
    chain.holes = {8, 9}  # below the tip, the node answers null for these by number
    follower = HeadFollower(chain, from_list([chain.tip]), known=known, retry_delay=0.001)
    events = await collect(follower)
    reorg = events[0]
    assert isinstance(reorg, Reorg)
    assert reorg.common_ancestor == chain.canonical[6] and reorg.depth == 4
    assert events[1:] == chain.canonical[7:17]


class NullingChain(FakeChain):
    """A node whose answers by number are null a given number of times for some blocks (a
    lagging backend, or a faulty reply), then right; ``asked`` counts the asks by number."""

    def __init__(self, length: int, nulls: dict[int, int]) -> None:
        super().__init__(length)
        self.nulls = nulls
        self.asked: dict[int, int] = {}

    async def call(self, method: str, params: Sequence[Any] = (), *,
                   timeout: float | None = None) -> Any:
        if method == "eth_getBlockByNumber" and params[0] != "latest":
            n = int(params[0], 16)
            self.asked[n] = self.asked.get(n, 0) + 1
            if self.nulls.get(n, 0) > 0:
                self.nulls[n] -= 1
                self.requests.append(method)
                return None
        return await super().call(method, params, timeout=timeout)


async def test_a_block_missing_from_a_batch_is_asked_once_more_at_once() -> None:
    chain = NullingChain(12, nulls={4: 1, 9: 1})
    assert await fetch_heads(chain, range(1, 12)) == chain.canonical[1:12]
    # The two nulls asked again in one more batch, the others once.
    assert chain.asked == {n: 2 if n in (4, 9) else 1 for n in range(1, 12)}
    # Missing twice: the blocks before it are given, and the error for it.
    chain = NullingChain(12, nulls={6: 2})
    heads, missing = await fetch_head_prefix(chain, range(1, 12))
    assert heads == chain.canonical[1:6] and isinstance(missing, RpcNotAvailable)
    with pytest.raises(RpcNotAvailable, match="block 6"):
        await fetch_heads(NullingChain(12, nulls={6: 2}), range(1, 12))


async def test_a_backfill_keeps_what_came_before_a_missing_block() -> None:
    chain = NullingChain(2, nulls={})
    chain.mine(30)  # 0..31
    chain.nulls = {20: 2}  # missing on the first try (both asks), there on the next
    follower = HeadFollower(chain, from_list([chain.tip]), start=1, retry_delay=0.001)
    assert await collect(follower) == chain.canonical[1:]
    # The second try asked from block 20 on: 2..19 came once.
    assert all(chain.asked[n] == 1 for n in range(2, 20)) and chain.asked[20] == 3


async def follow_a_stale_head_over_a_restore(old_known_by_hash: set[int]) -> tuple[
        HoleyChain, list[ChainEvent]]:
    """The source handed us the old chain's 14 just before the node went back to 7; by the
    time we look, the new chain is past 14 (0..20), 11 and 12 null by number (anvil after
    evm_revert), and of the old branch's 8..14 only ``old_known_by_hash`` still answered by
    hash. What the follower yields, within 5 s."""
    chain = HoleyChain(15, holes=set())  # 0..14
    known, stale = chain.canonical[3:11], chain.tip
    old = chain.canonical[8:]
    chain.reorg(7)  # 8..14 on a new branch
    for head in old:
        if head.number not in old_known_by_hash:
            del chain.by_hash[head.hash]  # restored: the old branch is gone
    chain.mine(6)  # 0..20
    chain.holes = {11, 12}
    follower = HeadFollower(chain, from_list([stale]), known=known, retry_delay=0.001)
    return chain, await asyncio.wait_for(collect(follower), 5)


async def test_a_head_the_node_dropped_in_a_restore_gives_way_to_its_latest() -> None:
    # The old 14 and its parents are unknown by hash.
    chain, events = await follow_a_stale_head_over_a_restore(set())
    reorg = events[0]
    assert isinstance(reorg, Reorg)
    assert reorg.common_ancestor == chain.canonical[7] and reorg.depth == 3
    assert events[1:] == chain.canonical[8:21]


async def test_a_head_whose_parents_cannot_be_followed_gives_way_to_the_latest() -> None:
    # The node still answers the old 14 by hash, not its parents (anvil after evm_revert):
    # once the walk by parent hash fails, the node's latest is followed instead.
    chain, events = await follow_a_stale_head_over_a_restore({14})
    reorg = events[0]
    assert isinstance(reorg, Reorg)
    assert reorg.common_ancestor == chain.canonical[7] and reorg.depth == 3
    assert events[1:] == chain.canonical[8:21]


async def test_a_head_source_cancelled_from_under_it_is_an_error_not_a_silent_end() -> None:
    # A CancelledError from inside the source (a library's future cancelled under it, not
    # the follower's cancel) passed the pump's ``except Exception``: the pump ended without
    # a word and the follower waited for a head for ever. It raises instead.
    chain = FakeChain(3)

    async def cancelled_under() -> AsyncIterator[Head]:
        yield chain.tip
        await asyncio.sleep(0.01)  # the follower takes the first head alone
        raise asyncio.CancelledError

    events: list[ChainEvent] = []
    with pytest.raises(RpcError, match="cancelled under the follower"):
        async with asyncio.timeout(2.0):
            async for event in HeadFollower(chain, cancelled_under()):
                events.append(event)
    assert events == [chain.tip]
