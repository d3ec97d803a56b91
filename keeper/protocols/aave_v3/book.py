"""The position book: every Aave V3 account, reserve and price at one block, with undo.

The book is state, not IO: ``keeper.pipeline.sync`` feeds it decoded events and market reads, and the
scanner asks it for accounts and health factors (exact, via
``keeper.domain.account.calculate_user_account_data``).

What it tracks per user, and from what:

* scaled aToken and scaled variable-debt balances, from the tokens' ``Mint``/``Burn``/
  ``BalanceTransfer`` events. The scaled change is recomputed from each event's amount and
  index with the token's own ``rayDiv``, so it is the token's figure to the wei (see
  ``keeper.protocols.aave_v3.events``);
* stable debt (stored principal, the user's rate and timestamp), from the stable debt token's
  events and the block timestamp;
* collateral flags, from ``ReserveUsedAsCollateralEnabled/Disabled`` (every path that changes
  the flag emits one of them, including the automatic enable on a first supply);
* the borrowing flags are *derived*: a reserve is borrowed iff the user holds debt in it. The
  Pool clears the flag exactly when a repay or liquidation takes the whole debt, which burns
  the whole scaled balance (``rayDiv(rayMul(s, i), i) == s`` for any index ≥ 1 ray), so the two
  agree; the only divergence (a partial repay leaving 0 scaled with an index above 2 ray) has
  zero debt on both sides and the same health factor;
* eMode, from ``UserEModeSet``.

Reserves, eMode categories and prices are replaced wholesale by each block's market read.

Reorgs: every block applied with a journal records, before its first change, the previous
record of each user it touches and the previous market state (``keeper.protocols.aave_v3.journal``).
``rollback(n)`` restores them newest first. The journal of the last ``window`` blocks is kept; a
fork below that needs a re-index (``BookRollbackError``).

Where things are: the values in ``book_state``, the read side in ``book_contents``, how an
event changes a user's record in ``book_records``, the undo journal in ``journal``; this module
applies blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from keeper.domain.account import UserReserve
from keeper.domain.reserve_config import UserConfiguration
from keeper.domain.revision import AaveRevision
from keeper.domain.scaled_balance import scaled_after
from keeper.domain.wadray import ArithmeticRevert
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3 import events_later as evl
from keeper.protocols.aave_v3.book_contents import BookContents
from keeper.protocols.aave_v3.book_records import with_scaled_delta, with_stable_debt
from keeper.protocols.aave_v3.book_state import (
    A_TOKEN,
    EMPTY_USER,
    GENESIS,
    STABLE_DEBT,
    VARIABLE_DEBT,
    BlockUpdate,
    BookBlock,
    BookError,
    BookRollbackError,
    MarketState,
    UserRecord,
)
from keeper.protocols.aave_v3.journal import DEFAULT_JOURNAL_WINDOW, BlockJournal, UndoJournal
from keeper.protocols.aave_v3.reader import MarketHints, MarketRead, ReserveTokens

__all__ = [
    "A_TOKEN", "DEFAULT_JOURNAL_WINDOW", "EMPTY_USER", "GENESIS", "STABLE_DEBT", "VARIABLE_DEBT",
    "BlockJournal", "BlockUpdate", "BookBlock", "BookError", "BookRollbackError", "MarketState",
    "PositionBook", "UserRecord",
]


@dataclass(slots=True)
class _Changes:
    """What the open block changed so far, for its ``BlockUpdate``."""

    touched: set[str] = field(default_factory=set)
    moved: set[str] = field(default_factory=set)
    sources_changed: bool = False
    shape_changed: bool = False


class PositionBook(BookContents):
    """Positions, reserves and prices at ``block_number``; see the module docstring.

    The questions it answers are ``BookContents``'; here: applying, undoing and loading blocks.
    """

    def __init__(self, *, window: int = DEFAULT_JOURNAL_WINDOW) -> None:
        super().__init__()
        self.window = window
        self.journal = UndoJournal(window)
        self._open: BlockJournal | None = None
        self._open_block: BookBlock | None = None
        self._changes = _Changes()

    def snapshot(self) -> PositionBook:
        """A read-only copy at the current block, safe to read from another thread while this
        book goes on applying blocks: records and market state are immutable and shared; only
        the containers are copied (O(accounts), ~0.1 s at a million)."""
        if self._open_block is not None:
            raise BookError(f"block {self._open_block.number} is still open")
        snap = PositionBook(window=self.window)
        snap.block = self.block
        snap.state = self.state
        snap._users = dict(self._users)
        snap._holders = {asset: set(users) for asset, users in self._holders.items()}
        snap._roles = dict(self._roles)
        return snap

    # ---- applying a block ------------------------------------------------------------------
    def begin_block(self, block: BookBlock, *, journal: bool = True) -> None:
        """Start applying ``block`` (which must follow the book's block).

        With ``journal`` the block can be rolled back; a backfill far below the tip turns it
        off (and clears older journals, which no longer chain to the book's block).
        """
        if self._open_block is not None:
            raise BookError(f"block {self._open_block.number} is still open")
        if block.number <= self.block.number:
            raise BookError(f"block {block.number} is not above the book's {self.block.number}")
        if journal:
            self._open = BlockJournal(block, self.block, self.state)
        else:
            self.journal.clear()
        self._open_block = block
        self._changes = _Changes()

    def end_block(self) -> BlockUpdate:
        """Finish the open block: it becomes the book's block."""
        block = self._open_block
        if block is None:
            raise BookError("no block is open")
        if self._open is not None:
            self.journal.keep(self._open)
        self._open = None
        self._open_block = None
        self.block = block
        self._market = None
        c = self._changes
        return BlockUpdate(block, frozenset(c.touched), frozenset(c.moved), c.shape_changed,
                           c.sources_changed)

    def abort_block(self) -> None:
        """Undo the open block's changes (after an error while applying it).

        Only a journaled block can be undone; otherwise the book is unusable
        (``BookRollbackError``) and must be re-indexed.
        """
        block, j = self._open_block, self._open
        self._open_block = self._open = None
        if block is None:
            return
        if j is None:
            raise BookRollbackError(f"block {block.number} failed half-applied without a journal")
        self._undo(j)

    def register_reserves(self, tokens: Iterable[ReserveTokens]) -> None:
        """Make reserves' tokens known before their events are applied (before a backfill)."""
        if self._open_block is not None:
            raise BookError("register_reserves() inside a block")
        for t in tokens:
            self._register_reserve(t)

    def apply_all(self, events: Iterable[ev.AaveEvent]) -> None:
        for e in events:
            self.apply(e)

    def apply(self, event: ev.AaveEvent) -> None:
        """Apply one event of the open block."""
        block = self._open_block
        if block is None:
            raise BookError("apply() outside begin_block()/end_block()")
        c = self._changes
        match event:
            case ev.ScaledMint():
                self._scaled(event.address, event.on_behalf_of,
                             event.value - event.balance_increase, event.index)
            case ev.ScaledBurn():
                self._scaled(event.address, event.from_,
                             -(event.value + event.balance_increase), event.index)
            case ev.BalanceTransfer():
                if event.from_ != event.to:
                    self._moved(event.address, event.from_, -event.value)
                    self._moved(event.address, event.to, event.value)
            case ev.StableDebtMint():
                self._stable(event.address, event.on_behalf_of, event.principal_after,
                             event.new_rate, block.timestamp)
            case ev.StableDebtBurn():
                self._stable(event.address, event.from_, event.principal_after, None,
                             block.timestamp)
            case ev.ReserveUsedAsCollateralEnabled():
                rec = self.record(event.user)
                self._put(event.user, replace(rec, collateral=rec.collateral | {event.reserve}))
            case ev.ReserveUsedAsCollateralDisabled():
                rec = self.record(event.user)
                self._put(event.user, replace(rec, collateral=rec.collateral - {event.reserve}))
            case ev.UserEModeSet():
                self._put(event.user, replace(self.record(event.user),
                                              emode_category=event.category_id))
                self._want_emode(event.category_id)
            case (ev.Supply() | ev.Withdraw() | ev.Borrow() | ev.Repay() | ev.LiquidationCall()
                  | evl.DeficitCreated()):
                # A deficit's burned debt arrives as the debt token's Burn: the book follows it.
                c.touched.add(event.user)
            case ev.ReserveInitialized():
                self._register_reserve(ReserveTokens(
                    event.asset, event.a_token, event.stable_debt_token, event.variable_debt_token))
            case ev.EModeCategoryAdded():
                self._want_emode(event.category_id)
                c.shape_changed = True
            case (ev.CollateralConfigurationChanged() | ev.EModeAssetCategoryChanged()
                  | ev.ReserveParamsChanged() | ev.ReserveDropped() | evl.EModeAssetChanged()):
                c.shape_changed = True
            case ev.AssetSourceUpdated():
                c.moved.add(event.asset)
                c.sources_changed = True
            case ev.AggregatorConfirmed():
                c.sources_changed = True
                c.moved |= self.state.assets_behind(event.address)
            case ev.AnswerUpdated():
                c.moved |= self.aggregator_assets(event.address)
            case _:
                pass  # ReserveDataUpdated, SwapBorrowRateMode: the token events carry the change

    def set_market(self, read: MarketRead, hints: MarketHints) -> None:
        """Replace reserves, prices and eMode categories with this block's read."""
        old, c = self.state.read, self._changes
        if old is not None:
            c.moved |= {a for a, price in read.prices.items() if old.prices.get(a) != price}
            if {a: r.configuration for a, r in old.reserves.items()} != {
                a: r.configuration for a, r in read.reserves.items()
            } or old.emode_categories != read.emode_categories:
                c.shape_changed = True
            if old.sources != read.sources:
                c.sources_changed = True
        tokens = {**self.state.tokens, **read.tokens}
        # Categories users are in stay in the hints even when no reserve names them.
        emode_ids = hints.emode_ids | self.state.hints.emode_ids
        self._set_state(replace(
            self.state, read=read, tokens=tokens, hints=replace(hints, emode_ids=emode_ids)))

    def set_revision(self, revision: AaveRevision) -> None:
        """The Pool runs ``revision`` from the open block on (read at start and after the
        proxy's ``Upgraded``); events of the block are applied with its rules."""
        if revision != self.state.revision:
            self._set_state(replace(self.state, revision=revision))
            self._changes.shape_changed = True

    def set_feeds(self, aggregators_by_source: Mapping[str, str]) -> None:
        """Record which aggregator each oracle source reads (from ``resolve_aggregators``)."""
        read = self.state.read
        sources = read.sources if read is not None else {}
        by_agg: dict[str, set[str]] = {}
        for asset, source in sources.items():
            agg = aggregators_by_source.get(source)
            if agg is not None:
                by_agg.setdefault(agg, set()).add(asset)
        proxies = frozenset(s for s, a in aggregators_by_source.items() if s != a)
        self._set_state(replace(
            self.state,
            aggregators={a: frozenset(s) for a, s in by_agg.items()},
            proxies=proxies,
        ))

    # ---- undo ------------------------------------------------------------------------------
    def rollback(self, number: int) -> BlockUpdate | None:
        """Undo every block above ``number``; the book is then at block ``number``.

        Returns what the rollback changed (``rollback=True``; the accounts whose records were
        restored; the market is treated as changed), or None when there was nothing to undo:
        whoever scanned or acted on the undone blocks must look at those accounts again.
        """
        if self._open_block is not None:
            raise BookError("cannot roll back with a block open")
        if number >= self.block.number:
            return None
        users: set[str] = set()
        for j in self.journal.take_above(number, self.block.number):
            self._undo(j)
            users.update(j.users)
            self.block = j.previous_block
        self._market = None
        return BlockUpdate(self.block, frozenset(users), frozenset(), True, True, rollback=True)

    def restore_user(self, user: str, configuration: UserConfiguration, emode_category: int,
                     positions: Mapping[str, UserReserve]) -> bool:
        """Put ``user`` back as the contracts hold it at the book's block (a record the chain
        contradicted: an event the book missed or took twice). Outside any block and not
        journaled: a rollback below this block leaves the restored record, which the next
        check against the chain corrects again. Whether the record changed."""
        if self._open_block is not None:
            raise BookError(f"block {self._open_block.number} is still open")
        read = self.state.read
        reserves = read.reserves if read is not None else {}
        collateral = frozenset(a for a, r in reserves.items()
                               if configuration.is_using_as_collateral(r.id))
        rec = UserRecord(collateral, emode_category, dict(positions))
        if rec == self.record(user):
            return False
        self._store_user(user, rec)
        return True

    def recent_blocks(self) -> list[BookBlock]:
        """Journaled blocks, oldest first, ending with the book's block."""
        return [j.block for j in self.journal.values()]

    # ---- loading (store) -------------------------------------------------------------------
    def load(
        self,
        block: BookBlock,
        state: MarketState,
        users: Mapping[str, UserRecord],
        journal: Iterable[BlockJournal] = (),
    ) -> None:
        """Replace the whole book (from a checkpoint)."""
        self.block = block
        self._users = {}
        self._holders = {}
        for user, rec in users.items():
            self._store_user(user, rec)
        self._set_state(state)
        self.journal = UndoJournal(self.window, journal)
        self.dirty = set()
        self._market = None

    # ---- internals -------------------------------------------------------------------------
    def _undo(self, j: BlockJournal) -> None:
        for user, rec in j.users.items():
            self._store_user(user, rec)
        self._set_state(j.previous_state)

    def _register_reserve(self, tokens: ReserveTokens) -> None:
        self._set_state(self.state.with_reserve(tokens))
        self._changes.shape_changed = True

    def _want_emode(self, category_id: int) -> None:
        state = self.state.wanting_emode(category_id)
        if state is not self.state:
            self._set_state(state)

    def _put(self, user: str, rec: UserRecord) -> None:
        if self._open is not None:
            self._open.note(user, self._users.get(user, EMPTY_USER))
        self._changes.touched.add(user)
        self._store_user(user, rec)

    def _scaled(self, token: str, user: str, balance_change: int, index: int) -> None:
        """A Mint or Burn: the scaled balance after it, by the revision's token math."""
        role = self._roles.get(token)
        if role is None or role[1] == STABLE_DEBT:
            return
        asset, kind = role
        pos = self.record(user).positions.get(asset)
        before = 0
        if pos is not None:
            before = pos.scaled_variable_debt if kind == VARIABLE_DEBT else pos.scaled_a_token_balance
        try:
            after = scaled_after(before, balance_change, index, debt=kind == VARIABLE_DEBT,
                                 revision=self.state.revision)
        except ArithmeticRevert as exc:
            # The token would have reverted: the book missed an event. Fail loudly.
            raise BookError(f"{user} in {token}: {exc}") from None
        self._moved(token, user, after - before)

    def _moved(self, token: str, user: str, delta: int) -> None:
        """A scaled balance change the event states outright (BalanceTransfer)."""
        role = self._roles.get(token)
        if role is None or delta == 0:
            return
        asset, kind = role
        rec = self.record(user)
        new = with_scaled_delta(rec, asset, kind, delta, user=user, token=token)
        if new is not rec:
            self._put(user, new)

    def _stable(
        self, token: str, user: str, principal: int, rate: int | None, timestamp: int
    ) -> None:
        role = self._roles.get(token)
        if role is None or role[1] != STABLE_DEBT:
            return
        self._put(user, with_stable_debt(self.record(user), role[0], principal, rate, timestamp))
