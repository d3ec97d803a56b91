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
record of each user it touches and the previous market state (all immutable, so a reference is
enough). ``rollback(n)`` restores them newest first. The journal of the last ``window`` blocks
is kept; a fork below that needs a re-index (``BookRollbackError``). An undo journal rather than
snapshots: a block touches a handful of users, a snapshot would copy them all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from keeper.domain.account import (
    AccountData,
    Market,
    UserAccount,
    UserReserve,
    calculate_user_account_data,
)
from keeper.domain.reserve_config import UserConfiguration
from keeper.errors import KeeperError
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3.reader import MarketHints, MarketRead, ReserveTokens

DEFAULT_JOURNAL_WINDOW = 64


class BookError(KeeperError, RuntimeError):
    """The book was asked something it cannot do (an event for an unknown block, ...)."""


class BookRollbackError(BookError):
    """A rollback below the oldest journaled block: the book must be re-indexed."""


A_TOKEN, VARIABLE_DEBT, STABLE_DEBT = "a", "v", "s"


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user in the book: collateral-enabled assets, eMode category, balances by asset."""

    collateral: frozenset[str] = frozenset()
    emode_category: int = 0
    positions: Mapping[str, UserReserve] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.collateral and self.emode_category == 0 and not self.positions


EMPTY_USER = UserRecord()


@dataclass(frozen=True, slots=True)
class MarketState:
    """Everything but users: the last market read, the token roles, the feed aggregators.

    ``aggregators`` maps each aggregator (the contract that emits ``AnswerUpdated``) to the
    assets whose oracle source reads it; ``hints`` is what the next market read asks for.
    """

    read: MarketRead | None = None
    hints: MarketHints = field(default_factory=MarketHints)
    tokens: Mapping[str, ReserveTokens] = field(default_factory=dict)
    aggregators: Mapping[str, frozenset[str]] = field(default_factory=dict)
    proxies: frozenset[str] = frozenset()

    def token_roles(self) -> dict[str, tuple[str, str]]:
        """token address → (asset, A_TOKEN | VARIABLE_DEBT | STABLE_DEBT)."""
        roles: dict[str, tuple[str, str]] = {}
        for t in self.tokens.values():
            roles[t.a_token] = (t.asset, A_TOKEN)
            roles[t.variable_debt_token] = (t.asset, VARIABLE_DEBT)
            roles[t.stable_debt_token] = (t.asset, STABLE_DEBT)
        return roles


@dataclass(frozen=True, slots=True)
class BookBlock:
    """A block the book has applied."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int


GENESIS = BookBlock(-1, "", "", 0)


@dataclass(slots=True)
class BlockJournal:
    """How to undo one block: the state before it."""

    block: BookBlock
    previous_block: BookBlock
    previous_state: MarketState
    users: dict[str, UserRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BlockUpdate:
    """What one applied block changed, for the scanner.

    ``moved_assets``: assets whose oracle price differs from the previous block's, whose feed
    reported ``AnswerUpdated`` or whose source changed: re-check their holders.
    ``market_changed``: a reserve's parameters or an eMode category changed: re-check everyone.
    """

    block: BookBlock
    touched_users: frozenset[str]
    moved_assets: frozenset[str]
    market_changed: bool
    sources_changed: bool


class PositionBook:
    """Positions, reserves and prices at ``block_number``; see the module docstring."""

    def __init__(self, *, window: int = DEFAULT_JOURNAL_WINDOW) -> None:
        self.window = window
        self.block = GENESIS
        self.state = MarketState()
        self._users: dict[str, UserRecord] = {}
        self._holders: dict[str, set[str]] = {}
        self._roles: dict[str, tuple[str, str]] = {}
        self._market: Market | None = None
        self.journal: OrderedDict[int, BlockJournal] = OrderedDict()
        self._open: BlockJournal | None = None
        self._open_block: BookBlock | None = None
        self._touched: set[str] = set()
        self._moved: set[str] = set()
        self._sources_changed = False
        self._shape_changed = False
        # Users changed since the last checkpoint (the store writes only those).
        self.dirty: set[str] = set()

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

    # ---- the scanner's API -----------------------------------------------------------------
    @property
    def block_number(self) -> int:
        return self.block.number

    @property
    def block_hash(self) -> str:
        return self.block.hash

    @property
    def block_timestamp(self) -> int:
        return self.block.timestamp

    def market(self) -> Market:
        """Reserves by id, prices by asset, eMode categories, at the book's block timestamp."""
        if self._market is None:
            read = self.state.read
            if read is None:
                raise BookError("the book has no market read yet")
            self._market = Market(
                reserves={r.id: r for r in read.reserves.values()},
                prices=dict(read.prices),
                timestamp=self.block.timestamp,
                emode_categories=dict(read.emode_categories),
            )
        return self._market

    def account(self, user: str) -> UserAccount:
        """The user as the Pool sees them (configuration bits built from the book)."""
        rec = self._users.get(user, EMPTY_USER)
        read = self.state.read
        reserves = read.reserves if read is not None else {}
        data = 0
        for asset in rec.collateral:
            r = reserves.get(asset)
            if r is not None:
                data |= 1 << (r.id * 2 + 1)
        for asset, pos in rec.positions.items():
            r = reserves.get(asset)
            if r is not None and (pos.scaled_variable_debt or pos.stable_debt_principal):
                data |= 1 << (r.id * 2)
        return UserAccount(UserConfiguration(data), rec.emode_category, rec.positions)

    def record(self, user: str) -> UserRecord:
        """The book's raw record of ``user`` (empty if unknown)."""
        return self._users.get(user, EMPTY_USER)

    def users(self) -> Iterable[str]:
        """Every user the book knows (with a position, a collateral flag or an eMode)."""
        return self._users.keys()

    def holders(self, asset: str) -> set[str]:
        """Users with an aToken balance or debt in ``asset``."""
        return self._holders.get(asset, set())

    def account_data(self, user: str) -> AccountData:
        """Pool.getUserAccountData of ``user`` at the book's block, exact."""
        return calculate_user_account_data(self.account(user), self.market())

    def health_factor(self, user: str) -> int:
        """The user's health factor (wad; UINT256_MAX without debt), exact."""
        return self.account_data(user).health_factor

    def aggregator_assets(self, aggregator: str) -> frozenset[str]:
        """Assets whose price an ``AnswerUpdated`` from ``aggregator`` moves."""
        return self.state.aggregators.get(aggregator, frozenset())

    def token_role(self, token: str) -> tuple[str, str] | None:
        """(asset, A_TOKEN | VARIABLE_DEBT | STABLE_DEBT) of a reserve token, or None."""
        return self._roles.get(token)

    def watched_addresses(self, *, feeds: bool = True) -> list[str]:
        """Token, proxy and aggregator addresses whose events the book consumes."""
        out = sorted(self._roles)
        if feeds:
            out += sorted(self.state.proxies | set(self.state.aggregators))
        return out

    def __len__(self) -> int:
        return len(self._users)

    def __iter__(self) -> Iterator[str]:
        return iter(self._users)

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
        self._touched = set()
        self._moved = set()
        self._sources_changed = False
        self._shape_changed = False

    def end_block(self) -> BlockUpdate:
        """Finish the open block: it becomes the book's block."""
        block = self._open_block
        if block is None:
            raise BookError("no block is open")
        if self._open is not None:
            self.journal[block.number] = self._open
            while len(self.journal) > self.window:
                self.journal.popitem(last=False)
        self._open = None
        self._open_block = None
        self.block = block
        self._market = None
        return BlockUpdate(
            block, frozenset(self._touched), frozenset(self._moved), self._shape_changed,
            self._sources_changed,
        )

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
        for user, rec in j.users.items():
            self._store_user(user, rec)
        self._set_state(j.previous_state)

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
        match event:
            case ev.ScaledMint():
                self._scaled(event.address, event.on_behalf_of, event.scaled_delta)
            case ev.ScaledBurn():
                self._scaled(event.address, event.from_, event.scaled_delta)
            case ev.BalanceTransfer():
                if event.from_ != event.to:
                    self._scaled(event.address, event.from_, -event.value)
                    self._scaled(event.address, event.to, event.value)
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
            case ev.Supply() | ev.Withdraw() | ev.Borrow() | ev.Repay():
                self._touched.add(event.user)
            case ev.LiquidationCall():
                self._touched.add(event.user)
            case ev.ReserveInitialized():
                self._register_reserve(ReserveTokens(
                    event.asset, event.a_token, event.stable_debt_token, event.variable_debt_token))
            case ev.EModeCategoryAdded():
                self._want_emode(event.category_id)
                self._shape_changed = True
            case (ev.CollateralConfigurationChanged() | ev.EModeAssetCategoryChanged()
                  | ev.ReserveParamsChanged() | ev.ReserveDropped()):
                self._shape_changed = True
            case ev.AssetSourceUpdated():
                self._moved.add(event.asset)
                self._sources_changed = True
            case ev.AggregatorConfirmed():
                self._sources_changed = True
                self._moved |= self._assets_behind(event.address)
            case ev.AnswerUpdated():
                self._moved |= self.aggregator_assets(event.address)
            case _:
                pass  # ReserveDataUpdated, SwapBorrowRateMode: the token events carry the change

    def set_market(self, read: MarketRead, hints: MarketHints) -> None:
        """Replace reserves, prices and eMode categories with this block's read."""
        old = self.state.read
        if old is not None:
            for asset, price in read.prices.items():
                if old.prices.get(asset) != price:
                    self._moved.add(asset)
            if {a: r.configuration for a, r in old.reserves.items()} != {
                a: r.configuration for a, r in read.reserves.items()
            } or old.emode_categories != read.emode_categories:
                self._shape_changed = True
            if old.sources != read.sources:
                self._sources_changed = True
        tokens = dict(self.state.tokens)
        tokens.update(read.tokens)
        # Categories users are in stay in the hints even when no reserve names them.
        emode_ids = hints.emode_ids | self.state.hints.emode_ids
        self._set_state(replace(
            self.state, read=read, tokens=tokens, hints=replace(hints, emode_ids=emode_ids)))

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
    def rollback(self, number: int) -> None:
        """Undo every block above ``number``; the book is then at block ``number``."""
        if self._open_block is not None:
            raise BookError("cannot roll back with a block open")
        if number >= self.block.number:
            return
        needed = range(number + 1, self.block.number + 1)
        if any(n not in self.journal for n in needed):
            raise BookRollbackError(
                f"cannot roll back to {number}: journal covers "
                f"{min(self.journal, default='-')}..{max(self.journal, default='-')}"
            )
        for n in reversed(needed):
            j = self.journal.pop(n)
            for user, rec in j.users.items():
                self._store_user(user, rec)
            self._set_state(j.previous_state)
            self.block = j.previous_block
        self._market = None

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
        self.journal = OrderedDict((j.block.number, j) for j in journal)
        self.dirty = set()
        self._market = None

    # ---- internals -------------------------------------------------------------------------
    def _set_state(self, state: MarketState) -> None:
        if state.tokens is not self.state.tokens:
            self._roles = state.token_roles()
        self.state = state
        self._market = None

    def _register_reserve(self, tokens: ReserveTokens) -> None:
        all_tokens = dict(self.state.tokens)
        all_tokens[tokens.asset] = tokens
        hints = self.state.hints
        assets = hints.assets if tokens.asset in hints.assets else (*hints.assets, tokens.asset)
        self._set_state(replace(self.state, tokens=all_tokens, hints=replace(hints, assets=assets)))
        self._shape_changed = True

    def _want_emode(self, category_id: int) -> None:
        hints = self.state.hints
        if category_id != 0 and category_id not in hints.emode_ids:
            self._set_state(replace(self.state, hints=replace(
                hints, emode_ids=hints.emode_ids | {category_id})))

    def _assets_behind(self, proxy: str) -> set[str]:
        read = self.state.read
        if read is None:
            return set()
        return {a for a, s in read.sources.items() if s == proxy}

    def _put(self, user: str, rec: UserRecord) -> None:
        if self._open is not None and user not in self._open.users:
            self._open.users[user] = self._users.get(user, EMPTY_USER)
        self._touched.add(user)
        self._store_user(user, rec)

    def _store_user(self, user: str, rec: UserRecord) -> None:
        old = self._users.get(user, EMPTY_USER)
        for asset in old.positions.keys() - rec.positions.keys():
            holders = self._holders.get(asset)
            if holders is not None:
                holders.discard(user)
        for asset in rec.positions:
            self._holders.setdefault(asset, set()).add(user)
        if rec.is_empty():
            self._users.pop(user, None)
        else:
            self._users[user] = rec
        self.dirty.add(user)

    def _position(self, rec: UserRecord, asset: str, pos: UserReserve) -> UserRecord:
        positions = dict(rec.positions)
        if pos.scaled_a_token_balance or pos.scaled_variable_debt or pos.stable_debt_principal:
            positions[asset] = pos
        else:
            positions.pop(asset, None)
        return replace(rec, positions=positions)

    def _scaled(self, token: str, user: str, delta: int) -> None:
        role = self._roles.get(token)
        if role is None or delta == 0:
            return
        asset, kind = role
        rec = self.record(user)
        pos = rec.positions.get(asset, UserReserve())
        if kind == A_TOKEN:
            value = pos.scaled_a_token_balance + delta
            pos = replace(pos, scaled_a_token_balance=value)
        elif kind == VARIABLE_DEBT:
            value = pos.scaled_variable_debt + delta
            pos = replace(pos, scaled_variable_debt=value)
        else:
            return
        if value < 0:
            # The token would have reverted; the book missed an event. Fail loudly: a
            # silently wrong balance is worse than a re-index.
            raise BookError(f"scaled balance of {user} in {token} would be {value}")
        self._put(user, self._position(rec, asset, pos))

    def _stable(
        self, token: str, user: str, principal: int, rate: int | None, timestamp: int
    ) -> None:
        role = self._roles.get(token)
        if role is None or role[1] != STABLE_DEBT:
            return
        asset = role[0]
        rec = self.record(user)
        pos = rec.positions.get(asset, UserReserve())
        if principal == 0:
            # A full repay clears the user's rate and timestamp in the token.
            pos = replace(pos, stable_debt_principal=0, stable_borrow_rate=0,
                          stable_last_update_timestamp=0)
        else:
            pos = replace(
                pos,
                stable_debt_principal=principal,
                stable_borrow_rate=pos.stable_borrow_rate if rate is None else rate,
                stable_last_update_timestamp=timestamp,
            )
        self._put(user, self._position(rec, asset, pos))

