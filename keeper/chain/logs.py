"""Event logs, typed: ranges via ``eth_getLogs`` in adaptive chunks, one block by hash, or a
live ``logs`` subscription.

Nodes cap ``eth_getLogs`` (10k results, a block range, a response size) and say so with an
error object whose wording varies by client; on such an error the range is halved and tried
again, and after a success the chunk grows back towards its configured size. Ranges are
contiguous and never overlap, so every log is returned exactly once, in chain order.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from keeper.chain import decode
from keeper.chain.replies import is_too_many_results as is_too_many_results
from keeper.chain.rpc import JsonRpc
from keeper.chain.subscription import Resubscribed
from keeper.chain.types import Log
from keeper.chain.ws import WsRpc
from keeper.errors import RpcResponseError
from keeper.obs.logging import get_logger

log = get_logger(__name__)

Address = str | Sequence[str] | None
Topics = Sequence[str | Sequence[str] | None] | None

DEFAULT_CHUNK = 2_000


def chunk_ranges(from_block: int, to_block: int, size: int) -> list[tuple[int, int]]:
    """``[from_block, to_block]`` cut into consecutive inclusive ranges of at most ``size``."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return [(lo, min(lo + size - 1, to_block)) for lo in range(from_block, to_block + 1, size)]


def split_range(lo: int, hi: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two halves of an inclusive range of at least two blocks."""
    if hi <= lo:
        raise ValueError(f"cannot split the single block range {lo}..{hi}")
    mid = (lo + hi) // 2
    return (lo, mid), (mid + 1, hi)


def log_filter(
    address: Address, topics: Topics, *, from_block: int | None = None,
    to_block: int | None = None, block_hash: str | None = None,
) -> dict[str, Any]:
    """The JSON filter object of ``eth_getLogs`` / ``eth_subscribe logs``."""
    flt: dict[str, Any] = {}
    if address is not None:
        flt["address"] = address if isinstance(address, str) else list(address)
    if topics is not None:
        flt["topics"] = [t if t is None or isinstance(t, str) else list(t) for t in topics]
    if block_hash is not None:
        flt["blockHash"] = block_hash
    if from_block is not None:
        flt["fromBlock"] = hex(from_block)
    if to_block is not None:
        flt["toBlock"] = hex(to_block)
    return flt


def parse_logs(raw: Any) -> list[Log]:
    """Typed logs from an ``eth_getLogs`` result, in chain order.

    ``Log.from_json`` checks every field, so the list is not walked twice (a second pass cost a
    fifth of a backfill).
    """
    return sorted((Log.from_json(item) for item in decode.sequence(raw, "logs")),
                  key=lambda lg: lg.key)


async def iter_logs(
    rpc: JsonRpc,
    address: Address,
    topics: Topics,
    from_block: int,
    to_block: int,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> AsyncIterator[list[Log]]:
    """Logs of ``[from_block, to_block]`` one chunk at a time, in order (streams a backfill)."""
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    size = chunk
    lo = from_block
    while lo <= to_block:
        hi = min(lo + size - 1, to_block)
        try:
            raw = await rpc.call("eth_getLogs", [log_filter(address, topics, from_block=lo, to_block=hi)])
        except RpcResponseError as exc:
            if not is_too_many_results(exc) or hi == lo:
                raise
            size = split_range(lo, hi)[0][1] - lo + 1
            log.info("get_logs_range_split", from_block=lo, to_block=hi, error=exc.rpc_message,
                     chunk=size)
            continue
        yield parse_logs(raw)
        lo = hi + 1
        # Dense stretches are local (one busy contract, one hot block range): grow back.
        size = min(chunk, size * 2)


async def get_logs(
    rpc: JsonRpc,
    address: Address,
    topics: Topics,
    from_block: int,
    to_block: int,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> list[Log]:
    """Every log of ``[from_block, to_block]`` matching ``address``/``topics``, exactly once,
    in chain order; the range is fetched in chunks that shrink when the node says too many."""
    out: list[Log] = []
    async for part in iter_logs(rpc, address, topics, from_block, to_block, chunk=chunk):
        out.extend(part)
    return out


async def get_block_logs(rpc: JsonRpc, block_hash: str, address: Address, topics: Topics) -> list[Log]:
    """Logs of exactly the block ``block_hash`` (reorg-safe: a number could name another block)."""
    raw = await rpc.call("eth_getLogs", [log_filter(address, topics, block_hash=block_hash)])
    return parse_logs(raw)


async def subscribe_logs(
    ws: WsRpc, address: Address, topics: Topics
) -> AsyncGenerator[Log | Resubscribed, None]:
    """Live logs from ``eth_subscribe logs``, with ``RESUBSCRIBED`` after each reconnect.

    Logs emitted while disconnected are not replayed by the node: on ``RESUBSCRIBED`` fetch
    the missed range with ``get_logs``. For gap-free, reorg-aware logs, prefer following heads
    (heads.py) and calling ``get_block_logs`` per head.
    """
    sub = await ws.subscribe("logs", log_filter(address, topics))
    try:
        async for item in sub:
            yield item if isinstance(item, Resubscribed) else Log.from_json(item)
    finally:
        await sub.unsubscribe()
