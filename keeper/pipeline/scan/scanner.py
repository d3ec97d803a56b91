"""The health scanner: every liquidatable account of the book, none missed, confirmed on chain.

Three stages, each cheaper than the next is exact:

1. **Float prefilter** (``keeper.pipeline.scan.prefilter``): every account's health factor as
   float64, kept in step with the book. Accounts whose float HF is below ``1 + margin``
   (widened by interest accrued since their rows were set) are candidates, with the accounts
   the floats cannot vouch for.
2. **Exact math** (``calculate_user_account_data``): the candidates' account data to the wei,
   from the book. Candidates whose float HF is under the line by more than the floats can
   err (``PrefilterIndex.surely_under``) are flagged on their float figures first, and get
   their exact math once the chain has answered: after a crash most candidates are far under.
3. **The chain**: the accounts near or under the line are read back with
   ``Pool.getUserAccountData`` through Multicall3, at the book's block, in slices (a newer
   block stops them: ``read_back``). The chain is the truth; a difference from the exact book
   value means the book is wrong, and is logged and counted. An account whose figures the
   chain agreed with is not read again until an event touches it or a price it holds moves:
   its exact figures are then still the book's, which the chain vouched for (in the
   10,000-borrower crash ~1,500 accounts stayed under the line block after block, each read
   back every block: ~290 ms of a loaded node a block).

A rebuild of the prefilter takes seconds at a million accounts. The async entry points
(``create``, ``sync_off_loop``, ``rebuild_off_loop``) run it in a worker thread on a snapshot
of the book, so the event loop keeps serving heads, sends and health checks meanwhile; the
synchronous ones (``sync``, ``touch``, ``rebuild``) are for callers that own their thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from keeper.chain.multicall import MULTICALL3
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import BlockId
from keeper.domain.account import (
    AccountData,
    Market,
    MissingMarketData,
    UserAccount,
    calculate_user_account_data,
    is_bad_debt,
)
from keeper.domain.liq_price import DEFAULT_MARGIN, HealthFactorPrefilter
from keeper.domain.wadray import WAD, ArithmeticRevert
from keeper.obs.logging import get_logger
from keeper.pipeline.scan.book_view import BookView
from keeper.pipeline.scan.candidate import LiquidatableAccount, rank
from keeper.pipeline.scan.prefilter import FloatFigures, PrefilterIndex
from keeper.pipeline.scan.read_back import differs, pinned, read_back
from keeper.pipeline.scan.stats import ScanStats
from keeper.protocols.aave_v3.book import PositionBook

log = get_logger(__name__)

LIQUIDATION_THRESHOLD_HF = WAD
"""An account is liquidatable when its health factor is below 1 (a wad)."""

_OFF_LOOP_ATTEMPTS = 3
"""Rebuilds in a thread before ``sync_off_loop`` gives up on the market settling (it then
catches up on the caller's thread)."""
VOUCH_PRICE_DRIFT = 1e-4
"""How far (relative) a price may creep before its holders' vouches go. The book's exact
figures follow every move; a vouch only says the chain agreed with the book's positions. An
oracle feed's update moves by its deviation threshold (0.5-2% on Chainlink's): its holders
are read again at each. A rate-based price (~4% a year) crosses this about once a day; a
price the book read wrong by less misjudges no account beyond 1e-4 of the line meanwhile."""


def _frozen(book: BookView) -> BookView:
    """A view of ``book`` that a worker thread may read while the loop moves the book on.

    A ``PositionBook`` gives a snapshot (O(accounts) container copies, ~0.1 s at a million,
    on the caller's thread: the loop must not apply a block mid-copy). Other views are read
    as they are: their owner must not change them during an off-loop rebuild.
    """
    return book.snapshot() if isinstance(book, PositionBook) else book


def _exact_figures(accounts: Mapping[str, UserAccount], market: Market, block: int,
                   stats: ScanStats) -> dict[str, AccountData]:
    """Exact account data of ``accounts`` (the book's at ``block``) on ``market``; accounts the
    book cannot evaluate are logged and counted."""
    out: dict[str, AccountData] = {}
    for user, account in accounts.items():
        try:
            out[user] = calculate_user_account_data(account, market)
        except (MissingMarketData, ArithmeticRevert) as exc:
            stats.book_errors += 1
            log.warning("book_cannot_evaluate", user=user, error=str(exc), block=block)
    return out


@dataclass(slots=True)
class _BookPass:
    """One scan's figures from the book: ``exact`` for the candidates but the ``sure`` ones
    (under the line by their floats), whose accounts at the scan's block wait in ``held``
    until ``complete``; ``near``: the candidates to read back from the chain."""

    block: int
    market: Market
    sure: dict[str, FloatFigures]
    held: dict[str, UserAccount]
    exact: dict[str, AccountData]
    near: list[str]
    stats: ScanStats

    def flags(self) -> list[LiquidatableAccount]:
        """The book's liquidatable accounts, ranked (not confirmed by the chain)."""
        exact, block = self.exact, self.block
        return rank([LiquidatableAccount.estimated(f, block=block) for f in self.sure.values()]
                    + [LiquidatableAccount.of(u, exact[u], confirmed=False, block=block)
                       for u in self.near if u in exact and not is_bad_debt(exact[u])
                       and exact[u].health_factor < LIQUIDATION_THRESHOLD_HF])

    def complete(self) -> None:
        """The held accounts' exact math."""
        self.exact.update(_exact_figures(self.held, self.market, self.block, self.stats))


class HealthScanner:
    """Finds the liquidatable accounts of a book; see the module docstring for how.

    Build it on a synced book (``await HealthScanner.create(book)`` from the loop), then per
    block: ``await sync_off_loop(touched_users)`` and ``await scan(...)``. One caller at a time.
    """

    def __init__(
        self,
        book: BookView,
        *,
        margin: float = DEFAULT_MARGIN,
        refresh_drift: float = DEFAULT_MARGIN / 2,
    ) -> None:
        self.book = book
        self.margin = margin
        self.refresh_drift = refresh_drift
        self.stats = ScanStats()
        # The last scan's accounts with debt and no collateral: bad debt, never liquidatable
        # (nothing to seize; 3.3+ burns it into the reserve's deficit).
        self.bad_debt: list[LiquidatableAccount] = []
        # Accounts whose exact figures the chain agreed with, unchanged since (no event, no
        # price they hold moved, no rebuild).
        self._vouched: set[str] = set()
        self.mismatched: set[str] = set()  # whose book figures the chain contradicted: to repair
        self._index = PrefilterIndex()
        self.rebuild()

    @classmethod
    async def create(
        cls,
        book: BookView,
        *,
        margin: float = DEFAULT_MARGIN,
        refresh_drift: float = DEFAULT_MARGIN / 2,
    ) -> HealthScanner:
        """A scanner built in a worker thread from a snapshot of ``book``, following ``book``.

        Accounts that blocks applied during the build change are the caller's to pass to the
        next ``sync_off_loop``.
        """
        scanner = await asyncio.to_thread(
            cls, _frozen(book), margin=margin, refresh_drift=refresh_drift)
        scanner.book = book
        return scanner

    # ---- the prefilter, kept in step with the book ------------------------------------------
    @property
    def size(self) -> int:
        """Accounts in the prefilter."""
        return self._index.size

    @property
    def index(self) -> PrefilterIndex:
        """The prefilter index (rows, layout, reference values)."""
        return self._index

    @property
    def prefilter(self) -> HealthFactorPrefilter:
        """The float prefilter (row i is ``users[i]``)."""
        return self._index.prefilter

    @property
    def users(self) -> Sequence[str]:
        """Accounts in row order."""
        return self._index.users

    def rebuild(self) -> None:
        """Rebuild every row from the book, on this thread (see ``rebuild_off_loop``)."""
        self._install(PrefilterIndex.build(self.book))

    async def rebuild_off_loop(self, *, extra_rows: int = 0) -> None:
        """Rebuild every row in a worker thread from a snapshot of the book."""
        frozen = _frozen(self.book)
        self._install(await asyncio.to_thread(PrefilterIndex.build, frozen, extra_rows=extra_rows))

    def _install(self, index: PrefilterIndex) -> None:
        self._index = index
        self._vouched.clear()
        self.stats.rebuilds += 1
        self.stats.rows_set += index.size

    def touch(self, users: Iterable[str]) -> None:
        """Re-set the rows of accounts an event changed (new accounts get a row)."""
        distinct = list(dict.fromkeys(users))
        if not distinct:
            return
        self._vouched.difference_update(distinct)
        if not self._index.fits(distinct):
            self.rebuild()  # grows by an eighth: amortised, like a list
            return
        self._index.touch(self.book, distinct)
        self.stats.rows_set += len(distinct)

    def update_prices(self) -> int:
        """Move the columns whose price changed in the book; returns accounts re-evaluated.
        Their vouches go; one holding none of the moved prices keeps its vouch (only interest
        moved it, which the book follows), and so does a holder of a price that has moved
        less than ``VOUCH_PRICE_DRIFT`` since it last took them: a rate-based price (an LST's
        exchange rate, the devnet's wstETH adapter: ~1e-9 a block) moves every block, and its
        holders' vouches went each block (~500-650 accounts read back a block after the
        10,000-borrower crash, ~40M gas of calls on the node the liquidations need)."""
        rows, drifted = self._index.update_prices(self.book.market(), drift=VOUCH_PRICE_DRIFT)
        if self._vouched and drifted.size:
            self._vouched -= self._index.among(self._vouched, drifted)
        return int(rows.size)

    def _stale(self, touched: Iterable[str]) -> list[str] | None:
        """The accounts a sync re-sets, or None when the market's layout changed."""
        if self._index.layout_changed(self.book.market()):
            return None
        return sorted(set(touched) | self._index.stale(self.book, self.refresh_drift))

    def sync(self, touched: Iterable[str] = ()) -> None:
        """Bring the prefilter to the book's current block, on this thread.

        ``touched``: accounts whose positions events changed since the last sync. Reserve
        parameter changes and interest drift re-set the holders of the reserve; a new reserve,
        eMode category or price source rebuilds everything.
        """
        stale = self._stale(touched)
        if stale is None:
            log.info("scanner_rebuild", reason="layout_changed", block=self.book.block_number)
            self.rebuild()
            return
        # Prices first: rows set afterwards are then computed at the new prices only once.
        self.update_prices()
        self.touch(stale)

    async def sync_off_loop(self, touched: Iterable[str] = ()) -> None:
        """``sync``, with any rebuild (a new column, or more accounts than rows) in a worker
        thread; the rest is milliseconds of work on the loop."""
        wanted = set(touched)
        for _ in range(_OFF_LOOP_ATTEMPTS):
            stale = self._stale(wanted)
            if stale is not None and self._index.fits(stale):
                self.update_prices()
                self.touch(stale)
                return
            log.info("scanner_rebuild", block=self.book.block_number, off_loop=True,
                     reason="layout_changed" if stale is None else "out_of_rows")
            await self.rebuild_off_loop(extra_rows=len(wanted if stale is None else stale))
        log.warning("scanner_market_unsettled", block=self.book.block_number,
                    attempts=_OFF_LOOP_ATTEMPTS)
        self.sync(wanted)

    def drift(self) -> float:
        """Largest relative debt growth any row may have missed since it was set."""
        return self._index.drift(self.book.market())

    # ---- selection -----------------------------------------------------------------------
    def prefilter_candidates(self) -> list[str]:
        """Accounts the exact math must look at: float HF under the band, and the untrusted."""
        return self._index.candidates(self.book.market(), self.margin)

    def evaluate(self, users: Iterable[str]) -> dict[str, AccountData]:
        """Exact account data from the book; accounts the book cannot evaluate are logged."""
        book = self.book
        return _exact_figures({u: book.account(u) for u in users}, book.market(),
                              book.block_number, self.stats)

    async def scan(
        self,
        rpc: JsonRpc,
        pool: str,
        *,
        chunk: int = 500,
        multicall: str = MULTICALL3,
        on_book: Callable[[list[LiquidatableAccount]], None] | None = None,
        stale: Callable[[], bool] | None = None,
        ready: Awaitable[object] | None = None,
    ) -> list[LiquidatableAccount]:
        """The liquidatable accounts at the book's block, ranked, each checked by the chain
        (unless ``stale()`` cut the read-back short: ``stats.last_unread`` of them were not).

        The prefilter's candidates are evaluated exactly; those with an exact HF under the
        band (or that the book cannot evaluate) are read back from the chain at the book's
        block in one Multicall3 batch. Call ``sync`` first when the book has moved. Accounts
        with debt and no collateral go to ``self.bad_debt`` instead. ``on_book`` hears the
        accounts the book finds liquidatable (ranked, not confirmed yet) before the chain is
        asked: in a 10,000-borrower crash the chain's answer takes ~290 ms of a loaded node;
        the book's, on the floats for the accounts far under the line, 3-5 ms. ``ready``, when
        given, is awaited after the book's math and before ``on_book`` and the chain's answer
        (a read made beside the math that the flags depend on).
        """
        block = self.book.block_number
        started = time.perf_counter()
        picked = self.prefilter_candidates()
        book = self._book_pass(picked, block)
        near = book.near
        booked = time.perf_counter()
        self.stats.last_book_seconds = booked - started
        self.stats.last_sure = len(book.sure)
        at = pinned(self.book)  # the chain is asked at the block the math ran on
        flags = book.flags() if on_book is not None else []  # ranked while ``ready`` is out
        if ready is not None:
            await ready
            booked = time.perf_counter()
        if on_book is not None:
            on_book(flags)
        answers = await self._chain_answers(rpc, pool, near, book.exact, at,
                                            chunk, multicall, book.complete, stale)
        self.stats.last_chain_seconds = time.perf_counter() - booked
        found, bad = self._sorted(near, answers, book.exact, block)
        ranked = rank(found)
        self.stats.scans += 1
        self.stats.last_prefiltered = len(picked)
        self.stats.last_exact_near = len(near)
        self.stats.last_confirmed = sum(c.confirmed_on_chain for c in ranked)
        self.stats.last_bad_debt = len(bad)
        self.bad_debt = bad
        if bad:
            log.info("bad_debt_accounts", count=len(bad), block=block)
        return ranked

    def _book_pass(self, picked: list[str], block: int) -> _BookPass:
        """The book's figures of ``picked``. The accounts the floats alone show under the line
        wait for their exact math until the chain has answered (then compared with it): in
        the 10,000-borrower crash ~1,700 of them, ~20 ms of exact math before the first flag.
        One the chain vouched for is evaluated now: its figures stand in for a read. The
        others' accounts are taken now (~1.4 µs each): the book moves on during the read, at
        this block (a fault test at four blocks a second saw 159 false mismatches when the
        exact math was made on the book of a later block)."""
        market = self.book.market()
        sure = {f.user: f for f in self._index.surely_under(market, self.margin, self._vouched)}
        exact = self.evaluate(u for u in picked if u not in sure)
        line = LIQUIDATION_THRESHOLD_HF * (1.0 + self.margin)
        return _BookPass(
            block, market, sure, {u: self.book.account(u) for u in sure}, exact,
            [u for u in picked if u in sure or u not in exact or exact[u].health_factor < line],
            self.stats)

    def _sorted(self, near: list[str], answers: Mapping[str, AccountData | None],
                exact: Mapping[str, AccountData], block: int,
                ) -> tuple[list[LiquidatableAccount], list[LiquidatableAccount]]:
        """The liquidatable accounts and the bad debt among ``near``, by the chain's figures
        (by the book's where the chain did not answer, or was not asked)."""
        found: list[LiquidatableAccount] = []
        bad: list[LiquidatableAccount] = []
        for user in near:
            onchain = answers.get(user)
            book_data = exact.get(user)
            if onchain is None:
                if user in answers:
                    self.stats.chain_failures += 1
                    log.warning("chain_account_data_failed", user=user, block=block)
                if book_data is not None and is_bad_debt(book_data):
                    bad.append(LiquidatableAccount.of(user, book_data, confirmed=False,
                                                      block=block))
                elif book_data is not None and book_data.health_factor < LIQUIDATION_THRESHOLD_HF:
                    found.append(LiquidatableAccount.of(user, book_data, confirmed=False,
                                                        block=block))
                continue
            self._check_agreement(user, book_data, onchain, block)
            if is_bad_debt(onchain):
                bad.append(LiquidatableAccount.of(user, onchain, confirmed=True, block=block))
            elif onchain.health_factor < LIQUIDATION_THRESHOLD_HF:
                found.append(LiquidatableAccount.of(user, onchain, confirmed=True, block=block))
        return found, bad

    async def _chain_answers(self, rpc: JsonRpc, pool: str, near: list[str],
                             exact: dict[str, AccountData], at: BlockId, chunk: int,
                             multicall: str, read: Callable[[], None],
                             stale: Callable[[], bool] | None = None
                             ) -> dict[str, AccountData | None]:
        """The chain's figures of ``near``: read back, but for the accounts it vouched for
        (their book figures); none for those a stale read-back did not reach. ``read``
        completes ``exact`` once the chain has answered."""
        vouched = [u for u in near if u in self._vouched and u in exact]
        ask = [u for u in near if u not in self._vouched or u not in exact]
        chain = await read_back(rpc, pool, ask, exact, at, chunk, multicall, read, stale)
        answers = dict(zip(ask, chain, strict=False))
        answers.update((u, exact[u]) for u in vouched)
        self.stats.last_vouched = len(vouched)
        self.stats.last_unread = len(ask) - len(chain)
        return answers

    def _check_agreement(self, user: str, book_data: AccountData | None, onchain: AccountData,
                         block: int) -> None:
        """Vouch for an account whose book figures the chain agrees with; count and log one
        it does not (the book is wrong about it)."""
        if book_data is not None and not differs(book_data, onchain):
            self._vouched.add(user)
            return
        self._vouched.discard(user)
        self.mismatched.add(user)
        self.stats.mismatches += 1
        log.warning(
            "book_mismatch",
            user=user,
            block=block,
            book_health_factor=None if book_data is None else book_data.health_factor,
            chain_health_factor=onchain.health_factor,
            book_debt_base=None if book_data is None else book_data.total_debt_base,
            chain_debt_base=onchain.total_debt_base,
        )
