"""The book's undo journal: how to undo each of the last blocks, newest last.

Before a block's first change to a user, the user's previous record is noted, with the market
state before the block (all immutable, so a reference is enough). An undo journal rather than
snapshots: a block touches a handful of users, a snapshot would copy them all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from keeper.protocols.aave_v3.book_state import (
    BookBlock,
    BookRollbackError,
    MarketState,
    UserRecord,
)

DEFAULT_JOURNAL_WINDOW = 64


@dataclass(slots=True)
class BlockJournal:
    """How to undo one block: the state before it."""

    block: BookBlock
    previous_block: BookBlock
    previous_state: MarketState
    users: dict[str, UserRecord] = field(default_factory=dict)

    def note(self, user: str, previous: UserRecord) -> None:
        """Remember ``user``'s record before the block's first change to it."""
        if user not in self.users:
            self.users[user] = previous


class UndoJournal(OrderedDict[int, BlockJournal]):
    """Journals by block number, oldest first, at most ``window`` of them."""

    def __init__(self, window: int, journals: Iterable[BlockJournal] = ()) -> None:
        super().__init__((j.block.number, j) for j in journals)
        self.window = window

    def keep(self, journal: BlockJournal) -> None:
        """Add the journal of a finished block, forgetting the oldest beyond the window."""
        self[journal.block.number] = journal
        while len(self) > self.window:
            self.popitem(last=False)

    def take_above(self, number: int, top: int) -> list[BlockJournal]:
        """Remove and return the journals of blocks ``number + 1 .. top``, newest first.

        Raises ``BookRollbackError`` (and removes nothing) when one of them is missing.
        """
        needed = range(number + 1, top + 1)
        if any(n not in self for n in needed):
            raise BookRollbackError(
                f"cannot roll back to {number}: journal covers "
                f"{min(self, default='-')}..{max(self, default='-')}"
            )
        return [self.pop(n) for n in reversed(needed)]
