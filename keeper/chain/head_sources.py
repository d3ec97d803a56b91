"""Raw head sources for the follower (heads.py): an ``eth_subscribe newHeads`` subscription,
HTTP polling, and the subscription watched for silence with polling as its stand-in.

A raw source may skip blocks or repeat one; the follower backfills and deduplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from keeper.chain.rpc import JsonRpc
from keeper.chain.subscription import Resubscribed
from keeper.chain.types import Head
from keeper.chain.ws import WsRpc
from keeper.errors import RpcError, RpcMalformedReply
from keeper.obs.logging import get_logger

log = get_logger(__name__)


async def ws_heads(ws: WsRpc) -> AsyncGenerator[Head, None]:
    """Raw heads from an ``eth_subscribe newHeads`` subscription, resubscribed on reconnect,
    with the latest head fetched after each resubscription."""
    sub = await ws.subscribe("newHeads")
    try:
        async for item in sub:
            if isinstance(item, Resubscribed):
                # Heads mined while we were away are never sent, and the next one may be a
                # while off: yield the tip now, so the follower backfills the gap at once.
                try:
                    latest = await ws.call("eth_getBlockByNumber", ["latest", False])
                except RpcError as exc:
                    log.warning("head_after_resubscribe_failed", error=str(exc))
                    continue  # the gap is then filled at the next head
                if latest is not None:
                    yield Head.from_json(latest)
                continue
            try:
                head = Head.from_json(item)
            except RpcMalformedReply as exc:
                # One bad notification is not the end of the subscription: the next head
                # (or the follower's backfill by number) covers the block.
                log.warning("head_notification_malformed", error=str(exc))
                continue
            yield head
    finally:
        await sub.unsubscribe()


async def fetch_latest_head(rpc: JsonRpc) -> Head:
    """The node's latest head (``RpcError`` when the read fails or finds no block)."""
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    if block is None:
        raise RpcMalformedReply("eth_getBlockByNumber: no latest block")
    return Head.from_json(block)


async def latest_head(rpc: JsonRpc) -> Head | None:
    """The node's latest head, or None when the read fails (logged: the caller polls again)."""
    try:
        return await fetch_latest_head(rpc)
    except RpcError as exc:  # RpcMalformedReply included
        log.warning("head_poll_failed", error=str(exc))
        return None


async def polled_heads(rpc: JsonRpc, interval: float = 1.0) -> AsyncGenerator[Head, None]:
    """Raw heads from polling the latest block every ``interval`` seconds.

    Polls ``eth_getBlockByNumber("latest")`` rather than ``eth_blockNumber`` then the block:
    one round trip instead of two, and a reorg that keeps the height (a new block 5 replacing
    ours) changes the hash, which ``eth_blockNumber`` alone would not show.
    """
    loop = asyncio.get_running_loop()
    last_hash: str | None = None
    while True:
        started = loop.time()
        head = await latest_head(rpc)
        if head is not None and head.hash != last_hash:
            last_hash = head.hash
            yield head
        # Keep the cadence: the time the call took counts against the interval.
        await asyncio.sleep(max(0.0, interval - (loop.time() - started)))


async def watched_ws_heads(ws: WsRpc, rpc: JsonRpc, *, silence: float,
                           poll_interval: float) -> AsyncGenerator[Head, None]:
    """``ws_heads``, polled over ``rpc`` every ``poll_interval`` s once the subscription has
    said nothing for ``silence`` s, until it speaks again.

    A subscription can go quiet with its connection up: the node stops feeding it, or the
    answer to a resubscription was lost. On a chain that keeps producing blocks, heads then
    come from polling, a block late at worst instead of never; on an idle chain the poll
    finds the same head (the follower ignores it).
    """
    queue: asyncio.Queue[Head | BaseException | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for head in ws_heads(ws):
                queue.put_nowait(head)
        except Exception as exc:  # the consumer raises it in its own task
            queue.put_nowait(exc)
            return
        except asyncio.CancelledError:
            # The consumer's own cancel (it is gone), or one from under the subscription: then
            # the consumer would wait on a dead pump, polling only once it is silent.
            queue.put_nowait(RpcError("ws heads: the subscription was cancelled under it"))
            raise
        queue.put_nowait(None)

    task = asyncio.create_task(pump(), name="ws heads")
    # The hash of the last head yielded: a polled head is new when it differs, as in
    # ``poll_heads``. Not "when its number is higher": a node restored from an older state
    # (anvil after evm_revert) answers a lower head, and a follower waiting for a higher one
    # waited for the new chain to pass the old tip (seen: a fault test's daemon silent for
    # the rest of the run after a restore). The follower ignores a head it already has.
    last_hash = ""
    wait = silence
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                wait = poll_interval
                head = await latest_head(rpc)
                if head is not None and head.hash != last_hash:
                    log.warning("ws_heads_silent_polled", head=head.number, silent_for=silence)
                    last_hash = head.hash
                    yield head
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            wait = silence
            last_hash = item.hash
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, RpcError):
            await task
