"""The chain's figures of the accounts a scan flags, read back at the book's block."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import BlockId
from keeper.domain.account import AccountData
from keeper.pipeline.scan.book_view import BookView
from keeper.protocols.aave_v3.account_data import read_account_data
from keeper.protocols.aave_v3.book import PositionBook

REREAD_DELAY = 0.02
"""Seconds before reading again the accounts whose chain figures disagreed with the book."""


async def read_back(rpc: JsonRpc, pool: str, near: list[str], exact: dict[str, AccountData],
                    at: BlockId, chunk: int, multicall: str,
                    read: Callable[[], None]) -> list[AccountData | None]:
    """The chain's account data of ``near`` at ``at``; what disagrees with the book is read
    once more a moment later. ``read()`` completes ``exact`` once the chain has answered."""
    chain = await read_account_data(rpc, pool, near, block=at, chunk=chunk, multicall=multicall)
    read()
    doubtful = [i for i, (u, c) in enumerate(zip(near, chain, strict=True))
                if c is None or u not in exact or differs(exact[u], c)]
    if doubtful:
        # A node still sealing the next block can answer a read of this one with that
        # block's state or timestamp (anvil does, even by hash): one block's interest, or a
        # revert where the index went back. Such a read is wrong for a moment only; what
        # still disagrees a moment later is the book's error, or the chain's.
        await asyncio.sleep(REREAD_DELAY)
        again = await read_account_data(rpc, pool, [near[i] for i in doubtful], block=at,
                                        chunk=chunk, multicall=multicall)
        for i, c in zip(doubtful, again, strict=True):
            chain[i] = c
    return chain


def pinned(book: BookView) -> BlockId:
    """Where to read the chain to compare with ``book``: its block *by hash* (EIP-1898), so a
    node that answers a number from the block it is mining cannot fake a mismatch, and a
    block reorged out fails instead of answering for another; by number without a hash."""
    block_hash = book.block_hash if isinstance(book, PositionBook) else ""
    return block_hash if len(block_hash) == 66 else book.block_number


def differs(book: AccountData, chain: AccountData) -> bool:
    """Whether the book's figures of an account are not the chain's."""
    return (
        book.health_factor != chain.health_factor
        or book.total_collateral_base != chain.total_collateral_base
        or book.total_debt_base != chain.total_debt_base
    )
