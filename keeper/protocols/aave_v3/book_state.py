"""The position book's values: user records, market state, blocks, and what a block changed.

All immutable: the undo journal keeps references to previous values instead of copies, and a
snapshot of the book shares them with the live book.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from keeper.domain.account import UserReserve
from keeper.domain.revision import AaveRevision
from keeper.errors import KeeperError
from keeper.protocols.aave_v3.reader import MarketHints, MarketRead, ReserveTokens

A_TOKEN, VARIABLE_DEBT, STABLE_DEBT = "a", "v", "s"
"""The role of a reserve token: aToken, variable debt token, stable debt token."""


class BookError(KeeperError, RuntimeError):
    """The book was asked something it cannot do (an event for an unknown block, ...)."""


class BookRollbackError(BookError):
    """A rollback below the oldest journaled block: the book must be re-indexed."""


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
    """Everything but users: the last market read, the token roles, the feed aggregators, the
    Pool's revision.

    ``aggregators`` maps each aggregator (the contract that emits ``AnswerUpdated``) to the
    assets whose oracle source reads it; ``hints`` is what the next market read asks for.
    """

    read: MarketRead | None = None
    hints: MarketHints = field(default_factory=MarketHints)
    tokens: Mapping[str, ReserveTokens] = field(default_factory=dict)
    aggregators: Mapping[str, frozenset[str]] = field(default_factory=dict)
    proxies: frozenset[str] = frozenset()
    # The Pool's revision at this block: how token events and balances are rounded.
    revision: AaveRevision = AaveRevision.V3_0

    def token_roles(self) -> dict[str, tuple[str, str]]:
        """token address → (asset, A_TOKEN | VARIABLE_DEBT | STABLE_DEBT)."""
        roles: dict[str, tuple[str, str]] = {}
        for t in self.tokens.values():
            roles[t.a_token] = (t.asset, A_TOKEN)
            roles[t.variable_debt_token] = (t.asset, VARIABLE_DEBT)
            if int(t.stable_debt_token, 16):  # 3.2+ reserves have none
                roles[t.stable_debt_token] = (t.asset, STABLE_DEBT)
        return roles

    def with_reserve(self, tokens: ReserveTokens) -> MarketState:
        """This state knowing a reserve's tokens, and asking for the reserve in market reads."""
        all_tokens = {**self.tokens, tokens.asset: tokens}
        hints = self.hints
        assets = hints.assets if tokens.asset in hints.assets else (*hints.assets, tokens.asset)
        return replace(self, tokens=all_tokens, hints=replace(hints, assets=assets))

    def wanting_emode(self, category_id: int) -> MarketState:
        """This state asking for eMode category ``category_id`` in market reads."""
        hints = self.hints
        if category_id == 0 or category_id in hints.emode_ids:
            return self
        return replace(self, hints=replace(hints, emode_ids=hints.emode_ids | {category_id}))

    def assets_behind(self, proxy: str) -> set[str]:
        """Assets whose oracle source is ``proxy``."""
        if self.read is None:
            return set()
        return {a for a, s in self.read.sources.items() if s == proxy}


@dataclass(frozen=True, slots=True)
class BookBlock:
    """A block the book has applied."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int


GENESIS = BookBlock(-1, "", "", 0)


@dataclass(frozen=True, slots=True)
class BlockUpdate:
    """What one applied block changed, for the scanner.

    ``moved_assets``: assets whose oracle price differs from the previous block's, whose feed
    reported ``AnswerUpdated`` or whose source changed: re-check their holders.
    ``market_changed``: a reserve's parameters or an eMode category changed: re-check everyone.
    ``rollback``: the book went *back* to ``block`` (a reorg, or a node restored from an older
    state); ``touched_users`` are the accounts whose records were restored. What was planned
    or sent on the undone blocks (nonces, cooldowns) must be looked at again.
    """

    block: BookBlock
    touched_users: frozenset[str]
    moved_assets: frozenset[str]
    market_changed: bool
    sources_changed: bool
    rollback: bool = False
