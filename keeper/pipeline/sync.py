"""Fill the position book from the chain: backfill, then follow heads; reorgs; checkpoints.

``BookSync.run()`` brings the book to the chain's tip and keeps it there:

1. **Resume or backfill.** With a checkpoint in the store, the book is loaded and the
   checkpoint's block hash is checked against the chain; if it was reorged out, the book is
   rolled back with the saved journal to the newest block still canonical, or re-indexed when
   none is. Without one, logs of ``[start_block, tip - follow_depth]`` are fetched in chunks
   (``keeper.chain.logs.iter_logs``) and applied without journal, with a progress bar; the
   market is read once at the end.
2. **Follow.** ``keeper.chain.heads.follow_heads`` yields every block after that, in order,
   and a ``Reorg`` before a new branch (header-based: anvil sends no ``removed`` logs). Per
   block, *one* JSON-RPC batch carries the block's ``eth_getLogs`` (by block hash) and the
   market read (one Multicall3 ``aggregate3``, also by block hash). The block is applied with
   an undo journal; a ``Reorg`` rolls the book back to the common ancestor first.
3. **Checkpoint** to SQLite at most every ``checkpoint_every`` seconds, at the end of a
   backfill and on the way out (shielded from cancellation).

After each block the sync publishes a ``BlockUpdate`` (touched users, assets whose price
moved, whether the market's parameters changed) to every ``subscribe()`` queue: the scanner
re-checks only holders of moved assets.

IO happens before a block is applied, never during: applying is synchronous, so the book is
consistent at every ``await`` (a cancellation cannot leave half a block).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi.exceptions import DecodingError

from keeper.chain.head_batches import head_batches, runs
from keeper.chain.heads import fetch_heads, follow_heads
from keeper.chain.logs import chunk_ranges, get_logs
from keeper.chain.reorg import ReorgTooDeep, block_gone
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import Head, Reorg
from keeper.chain.ws import WsRpc
from keeper.domain.revision import AaveRevision
from keeper.errors import KeeperError, RpcResponseError
from keeper.obs.logging import get_logger
from keeper.obs.progress import BackfillProgress
from keeper.pipeline.block_events import (
    decode_logs,
    events_by_block,
    head_ref,
    hints_after,
    ref_head,
)
from keeper.pipeline.checkpoint_check import newest_canonical
from keeper.pipeline.head_read import HeadRead, read_head
from keeper.pipeline.store import BookStore
from keeper.pipeline.updates import UpdateFeed
from keeper.protocols.aave_v3 import decoding
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3.book import (
    BlockUpdate,
    BookBlock,
    BookRollbackError,
    PositionBook,
)
from keeper.protocols.aave_v3.events_later import Upgraded
from keeper.protocols.aave_v3.reader import AaveV3Contracts, MarketReader
from keeper.protocols.aave_v3.revision import read_revision

log = get_logger(__name__)


class SyncError(KeeperError, RuntimeError):
    """The sync cannot go on (the chain is behind the checkpoint, ...)."""


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """How to sync. ``start_block``: the block the market was deployed in (the book is built
    from events, so it must see every one of them)."""

    start_block: int
    chunk: int = 2_000
    window: int = 64  # blocks of undo journal = the head follower's reorg window
    follow_depth: int = 32  # the backfill stops this far below the tip; the rest is journaled
    poll_interval: float = 1.0
    ws_silence: float = 18.0  # seconds without a pushed head before heads are polled as well
    catch_up_batch: int = 100  # blocks of a backlog applied in one step (one ranged getLogs)
    checkpoint_every: float = 1.0
    progress: bool = True


class BookSync(UpdateFeed):
    """Keeps a ``PositionBook`` in step with the chain; see the module docstring.

    ``rpc`` serves reads and backfills (an ``HttpRpc`` or ``RpcPool``); ``ws``, when given,
    carries the new-heads subscription (else heads are polled every ``poll_interval``).
    """

    def __init__(self, rpc: JsonRpc, contracts: AaveV3Contracts, config: SyncConfig, *,
                 book: PositionBook | None = None, store: BookStore | None = None,
                 ws: WsRpc | None = None) -> None:
        self.rpc = rpc
        self.contracts = contracts
        self.config = config
        # ``_book`` is written; ``book`` is what readers see. They are one object, except while
        # a re-index builds a new book: readers keep the old, whole one until it is done.
        self._book = book if book is not None else PositionBook(window=config.window)
        self._published = self._book
        self.store = store
        self.ws = ws
        # Rebuilt for the Pool's revision once it is known (prepare, or an Upgraded event).
        self.reader = MarketReader(contracts, self._book.state.revision)
        UpdateFeed.__init__(self)
        self._prepared = False
        self._last_checkpoint = 0.0
        self.blocks_applied = 0
        self.reorgs = 0
        # The block the book resumed from after loading the store (None: it was backfilled).
        self.resumed_from: int | None = None

    def roll_back(self, number: int) -> BlockUpdate | None:
        """Roll the book back to block ``number`` and tell every consumer which accounts it
        restored (a ``BlockUpdate`` with ``rollback`` set): they re-scan them, and whatever
        was sent on the undone blocks is looked at again. None when nothing was undone."""
        update = self._book.rollback(number)
        if update is not None:
            log.info("book_rolled_back", block=update.block.number,
                     users=len(update.touched_users))
            self._publish(update)
        return update

    # ---- the main loop ---------------------------------------------------------------------
    async def run(self, *, until: int | None = None) -> None:
        """Resume or backfill, then follow the chain; returns once the book has applied block
        ``until`` (never without it). Cancel it to stop; it checkpoints on the way out."""
        try:
            while True:
                await self.prepare()
                if until is not None and self._book.block_number >= until:
                    return
                try:
                    await self._follow(until)
                    return
                except (ReorgTooDeep, BookRollbackError) as exc:
                    log.warning("reorg_below_journal_reindexing", error=str(exc))
                    await self.reindex()
                    # A re-sync is a rollback of everything: every account is looked at again.
                    self._publish(BlockUpdate(self._book.block, frozenset(self._book.users()),
                                              frozenset(), True, True, rollback=True))
                except RpcResponseError as exc:
                    if not block_gone(exc):
                        raise
                    # The block we were reading was reorged out (or the node went back to
                    # an older state) under us: follow again from the book's journal, and
                    # the follower finds the new branch and reports the rollback.
                    log.info("sync_block_gone_refollowing", block=self._book.block_number,
                             error=exc.rpc_message)
                    await asyncio.sleep(min(self.config.poll_interval, 0.1))
        finally:
            # Shielded: a cancelled run still records how far it got.
            await asyncio.shield(self.checkpoint())

    async def catch_up(self) -> int:
        """Bring the book to the chain's current tip and return that block number (one-shot
        use, e.g. ``keeper scan``)."""
        tip = int(await self.rpc.call("eth_blockNumber"), 16)
        await self.run(until=tip)
        return tip

    async def prepare(self) -> None:
        """Load and verify the checkpoint, or backfill: the book is then at a recent block."""
        if self._prepared:
            return
        loaded = await self.store.load() if self.store is not None else None
        if loaded is not None:
            self._book.load(loaded.block, loaded.state, loaded.users, loaded.journal)
            self._use_revision(loaded.state.revision)
            log.info("book_loaded_from_checkpoint", block=loaded.block.number,
                     users=len(loaded.users), journal=len(loaded.journal))
            if await self._verify_checkpoint():
                self.resumed_from = self._book.block_number
            else:
                await self.reindex(prepare=False)
                await self.backfill()
        else:
            await self.backfill()
        self._published = self._book
        self._prepared = True

    @property
    def book(self) -> PositionBook:
        """The book to read: the synced one, or during a re-index the previous one (stale but
        whole: a reader never sees a book half-way through its backfill)."""
        return self._published

    async def reindex(self, *, prepare: bool = True) -> None:
        """Throw the book away and rebuild it from ``start_block`` in a new one, which readers
        see once it is whole."""
        self._book = PositionBook(window=self.config.window)
        if self.store is not None:
            await self.store.clear()
        self._prepared = False
        if prepare:
            await self.prepare()

    def _use_revision(self, revision: AaveRevision) -> None:
        if revision != self.reader.revision:
            self.reader = MarketReader(self.contracts, revision)

    async def _first_revision(self, block: int) -> AaveRevision:
        """The revision at the backfill's first block; the target's when the Pool was not
        there yet (deployed within the range) or the node keeps no state that old."""
        try:
            return await read_revision(self.rpc, self.contracts.pool, block)
        except (KeeperError, DecodingError):
            return self.reader.revision

    def _upgraded(self, events: Sequence[ev.AaveEvent]) -> bool:
        """Whether the Pool's proxy moved to another implementation among ``events``."""
        return any(isinstance(e, Upgraded) and e.address == self.contracts.pool for e in events)

    async def _verify_checkpoint(self) -> bool:
        """True when the book's block is canonical, after rolling back if need be."""
        ref = await newest_canonical(self.rpc, self._book)
        if ref is None:
            log.warning("checkpoint_not_canonical_reindexing", checkpoint=self._book.block_number)
            return False
        if ref.number != self._book.block_number:
            log.warning("checkpoint_reorged_out_rolling_back",
                        checkpoint=self._book.block_number, to=ref.number)
            try:
                self.roll_back(ref.number)
            except BookRollbackError:
                return False
        return True

    # ---- backfill --------------------------------------------------------------------------
    async def backfill(self, to_block: int | None = None) -> None:
        """Apply every event of ``[start_block, to_block]`` (default: ``follow_depth`` below
        the tip), then read the market at ``to_block``."""
        cfg = self.config
        if to_block is None:
            tip = int(await self.rpc.call("eth_blockNumber"), 16)
            to_block = max(cfg.start_block, tip - cfg.follow_depth)
        (target,) = await fetch_heads(self.rpc, [to_block])
        first = max(cfg.start_block, self._book.block_number + 1)
        self._use_revision(await read_revision(self.rpc, self.contracts.pool, target.hash))
        if self._book.block_number < 0:
            # Token events are applied with the rules of the revision they were emitted under:
            # the revision at the first block, then each Upgraded's (see _apply_backfill).
            self._book.set_revision(await self._first_revision(first))
        # The reserves listed at the target: their tokens are the addresses to ask logs of
        # (a reserve added within the range is listed there too).
        read, hints = await self.reader.read(self.rpc, target.hash, self._book.state.hints)
        self._book.register_reserves(read.tokens.values())
        progress = BackfillProgress(to_block - first + 1, tty=None if cfg.progress else False)
        addresses = self._addresses(feeds=False)
        topics = [list(decoding.topics().positions)]
        pending: list[ev.AaveEvent] = []  # the target block's own events
        for lo, hi in chunk_ranges(first, to_block, cfg.chunk):
            # get_logs halves a range the node finds too large and grows back after.
            events = decode_logs(await get_logs(self.rpc, addresses, topics, lo, hi,
                                                chunk=cfg.chunk))
            await self._apply_backfill(events, to_block, pending)
            progress.update(hi - lo + 1, len(events))
        progress.finish()
        # eMode categories users entered during the backfill (on 3.2+ no reserve names them).
        wanted = hints_after(hints.union(self._book.state.hints), pending)
        if not hints.covers(wanted):
            read, hints = await self.reader.read(self.rpc, target.hash, wanted)
        feeds = await self.reader.resolve_aggregators(self.rpc, read.sources.values(), target.hash)
        self._book.begin_block(head_ref(target), journal=True)
        try:
            self._book.set_revision(self.reader.revision)
            self._book.apply_all(pending)
            self._book.set_market(read, hints)
            self._book.set_feeds(feeds)
        except BaseException:
            self._book.abort_block()
            raise
        self._publish(self._book.end_block())
        log.info("backfill_done", to_block=to_block, users=len(self._book),
                 seconds=round(progress.elapsed, 2))
        await self.checkpoint(force=True)

    async def _apply_backfill(
        self, events: list[ev.AaveEvent], target: int, pending: list[ev.AaveEvent]
    ) -> None:
        by_block: dict[int, list[ev.AaveEvent]] = {}
        for e in events:
            if e.block_number >= target:
                pending.append(e)
            else:
                by_block.setdefault(e.block_number, []).append(e)
        # Stable debt keeps the block timestamp per user: fetch the headers where it moves.
        stable = sorted({n for n, es in by_block.items()
                         if any(isinstance(e, ev.StableDebtMint | ev.StableDebtBurn) for e in es)})
        stamps = {h.number: h.timestamp for h in await fetch_heads(self.rpc, stable)}
        for n in sorted(by_block):
            es = by_block[n]
            if n <= self._book.block_number:
                continue
            revision = (await read_revision(self.rpc, self.contracts.pool, n)
                        if self._upgraded(es) else None)
            # Far below the tip, never rolled back: the hash is not needed.
            ref = BookBlock(n, "", "", stamps.get(n, 0))
            self._book.begin_block(ref, journal=False)
            if revision is not None:
                self._book.set_revision(revision)
            self._book.apply_all(es)
            self._book.end_block()

    # ---- following -------------------------------------------------------------------------
    async def _follow(self, until: int | None) -> None:
        known = [ref_head(r) for r in self._book.recent_blocks()] or [ref_head(self._book.block)]
        cfg = self.config
        follower = follow_heads(self.rpc, ws=self.ws, poll_interval=cfg.poll_interval,
                                window=cfg.window, known=known, ws_silence=cfg.ws_silence)
        # A backlog (an outage, a chain faster than one round trip a block) is applied in one
        # step: see ``apply_heads``. The batches close (and stop reading the follower) first.
        async with follower, contextlib.aclosing(
                head_batches(follower, limit=self.config.catch_up_batch)) as batches:
            async for batch in batches:
                for run in runs(batch):
                    if isinstance(run, Reorg):
                        self.reorgs += 1
                        log.warning("book_rollback", depth=run.depth,
                                    to=run.common_ancestor.number)
                        self.roll_back(run.common_ancestor.number)
                        continue
                    # Already applied ones are skipped (the follower restarts from the journal).
                    heads = [h for h in run if h.number > self._book.block_number
                             and (until is None or h.number <= until)]
                    if heads:
                        await self.apply_heads(heads)
                        await self.checkpoint(force=False)
                    if until is not None and self._book.block_number >= until:
                        return

    async def apply_head(self, head: Head) -> BlockUpdate:
        """Fetch one block's logs and market (one batch), then apply it with a journal."""
        updates = await self.apply_heads([head])
        return updates[-1]

    async def apply_heads(self, heads: Sequence[Head]) -> list[BlockUpdate]:
        """Apply consecutive ``heads``, each with a journal: the logs of all but the last in
        one ranged ``eth_getLogs``, then the last block's batch (its logs and the market).
        The market is read at the last block only: the blocks before it keep the previous
        read, which is what the chain said before the newest block anyway. Nothing is applied
        before every read is in (the book is never half-way through a backlog at an await).
        Those ``on_head`` called hear of the last head first, to read it meanwhile."""
        if heads[0].parent_hash != self._book.block_hash:
            raise SyncError(f"block {heads[0].number} does not build on the book's "
                            f"{self._book.block_number} {self._book.block_hash}")
        self._arriving(heads[-1])
        earlier: dict[int, list[ev.AaveEvent]] = {}
        if len(heads) > 1:
            logs = await get_logs(self.rpc, self._addresses(feeds=True),
                                  [list(decoding.topics().all)], heads[0].number,
                                  heads[-2].number)
            by_block = events_by_block(heads, decode_logs(logs), logs)
            if by_block is None or self._upgraded([e for es in by_block.values() for e in es]):
                # The range moved under us (a reorg), or the Pool was upgraded in it.
                return [u for h in heads for u in await self.apply_heads([h])]
            earlier = by_block
        carried = [e for h in heads[:-1] for e in earlier.get(h.number, [])]
        self._use_revision(self._book.state.revision)  # a rollback may have undone an upgrade
        last, self.reader = await read_head(self.rpc, self.reader, self._book.state, heads[-1],
                                            carried, self._addresses(feeds=True))
        updates = []
        for head in heads[:-1]:
            updates.append(self._apply(head, earlier.get(head.number, []), None))
        updates.append(self._apply(heads[-1], last.events, last))
        return updates

    def _apply(self, head: Head, events: Sequence[ev.AaveEvent],
               market: HeadRead | None) -> BlockUpdate:
        """Apply ``head``'s events (and, when given, its market read) with a journal."""
        self._book.begin_block(head_ref(head), journal=True)
        try:
            self._book.set_revision(self.reader.revision)
            self._book.apply_all(events)
            if market is not None:
                self._book.set_market(market.read, market.hints)
                if market.feeds is not None:
                    self._book.set_feeds(market.feeds)
        except BaseException:
            self._book.abort_block()
            raise
        update = self._book.end_block()
        self.blocks_applied += 1
        self._publish(update)
        return update

    def _addresses(self, *, feeds: bool) -> list[str]:
        c = self.contracts
        return [c.pool, c.pool_configurator, c.oracle, *self._book.watched_addresses(feeds=feeds)]

    # ---- persistence -----------------------------------------------------------------------
    async def checkpoint(self, *, force: bool = True) -> None:
        """Write the book to the store (if any); without ``force`` at most every
        ``checkpoint_every`` seconds."""
        if self.store is None or self._book.block_number < 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not force and now - self._last_checkpoint < self.config.checkpoint_every:
            return
        self._last_checkpoint = now
        await self.store.checkpoint(self._book)

    async def close(self) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()

