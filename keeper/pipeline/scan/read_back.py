"""The chain's figures of the accounts a scan flags, read back at the book's block.

In slices of at most ``READ_BACK_SLICE`` accounts, one after the other: in a crash the read-back
is the biggest job the scan gives the node, at the moment the first liquidations are simulated
on it. In the 10,000-borrower race (a node on the same two cores) the crash block's ~1,770
accounts read as four concurrent multicalls of 500 held the node ~460 ms: the first batches'
simulations took 130-220 ms instead of ~8, and the first send went out 450-500 ms after the
block. In slices of 100 the node answers a simulation between two slices: the first send went
out at +67 ms. With a CPU-bound process beside the race (one busy core of the two) it was the
difference between 92.8% and 94.2% of the liquidations (p99 9-10 blocks) and 99.4% in both
runs (4 / 7 blocks, the block-gas bound). A slice of 100 is also ~10M gas of ``eth_call``,
well inside the 50M cap nodes put on one call.

Slices are round trips, though: ~18 for such a crash, ~0.9 s to a node 50 ms away, and the
scan reads the next block's accounts only after its read-back. Given ``stale`` (a newer block
came), the read-back stops between two slices: it answers for the accounts read so far (a
prefix) and the book's flags stand for the others, which the next scan reads unless the chain
vouched for them meanwhile, so each block's scan gets further down the list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import BlockId, hex_to_int
from keeper.domain.account import AccountData
from keeper.pipeline.scan.book_view import BookView
from keeper.protocols.aave_v3.account_data import read_account_data
from keeper.protocols.aave_v3.book import PositionBook

READ_BACK_SLICE = 100
"""Accounts read back in one request (one ``eth_call`` at the usual ``confirm_batch_size``);
the slices go one at a time."""

REREAD_DELAY = 0.02
"""Seconds before reading again the accounts whose chain figures disagreed with the book."""

SEALED_REREADS = (0.05, 0.1)
"""Seconds before each further read of the accounts that still disagree, while the node's head
moved as they were read again (it sealed a block meanwhile, so that read may be its state)."""

SEALING_LOOK = 0.01
"""Seconds before looking at the head once more when it had not moved: a block anvil was
sealing as it answered is announced a few milliseconds after (6-8 ms for a block of ours)."""


async def read_back(rpc: JsonRpc, pool: str, near: list[str], exact: dict[str, AccountData],
                    at: BlockId, chunk: int, multicall: str, read: Callable[[], None],
                    stale: Callable[[], bool] | None = None) -> list[AccountData | None]:
    """The chain's account data of ``near`` at ``at``, or of a prefix of it once ``stale()``
    (at least the first slice is read); what disagrees with the book is read once more a
    moment later, and again while the node sealed a block as it answered. ``read()``
    completes ``exact`` once the chain has answered."""
    chain = await _in_slices(rpc, pool, near, at, chunk, multicall, stale)
    read()
    doubtful = [i for i, (u, c) in enumerate(zip(near, chain, strict=False))
                if c is None or u not in exact or differs(exact[u], c)]
    if not doubtful:
        return chain
    # A node still sealing the next block can answer a read of this one with that block's
    # state or timestamp (anvil does, even by hash): one block's interest, or a revert where
    # the index went back. Such a read is wrong for a moment only; what still disagrees a
    # moment later, with no block sealed as it was read, is the book's error, or the chain's.
    # (A fault test at four blocks a second, each send of ours mined at once: 15 accounts of
    # the crash block still disagreed 20 ms later, read again while our sends' blocks were
    # sealed.)
    await asyncio.sleep(REREAD_DELAY)
    for delay in (None, *SEALED_REREADS):
        if delay is not None:
            await asyncio.sleep(delay)
        before = await _head(rpc)
        again = await _in_slices(rpc, pool, [near[i] for i in doubtful], at, chunk, multicall,
                                 stale)
        for i, c in zip(doubtful, again, strict=False):
            chain[i] = c
        if len(again) < len(doubtful):
            # Cut short: a first answer not looked at twice may be a sealing node's.
            return chain[:doubtful[len(again)]]
        doubtful = [i for i in doubtful if _disagrees(exact.get(near[i]), chain[i])]
        if not doubtful or not await _sealed_since(rpc, before):
            break
    return chain


def _disagrees(book: AccountData | None, chain: AccountData | None) -> bool:
    """Both answered, and not alike (a failed read or an account the book cannot evaluate is
    looked at twice, not more)."""
    return book is not None and chain is not None and differs(book, chain)


async def _head(rpc: JsonRpc) -> int | None:
    """The node's head number, or None when it cannot say (a second look only)."""
    try:
        return hex_to_int(await rpc.call("eth_blockNumber"), "eth_blockNumber")
    except Exception:  # without it the answers stand, as before
        return None


async def _sealed_since(rpc: JsonRpc, before: int | None) -> bool:
    """Whether the node's head moved past ``before``, now or a moment later."""
    if before is None:
        return False
    for wait in (0.0, SEALING_LOOK):
        await asyncio.sleep(wait)
        after = await _head(rpc)
        if after is None:
            return False
        if after > before:
            return True
    return False


async def _in_slices(rpc: JsonRpc, pool: str, users: list[str], at: BlockId, chunk: int,
                     multicall: str, stale: Callable[[], bool] | None = None
                     ) -> list[AccountData | None]:
    """``users``' account data at ``at``, one slice of at most ``READ_BACK_SLICE`` accounts
    (in multicalls of at most ``chunk``) after the other, until ``stale()``."""
    out: list[AccountData | None] = []
    for i in range(0, len(users), READ_BACK_SLICE):
        if i and stale is not None and stale():
            break
        out += await read_account_data(rpc, pool, users[i:i + READ_BACK_SLICE], block=at,
                                       chunk=chunk, multicall=multicall)
    return out


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
