"""What the scanner reads from a position book."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from keeper.domain.account import Market, UserAccount


class BookView(Protocol):
    """What the scanner reads from the position book (``keeper.protocols.aave_v3.book.PositionBook``).

    Addresses are lower-case 0x strings. ``market()`` and ``account()`` are the state as of
    ``block_number`` (whose timestamp ``market().timestamp`` is).
    """

    @property
    def block_number(self) -> int: ...

    @property
    def block_timestamp(self) -> int: ...

    def market(self) -> Market: ...

    def account(self, user: str) -> UserAccount: ...

    def users(self) -> Iterable[str]: ...

    def holders(self, asset: str) -> set[str]: ...

    def health_factor(self, user: str) -> int: ...
