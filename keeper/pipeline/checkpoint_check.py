"""Is a loaded checkpoint still on the chain? The newest of its recent blocks that is."""

from __future__ import annotations

from keeper.chain.heads import fetch_heads
from keeper.chain.rpc import JsonRpc
from keeper.errors import KeeperError
from keeper.protocols.aave_v3.book import BookBlock, PositionBook


class CheckpointAheadError(KeeperError, RuntimeError):
    """The chain's tip is below every block the checkpoint knows: another chain or node."""


async def newest_canonical(rpc: JsonRpc, book: PositionBook) -> BookBlock | None:
    """The newest of ``book``'s block and its journaled ones that the chain still has, or None
    when none is (the checkpoint is on a branch the chain left below the journal)."""
    refs = [*book.recent_blocks()]
    if not refs or refs[-1] != book.block:
        refs.append(book.block)
    latest = int(await rpc.call("eth_blockNumber"), 16)
    candidates = [r for r in refs if r.number <= latest]
    if not candidates:
        raise CheckpointAheadError(f"the chain (tip {latest}) is behind the checkpoint "
                                   f"{book.block_number}: wrong node?")
    heads = await fetch_heads(rpc, [r.number for r in candidates])
    for ref, head in zip(reversed(candidates), reversed(heads), strict=True):
        if ref.hash == head.hash:
            return ref
    return None
