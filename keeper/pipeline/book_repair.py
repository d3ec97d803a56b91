"""Put back in the book the accounts whose figures the chain contradicted.

The book follows balances by events (``PositionBook``); one it missed or took twice (a node
that answered a block's logs short, a provider's bug) leaves the account wrong for good. The
scanner sees it, since the chain's health factor differs (``book_mismatch``), but planning
sizes a liquidation on the book's balances. A repair reads the account from the contracts at
the book's block (``MarketReader.read_users``: configuration, eMode and every scaled balance,
in one Multicall3 call per chunk) and restores its record.

A record the contracts confirm (the difference was elsewhere: a price, an index) is not read
again for ``recheck_blocks`` blocks while it stays the same object (records are immutable and
replaced on every change): an event missed later leaves the record as it was, so the
confirmation cannot stand for ever.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from keeper.chain.rpc import JsonRpc
from keeper.protocols.aave_v3.book import PositionBook, UserRecord
from keeper.protocols.aave_v3.reader import MarketReader


class BookRepair:
    """Restores accounts of a book from the contracts (see the module doc)."""

    def __init__(self, rpc: JsonRpc, *, chunk: int = 400, recheck_blocks: int = 32) -> None:
        self.rpc = rpc
        self.chunk = chunk
        self.recheck_blocks = recheck_blocks
        # Read and found as the contracts hold it: the record, and the book's block then.
        self._confirmed: dict[str, tuple[UserRecord, int]] = {}

    async def repair(self, book: PositionBook, reader: MarketReader,
                     users: Iterable[str]) -> list[str]:
        """The accounts of ``users`` whose record was wrong and is restored, read at the
        book's block. None is restored when the book moved on during the read: the next
        check against the chain names them again."""
        ask = sorted(u for u in set(users) if not self._still_confirmed(book, u))
        restored = await self.restore(book, reader, ask)
        if restored is None:
            return []
        for user in set(ask) - set(restored):
            self._confirmed[user] = (book.record(user), book.block_number)
        return restored

    async def restore(self, book: PositionBook, reader: MarketReader,
                      users: Sequence[str]) -> list[str] | None:
        """Read ``users`` at the book's block and restore those the book holds otherwise;
        None when the book moved on during the read (nothing restored). Confirms nothing: the
        audit reads every account, and remembering each would cost memory in proportion."""
        if not users:
            return []
        block = book.block_hash
        snapshots = await reader.read_users(self.rpc, users, book.state.tokens, block,
                                            chunk=self.chunk)
        if book.block_hash != block:
            return None
        restored: list[str] = []
        for user, snap in snapshots.items():
            if book.restore_user(user, snap.configuration, snap.emode_category, snap.positions):
                restored.append(user)
                self._confirmed.pop(user, None)
        return restored

    def _still_confirmed(self, book: PositionBook, user: str) -> bool:
        confirmed = self._confirmed.get(user)
        return confirmed is not None and confirmed[0] is book.record(user) \
            and book.block_number - confirmed[1] < self.recheck_blocks
