"""The daemon's book audit: every account of the book read from the contracts in turn,
``[scanner] audit_accounts_per_block`` a block, and restored where the book is wrong.

The book follows balances by events, and the scanner checks against the chain only the
accounts near the liquidation line (``BookRepair`` restores those it finds wrong). An account
the book got wrong the other way (an event missed: a node that answered a block's logs short,
a provider behind its load balancer) looks healthier in the book than it is: the scanner never
asks the chain about it, and it would never be liquidated. The audit reaches it within one pass
(10,000 accounts at the default 50 a block: 200 blocks, 40 minutes at 12 s). A slice is read
once per finished scan, and only when that scan found nothing to liquidate and nothing of ours
is in flight: in a crash the node and the event loop are for the liquidations (a slice of 50
accounts of the 6-reserve devnet costs ~26 ms of this process's CPU, mostly Multicall3's
encoding, and 1,600 storage reads of the node's). Its restored accounts go to the scanner,
which re-scans them on its next pass. A slice read while the book moved on restores nothing;
its accounts come round again in the next pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NoReturn

from keeper.app.root import Keeper
from keeper.obs.logging import get_logger
from keeper.pipeline.book_repair import BookRepair
from keeper.protocols.aave_v3.book import PositionBook

log = get_logger(__name__)


class BookAuditTask:
    """Audits ``per_block`` accounts of the book after each finished scan (``scans()``
    counts them) while ``idle()``."""

    def __init__(self, keeper: Keeper, repair: BookRepair, per_block: int, poll: float, *,
                 scans: Callable[[], int], idle: Callable[[], bool],
                 restored: Callable[[list[str]], None]) -> None:
        self.keeper = keeper
        self.repair = repair
        self.per_block = per_block
        self.poll = poll
        self.scans = scans
        self.idle = idle
        self.restored = restored
        self._order: list[str] = []  # this pass's accounts (new ones wait for the next pass)
        self._cursor = 0
        self.audited = 0
        self.passes = 0

    async def run(self, prepared: asyncio.Event) -> NoReturn:
        """Once the book is prepared: one slice per finished scan, while idle."""
        await prepared.wait()
        audited_after = -1
        while True:
            scans = self.scans()
            if scans != audited_after and self.idle():
                await self.step()
                audited_after = scans
            await asyncio.sleep(self.poll)

    def next_slice(self, book: PositionBook) -> list[str]:
        """The next ``per_block`` accounts of the pass (a new pass once one is through)."""
        if self._cursor >= len(self._order):
            if self._order:
                self.passes += 1
                log.info("book_audit_pass", accounts=len(self._order), passes=self.passes)
            self._order, self._cursor = list(book.users()), 0
        chosen = self._order[self._cursor:self._cursor + self.per_block]
        self._cursor += len(chosen)
        return chosen

    async def step(self) -> list[str]:
        """Audit the next slice; the accounts restored."""
        sync = self.keeper.sync
        book = sync.book
        users = self.next_slice(book)
        try:
            restored = await self.repair.restore(book, sync.reader, users)
        except Exception as exc:  # a task boundary: this slice comes round again next pass
            log.warning("book_audit_failed", accounts=len(users),
                        error=f"{type(exc).__name__}: {exc}")
            return []
        if restored is None:  # the book moved on during the read: none was checked
            return []
        self.audited += len(users)
        if restored:
            self.restored(restored)
            self.keeper.metrics.book_repairs.labels(source="audit").inc(len(restored))
            log.warning("book_repaired", source="audit", block=book.block_number,
                        accounts=len(restored), users=restored[:10])
        return restored
