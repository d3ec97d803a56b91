"""New heads, in order, with gaps backfilled and reorgs reported: one interface over a
WebSocket subscription or HTTP polling.

``follow_heads(rpc, ws=...)`` yields ``Head`` for every block number in order, and a ``Reorg``
before the heads of a new branch. The raw source (head_sources.py) may skip
blocks (a reconnect, a slow poll) or jump to another branch; ``HeadFollower`` fetches what is
missing by number and walks back by parent hash to the common ancestor, with ``ReorgTracker``
(reorg.py) doing the bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from types import TracebackType
from typing import Any

from keeper.chain.head_sources import fetch_latest_head, polled_heads, watched_ws_heads
from keeper.chain.reorg import DEFAULT_WINDOW, Fit, ReorgTooDeep, ReorgTracker
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import ChainEvent, Head
from keeper.chain.ws import WsRpc
from keeper.errors import RpcError, RpcNotAvailable
from keeper.obs.logging import get_logger

log = get_logger(__name__)


async def fetch_heads(rpc: JsonRpc, numbers: Sequence[int]) -> list[Head]:
    """Headers of blocks ``numbers`` in one batch, in the given order.

    A missing block (a load-balanced node lagging behind another) is ``RpcNotAvailable``, an
    ``RpcError``: it is transient and the caller tries again later.
    """
    heads, missing = await fetch_head_prefix(rpc, numbers)
    if missing is not None:
        raise missing
    return heads


async def fetch_head_prefix(rpc: JsonRpc, numbers: Sequence[int]
                            ) -> tuple[list[Head], RpcNotAvailable | None]:
    """The headers of ``numbers`` in order up to the first block the node does not give, and
    that block's ``RpcNotAvailable`` (None when all came). A block missing from the batch is
    asked once more at once, before it counts as missing: one null among a hundred answers
    used to fail the whole batch, and under a node's 20% wrong replies a backfill of ~50
    blocks never got through while they lasted (the fault suite's daemon fell 57 blocks
    behind and stopped scanning for 8 s)."""
    if not numbers:
        return [], None
    calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", [hex(n), False])
                                          for n in numbers]
    results = list(await rpc.batch(calls))
    again = [i for i, block in enumerate(results) if block is None]
    if again:
        for i, block in zip(again, await rpc.batch([calls[i] for i in again]), strict=True):
            results[i] = block
    heads: list[Head] = []
    for n, block in zip(numbers, results, strict=True):
        if block is None:
            return heads, RpcNotAvailable(f"eth_getBlockByNumber: block {n} not available yet")
        heads.append(Head.from_json(block))
    return heads, None


async def fetch_head_by_hash(rpc: JsonRpc, block_hash: str) -> Head:
    """The header of the block with ``block_hash`` (``RpcError`` if the node lacks it)."""
    block = await rpc.call("eth_getBlockByHash", [block_hash, False])
    if block is None:
        raise RpcNotAvailable(f"eth_getBlockByHash: block {block_hash} unknown to the node")
    return Head.from_json(block)


class _NewestHead:
    """A one-slot mailbox between a head source and the follower: a newer head replaces an
    older one that was not taken yet."""

    def __init__(self) -> None:
        self._head: Head | None = None
        self._error: BaseException | None = None
        self._done = False
        self._ready = asyncio.Event()

    async def pump(self, source: AsyncIterable[Head]) -> None:
        try:
            async for head in source:
                self._head = head
                self._ready.set()
        except Exception as exc:  # handed to the consumer, which raises it in its own task
            self._error = exc
        except asyncio.CancelledError:
            # The follower's own cancel (it is gone), or one from under the source: then the
            # follower would wait for a head that never comes; it gets an error instead.
            self._error = RpcError("head source: cancelled under the follower")
            raise
        finally:
            self._done = True
            self._ready.set()

    async def get(self) -> Head | None:
        """The newest head not taken yet; None when the source has ended."""
        while True:
            await self._ready.wait()
            if self._head is not None:
                head, self._head = self._head, None
                return head
            if self._error is not None:
                raise self._error
            if self._done:
                return None
            self._ready.clear()


# Tries in a row that find a block below a reported head missing before the follower stops
# asking by number and follows the head's parents by hash (~3 s at the default retry delay).
MISSING_TRIES = 6


class HeadFollower:
    """Turns a raw head source into every canonical head, in order, with ``Reorg`` notices.

    ``async for event in follower`` yields ``Head`` (the next block number) or ``Reorg``
    (roll back to ``common_ancestor``; the next head is ``common_ancestor.number + 1``).
    Transport errors while backfilling are retried after ``retry_delay``; a fork below the
    tracked window raises ``ReorgTooDeep``, after which the consumer must rebuild its state.

    ``known``: heads the consumer already processed (from a checkpoint), newest last; the
    chain from there to now is backfilled first. ``start``: without ``known``, the first block
    number to yield. With neither, the first head from the source comes first.
    """

    def __init__(
        self,
        rpc: JsonRpc,
        source: AsyncIterable[Head],
        *,
        window: int = DEFAULT_WINDOW,
        known: Sequence[Head] = (),
        start: int | None = None,
        fetch_batch: int = 100,
        retry_delay: float = 0.5,
    ) -> None:
        self.rpc = rpc
        self.source = source
        self.tracker = ReorgTracker(window)
        self.start = start
        self.fetch_batch = fetch_batch
        self.retry_delay = retry_delay
        for head in known[-window:]:
            self.tracker.push(head)
        self._gen: AsyncGenerator[ChainEvent, None] | None = None

    def __aiter__(self) -> AsyncIterator[ChainEvent]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def aclose(self) -> None:
        """Stop following: closes the source (unsubscribes on a WebSocket)."""
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> HeadFollower:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[ChainEvent, None]:
        newest = _NewestHead()
        # The source runs in its own task from the start, so a subscription is live before we
        # catch up, and a slow consumer only ever has the newest head waiting: ingesting it
        # backfills whatever came between.
        pump = asyncio.create_task(newest.pump(self.source), name="head source")
        try:
            if self.start is not None and self.tracker.tip is None:
                first = await self._retrying(self._fetch_start)
                self.tracker.push(first)
                yield first
            if self.tracker.tip is not None:
                # Backfill then follow: catch up to the chain's tip now rather than at the next
                # block, which may be a while away (or never, on an idle devnet).
                latest = await self._retrying(self._fetch_latest)
                async for event in self._ingest_retrying(latest):
                    yield event
            while True:
                raw = await newest.get()
                if raw is None:
                    return
                async for event in self._ingest_retrying(raw):
                    yield event
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, RpcError):
                await pump

    async def _ingest_retrying(self, head: Head) -> AsyncIterator[ChainEvent]:
        missing = 0  # tries in a row that found a block below ``head`` missing
        walked = False  # the last try followed ``head``'s parents by hash
        while True:
            try:
                if missing >= MISSING_TRIES:
                    # The node reports ``head`` but not every block below it by number (anvil
                    # after evm_revert; a restored node): follow its parents by hash instead.
                    missing, walked = 0, True
                    log.warning("head_followed_by_parent_hash", head=head.number)
                    async for event in self._by_parents(head):
                        yield event
                    return
                async for event in self.ingest(head):
                    yield event
                return
            except RpcError as exc:
                # Progress so far is in the tracker; ingesting again resumes from there.
                log.warning("head_backfill_failed", up_to=head.number, error=str(exc))
                missing = missing + 1 if isinstance(exc, RpcNotAvailable) else 0
                await asyncio.sleep(self.retry_delay)
                head, walked = await self._unless_went_back(head, walked), False

    async def _by_parents(self, head: Head) -> AsyncIterator[ChainEvent]:
        """``head`` and the blocks below it down to one we track, fetched by parent hash; a
        ``Reorg`` first when they leave our branch."""
        branch = [head]  # newest first while walking
        while not self.tracker.links(branch[-1]):
            low = branch[-1]
            self._check_walkable(head, low)
            branch.append(await fetch_head_by_hash(self.rpc, low.parent_hash))
        branch.reverse()
        reorg = self.tracker.rewind(branch[0].number - 1)
        if reorg is not None:
            log.warning("chain_reorg", depth=reorg.depth,
                        common_ancestor=reorg.common_ancestor.number, old_tip=reorg.old_tip.number)
            yield reorg
        for h in branch:
            self.tracker.push(h)
            yield h

    async def _unless_went_back(self, head: Head, walked: bool = False) -> Head:
        """``head``, or the node's latest head when it is below ``head``, when the node no
        longer knows ``head``, or when ``head``'s parents by hash could not be followed
        (``walked``): the chain went back (a node restored from an older state) and the
        blocks up to ``head`` will never come, or the new chain passed its height before we
        looked (anvil after evm_revert may still answer the old head by hash, not all its
        parents); ingesting the latest instead finds where our chain and the node's part."""
        with contextlib.suppress(RpcError):
            latest = await self._fetch_latest()
            if latest.number < head.number:
                log.warning("head_beyond_chain", head=head.number, latest=latest.number)
                return latest
            if latest.hash != head.hash and (walked or await self.rpc.call(
                    "eth_getBlockByHash", [head.hash, False]) is None):
                log.warning("head_gone_from_node", head=head.number, latest=latest.number)
                return latest
        return head

    async def _retrying(self, fetch: Callable[[], Awaitable[Head]]) -> Head:
        while True:
            try:
                return await fetch()
            except RpcError as exc:
                log.warning("head_fetch_failed", error=str(exc))
                await asyncio.sleep(self.retry_delay)

    async def _fetch_start(self) -> Head:
        assert self.start is not None
        return (await fetch_heads(self.rpc, [self.start]))[0]

    async def _fetch_latest(self) -> Head:
        return await fetch_latest_head(self.rpc)

    async def ingest(self, head: Head) -> AsyncIterator[ChainEvent]:
        """The events that ``head`` implies, given what the tracker holds; updates the tracker."""
        tip = self.tracker.tip
        if tip is not None and self.tracker.fit(head) is Fit.GAP:
            # Fill by number in ascending batches so a long gap streams out as it is fetched.
            for lo in range(tip.number + 1, head.number, self.fetch_batch):
                hi = min(lo + self.fetch_batch, head.number)
                # What came before a missing block is kept (the tracker has it): the next try
                # resumes from there.
                blocks, missing = await fetch_head_prefix(self.rpc, range(lo, hi))
                for block in blocks:
                    async for event in self._resolve(block):
                        yield event
                if missing is not None:
                    raise missing
        async for event in self._resolve(head):
            yield event

    async def _resolve(self, head: Head) -> AsyncIterator[ChainEvent]:
        """Apply a head at most one above our tip: extend, ignore, or walk back a fork."""
        fit = self.tracker.fit(head)
        if fit is Fit.KNOWN:
            tip = self.tracker.tip
            if tip is not None and head.number < tip.number and await self._went_back(tip):
                # The node's head went back to a block we know (a node restored from an older
                # state): everything above it is gone, though no new branch exists yet.
                reorg = self.tracker.rewind(head.number)
                if reorg is not None:
                    log.warning("chain_went_back", depth=reorg.depth, to=head.number,
                                old_tip=tip.number)
                    yield reorg
            return
        if fit in (Fit.FIRST, Fit.EXTENDS):
            self.tracker.push(head)
            yield head
            return
        if fit is Fit.GAP:  # only when a fetched block raced ahead; go through ingest
            async for event in self.ingest(head):
                yield event
            return
        branch = await self._walk_back(head)
        reorg = self.tracker.rewind(branch[0].number - 1)
        if reorg is not None:
            log.warning("chain_reorg", depth=reorg.depth,
                        common_ancestor=reorg.common_ancestor.number,
                        old_tip=reorg.old_tip.number)
            yield reorg
        for h in branch:
            self.tracker.push(h)
            yield h

    async def _went_back(self, tip: Head) -> bool:
        """True when the node no longer has our ``tip`` (no block at its height, or another
        one); False when it still does (a lagging replica answered an older head)."""
        block = await self.rpc.call("eth_getBlockByNumber", [hex(tip.number), False])
        return block is None or Head.from_json(block).hash != tip.hash

    def _check_walkable(self, head: Head, low: Head) -> None:
        """``ReorgTooDeep`` when walking below ``low`` (towards ``head``'s fork point) would
        leave the window of blocks we keep."""
        if not self.tracker.can_walk_below(low.number - 2):
            oldest = self.tracker.oldest
            raise ReorgTooDeep(
                f"head {head.number} forks below block {oldest.number if oldest else '?'}, "
                f"the oldest of the last {self.tracker.window} we keep")

    async def _walk_back(self, head: Head) -> list[Head]:
        """The new branch, oldest first, from just above the common ancestor up to ``head``."""
        branch = [head]  # newest first while walking
        while not self.tracker.links(branch[-1]):
            low = branch[-1]
            self._check_walkable(head, low)
            # By number in small batches (reorgs are usually shallow) ...
            # (can_walk_below above guarantees this range is not empty)
            lo = max(low.number - 4, (self.tracker.oldest or low).number + 1)
            for parent in await fetch_heads(self.rpc, range(low.number - 1, lo - 1, -1)):
                if parent.hash != branch[-1].parent_hash:
                    # ... but the chain moved between our requests: follow the exact parent.
                    parent = await fetch_head_by_hash(self.rpc, branch[-1].parent_hash)
                    branch.append(parent)
                    break
                branch.append(parent)
                if self.tracker.links(parent):
                    break
        branch.reverse()
        return branch


def follow_heads(
    rpc: JsonRpc,
    *,
    ws: WsRpc | None = None,
    poll_interval: float = 1.0,
    window: int = DEFAULT_WINDOW,
    known: Sequence[Head] = (),
    start: int | None = None,
    ws_silence: float = 18.0,
) -> HeadFollower:
    """Every canonical head in order (and ``Reorg`` notices), over ``ws`` if given, else by
    polling ``rpc`` every ``poll_interval`` seconds. ``rpc`` serves backfills either way, and
    polls while the WebSocket has been silent for ``ws_silence`` seconds."""
    source = (watched_ws_heads(ws, rpc, silence=ws_silence, poll_interval=poll_interval)
              if ws is not None else polled_heads(rpc, poll_interval))
    return HeadFollower(rpc, source, window=window, known=known, start=start)
