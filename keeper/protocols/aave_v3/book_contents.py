"""What the position book holds at its block, and the questions it answers about it.

The users' records with an index of holders per asset, the market state, and the token roles
derived from it. ``PositionBook`` (``keeper.protocols.aave_v3.book``) adds how blocks change
them; the scanner, the executor and the checkpoint only read what is here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from keeper.domain.account import AccountData, Market, UserAccount, calculate_user_account_data
from keeper.protocols.aave_v3.book_records import configuration_of
from keeper.protocols.aave_v3.book_state import (
    EMPTY_USER,
    GENESIS,
    BookError,
    MarketState,
    UserRecord,
)


class BookContents:
    """Users, reserves and prices at ``block``: the book's state and its read side."""

    def __init__(self) -> None:
        self.block = GENESIS
        self.state = MarketState()
        self._users: dict[str, UserRecord] = {}
        self._holders: dict[str, set[str]] = {}
        self._roles: dict[str, tuple[str, str]] = {}
        self._market: Market | None = None
        # Users changed since the last checkpoint (the store writes only those).
        self.dirty: set[str] = set()

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
                revision=self.state.revision,
            )
        return self._market

    def account(self, user: str) -> UserAccount:
        """The user as the Pool sees them (configuration bits built from the book)."""
        rec = self._users.get(user, EMPTY_USER)
        read = self.state.read
        config = configuration_of(rec, read.reserves if read is not None else {})
        return UserAccount(config, rec.emode_category, rec.positions)

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

    # ---- changing the contents (for PositionBook) ------------------------------------------
    def _set_state(self, state: MarketState) -> None:
        if state.tokens is not self.state.tokens:
            self._roles = state.token_roles()
        self.state = state
        self._market = None

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
