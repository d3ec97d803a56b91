"""The market read of the chain's newest block, made exact.

Even by block hash, a node that is sealing the next block can answer a read of its tip from
the next block's state (anvil does): a reserve updated a second later, or a price set in the
next block, would be booked a block early, and every account compared with the chain at that
block would seem wrong. Two guards: a read that shows a reserve updated after the block's
timestamp is read again after a short pause; and once the node reports a newer block, the tip
is history, whose reads are exact, so a read made while it was the tip is made once more.
"""

from __future__ import annotations

import asyncio

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import Head, hex_to_int
from keeper.protocols.aave_v3.reader import MarketHints, MarketRead, MarketReader

STALE_READ_RETRIES = 5


def from_the_future(read: MarketRead, head: Head) -> bool:
    """True when the read cannot be the state at ``head``: some reserve was updated later."""
    return any(r.last_update_timestamp > head.timestamp for r in read.reserves.values())


async def settled_read(rpc: JsonRpc, reader: MarketReader, head: Head, read: MarketRead,
                       hints: MarketHints, needed: MarketHints
                       ) -> tuple[MarketRead, MarketHints] | None:
    """``read`` (made at ``head.hash`` with ``hints``), or a read again until it is the state
    at ``head``; None when the node keeps answering for a later state."""
    for attempt in range(STALE_READ_RETRIES):
        if not from_the_future(read, head):
            break
        # The block is sealed a moment later; read it again rather than book a future state.
        await asyncio.sleep(0.01 * (attempt + 1))
        read, hints = await reader.read(rpc, head.hash, needed)
    else:
        return None
    latest = hex_to_int(await rpc.call("eth_blockNumber"), "eth_blockNumber")
    if latest <= head.number:
        return read, hints
    return await reader.read(rpc, head.hash, needed)
