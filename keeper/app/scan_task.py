"""The daemon's scan task: per batch of applied blocks, bring the scanner up to date and scan;
the confirmed candidates replace the previous list (``Candidates``)."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import NoReturn

from prometheus_client import Counter

from keeper.app import steps
from keeper.app.head import DaemonReadiness
from keeper.app.inflight import Lane
from keeper.app.root import Keeper
from keeper.app.supervise import Supervisor
from keeper.chain.reorg import block_gone
from keeper.chain.types import Head
from keeper.errors import KeeperError, RpcError
from keeper.obs.logging import get_logger
from keeper.pipeline.book_repair import BookRepair
from keeper.pipeline.scan import HealthScanner, LiquidatableAccount
from keeper.protocols.aave_v3.book import BlockUpdate

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Seen:
    """When an account was first flagged, and when the block it was flagged on arrived (both
    event-loop time): the starts of the flag→send and block→send histograms."""

    flagged_at: float
    block_seen_at: float


class Candidates:
    """The newest scan's confirmed candidates; a newer scan replaces an older one."""

    def __init__(self) -> None:
        self.block = -1
        self.items: tuple[LiquidatableAccount, ...] = ()
        self.scans = 0  # puts so far: after a rollback a newer scan has a *lower* block
        self.seen: dict[str, Seen] = {}  # since when each candidate is one
        self.doubted: set[str] = set()  # accounts the book may be wrong about: asked again
        self._changed = asyncio.Event()

    def put(self, block: int, items: list[LiquidatableAccount],
            arrived_at: float | None = None) -> None:
        """The scan of ``block`` (whose oldest unscanned block arrived at ``arrived_at``)."""
        now = asyncio.get_running_loop().time()
        seen = {}
        for c in items:
            seen[c.user] = self.seen.get(c.user) or Seen(now, arrived_at if arrived_at else now)
        self.seen = seen
        self.block = block
        self.items = tuple(items)
        self.scans += 1
        self._changed.set()

    def doubt(self, user: str) -> None:
        """The chain refused a liquidation of ``user`` planned on the book: the next scan
        re-sets its row and asks the chain about it (a vouch only goes with an event the book
        saw, or a price it holds: an event a node lost would leave it vouched for)."""
        self.doubted.add(user)

    def take_doubted(self) -> set[str]:
        """The accounts doubted since the last call (the scan task's next pass)."""
        doubted, self.doubted = self.doubted, set()
        return doubted

    def forget(self, user: str) -> None:
        """``user`` was liquidated: if it is still a candidate later, it counts from then."""
        self.seen.pop(user, None)

    async def wait_newer(self, scans: int) -> None:
        """Return once a scan after the ``scans``-th has been put."""
        while self.scans <= scans:
            self._changed.clear()
            await self._changed.wait()


class ScanTask:
    """Scans the touched accounts of *every* block in a batch, prices and parameters, then
    confirms on chain. Scanning goes on while a transaction is in flight."""

    def __init__(self, keeper: Keeper, updates: asyncio.Queue[BlockUpdate],
                 supervisor: Supervisor, readiness: DaemonReadiness, lane: Lane,
                 candidates: Candidates) -> None:
        self.keeper = keeper
        self.updates = updates
        self.supervisor = supervisor
        self.readiness = readiness
        self.lane = lane
        self.candidates = candidates
        self.book_mismatches = Counter(
            "book_mismatches", "Accounts whose book health factor differed from the chain's",
            namespace="keeper", registry=keeper.metrics.registry)
        self.repair = BookRepair(keeper.rpc)
        self.scanner: HealthScanner | None = None
        self.touched: set[str] = set()
        self.arrived_at: float | None = None  # the oldest block not scanned yet came then
        self._arrivals: dict[int, float] = {}  # block → when the sync applied it
        keeper.sync.on_update(self._arrived)
        keeper.sync.on_head(self._head_arriving)
        self.rebuild = True
        self.scans = 0  # finished scans (progress, for the restart back-off)
        self._mismatches_seen = 0  # of the current scanner's cumulative stats
        self._sync_seconds = 0.0  # the last scan's prefilter row updates (logged)
        self._scan_started = 0.0  # perf_counter when the last scan began asking for candidates

    async def run(self, prepared: asyncio.Event) -> NoReturn:
        """Once the book is prepared: scan, and again after each batch of blocks. A failed
        scan is tried again after a back-off, or at once when a new block comes."""
        await prepared.wait()
        await self.supervisor.forever("scan", self._follow, progress=lambda: self.scans,
                                      sleep=self._next_update)

    async def _follow(self) -> NoReturn:
        # The first scan is at once: the resumed book may hold candidates already.
        try:
            while True:
                self._take_queued()
                try:
                    self.scanner = await self._scan(self.scanner, self.touched, self.rebuild)
                except KeeperError as exc:
                    if not block_gone(exc):
                        raise
                    # The block the book is at is gone (a reorg or a restore in progress):
                    # scan again, from a fresh prefilter, once the sync has caught up.
                    log.info("scan_block_gone_waiting_for_sync",
                             block=self.keeper.sync.book.block_number, error=str(exc))
                    self.rebuild = True
                    await self._next_update(None)
                    continue
                self.rebuild = False
                self.scans += 1
                self.supervisor.succeeded("scan")
                await self._next_update(None)
        except RpcError:
            raise  # the node: the scanner is fine, try it again
        except Exception:
            # Not the node: start afresh from the book next time.
            self.scanner, self.touched = None, set()
            raise

    async def _next_update(self, timeout: float | None) -> None:
        """Wait for the next applied block (at most ``timeout`` seconds)."""
        try:
            update = await asyncio.wait_for(self.updates.get(), timeout)
        except TimeoutError:
            return
        self._merge(update)

    def _take_queued(self) -> None:
        # A burst of blocks is scanned once, at the newest; but every block's touched
        # accounts must be re-set in the prefilter, not just the last one's.
        while not self.updates.empty():
            self._merge(self.updates.get_nowait())

    def _arrived(self, update: BlockUpdate) -> None:
        """Called by the sync as it applies each block: when it arrived, for the latency
        from the block that made an account liquidatable to our send."""
        if not update.rollback:
            self._arrivals[update.block.number] = asyncio.get_running_loop().time()

    def _head_arriving(self, head: Head) -> None:
        """The reads of a block that do not need the book at it go out as it arrives, while
        the sync reads and applies it: the oracle guard's, and the planner's round reads
        (which the first plan of the block waits for: on the reaction bench, sent after the
        book's math instead, they cost detection → send ~1 ms of its ~3)."""
        keeper = self.keeper
        if keeper.oracle_guard is not None:
            keeper.oracle_guard.read_early(keeper.sync.book, head.hash)
        self._read_round(head.hash)

    def _read_round(self, block_hash: str | None = None) -> None:
        """Start the planner's round reads of ``block_hash`` (the book's block's, if None)
        while the executor runs (once a block: ``prefetch`` ignores a block it has)."""
        planner = self.keeper.planner
        if planner is not None and self.keeper.executor is not None:
            block_hash = block_hash or self.keeper.sync.book.block_hash
            planner.prefetch(block_hash, list(planner.venue.a_tokens))

    def _merge(self, update: BlockUpdate) -> None:
        arrived = self._arrivals.pop(update.block.number, None)
        if self.arrived_at is None and not update.rollback:
            self.arrived_at = arrived if arrived is not None \
                else asyncio.get_running_loop().time()
        if len(self._arrivals) > 1_000:  # rolled-back numbers never merged: forget them
            self._arrivals.clear()
        self.touched |= update.touched_users
        self.rebuild |= update.market_changed
        if update.rollback:
            self._rolled_back(update)

    def _rolled_back(self, update: BlockUpdate) -> None:
        """The book went back to ``update.block``: its restored accounts are re-scanned (they
        are in ``touched``), those we liquidated on the undone blocks are due again at once,
        and the sender takes the chain's nonce before its next send."""
        users = update.touched_users
        log.info("rescan_after_rollback", block=update.block.number, users=len(users))
        self.lane.rewind(update.block.number, users)
        executor = self.keeper.executor
        if executor is not None:
            executor.sender.rolled_back()

    async def _scan(self, scanner: HealthScanner | None, touched: set[str],
                    rebuild: bool) -> HealthScanner:
        book = self.keeper.sync.book
        if scanner is None or rebuild:
            # A build takes seconds at a million accounts: create() does it in a thread, from
            # a snapshot, then follows the live book: the blocks applied during the build are
            # queued and re-set their accounts on the next pass (so do sync_off_loop's).
            # The mismatch count is cumulative across rebuilds (it feeds a counter).
            carried = scanner.stats.mismatches if scanner is not None else 0
            self._mismatches_seen = carried
            scanner = await HealthScanner.create(book)
            scanner.stats.mismatches = carried
        touched |= self.candidates.take_doubted()
        # The oracle guard's check of the block (its read went out as the block arrived) is
        # waited for beside the rows and the book's math, not before them (its read was
        # 40-60% of the crash block's time to the flags).
        async with steps.guard_observing(self.keeper) as checked:
            synced = time.perf_counter()
            await scanner.sync_off_loop(touched)
            self._sync_seconds = time.perf_counter() - synced
            touched.clear()
            block = book.block_number  # the scan reads the book before its first await
            # Made as the head arrived, but for a block no head announced (the first scan, a
            # rollback's).
            self._read_round()
            self._scan_started = time.perf_counter()
            # A newer block is queued, or liquidations of ours are in flight: the read-back
            # stops after a slice (the next would hold up that block's scan; the node's time
            # goes to our simulations and sends: in the busy-core 10,000 crash the whole
            # read-back took 1.7 s of it, and 11 batches went out in the first second against
            # 45 with a slice a block). The book's flags, already out, stand till the next scan.
            found = await steps.candidates(
                self.keeper, scanner, on_book=functools.partial(self._publish, block, scanner),
                stale=lambda: not self.updates.empty() or self.lane.busy, checked=checked)
        new_mismatches = scanner.stats.mismatches - self._mismatches_seen
        if new_mismatches > 0:
            self.book_mismatches.inc(new_mismatches)
            self._mismatches_seen = scanner.stats.mismatches
        if scanner.stats.last_unread:
            log.info("read_back_cut_short", block=block, unread=scanner.stats.last_unread,
                     confirmed=len(found), chain_ms=round(
                         scanner.stats.last_chain_seconds * 1000, 1))
            self.lane.keep_only({c.user for c in self.candidates.items})
        else:
            self._publish(block, scanner, found, confirmed=True)
            self.lane.keep_only({c.user for c in found})
        self.arrived_at = None
        self.readiness.scanned(block)
        if scanner.mismatched:
            await self._repair(scanner)
        return scanner

    async def _repair(self, scanner: HealthScanner) -> None:
        """The accounts whose book figures the chain contradicted, read from the contracts
        and restored in the book (``BookRepair``); the next pass re-sets their rows."""
        users, scanner.mismatched = scanner.mismatched, set()
        sync = self.keeper.sync
        try:
            restored = await self.repair.repair(sync.book, sync.reader, users)
        except KeeperError as exc:  # the next mismatch asks again
            log.warning("book_repair_failed", accounts=len(users), error=str(exc))
            return
        if restored:
            self.touched.update(restored)
            self.keeper.metrics.book_repairs.labels(source="mismatch").inc(len(restored))
            log.warning("book_repaired", source="mismatch", block=sync.book.block_number,
                        accounts=len(restored), users=restored[:10])

    def touch(self, users: list[str]) -> None:
        """``users`` changed in the book outside a block (restored): re-scan them."""
        self.touched.update(users)

    def _publish(self, block: int, scanner: HealthScanner, found: list[LiquidatableAccount],
                 *, confirmed: bool = False) -> None:
        """``found`` are the candidates of ``block``: what the book's exact math flags, at
        once (every send is simulated first: one the chain would not take is never sent),
        then what the chain confirms, which replaces it."""
        same = {c.user for c in found} == {c.user for c in self.candidates.items}
        if same and self.candidates.block == block:
            return  # the book's flags, confirmed as they were
        if not same:
            stats, guard = scanner.stats, self.keeper.oracle_guard
            since = None if self.arrived_at is None \
                else round((asyncio.get_running_loop().time() - self.arrived_at) * 1000, 1)
            log.info("liquidatable_accounts", block=block, flagged=len(found),
                     source="chain" if confirmed else "book",
                     users=[c.user for c in found[:10]], since_applied_ms=since,
                     rows_ms=round(self._sync_seconds * 1000, 1),
                     # The oracle guard's read beside the prefilter and the book's math.
                     scan_ms=round((time.perf_counter() - self._scan_started) * 1000, 1),
                     book_ms=round(stats.last_book_seconds * 1000, 1), guard_ms=None if guard
                     is None else round(guard.last_check_seconds * 1000, 1),
                     chain_ms=round(stats.last_chain_seconds * 1000, 1) if confirmed else None)
        if self.keeper.decisions is not None:
            seen = self.candidates.seen
            self.keeper.decisions.scanned(block, [c.user for c in found],
                                          [c.user for c in found if c.user not in seen])
        self.candidates.put(block, found, self.arrived_at)
