"""What the executor reads from the chain while a transaction is in flight.

Heads (woken by the head follower, polling as the fallback), receipts with the mined nonce in
one batch, whether a receipt's block is still canonical, whether the node still holds a
transaction. Every read has a timeout; transport errors are counted and propagate, except a
failed head poll, which counts as "no new head" (the next poll tries again).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import PendingTx, hex_to_int
from keeper.errors import RpcError, RpcResponseError
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics

log = get_logger(__name__)

TOP_CALL_TRACE: dict[str, Any] = {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}}
"""Trace options for a transaction's top call alone: the nested frames of a flash loan and a
swap are tens of kilobytes to send and decode, and only the top call's figures are read."""


class ChainReads:
    """The reads of one account's executor (``address`` is the account)."""

    def __init__(self, rpc: JsonRpc, address: str, metrics: Metrics, *, timeout: float,
                 poll_interval: float) -> None:
        self.rpc = rpc
        self.address = address
        self.metrics = metrics
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._new_head = asyncio.Event()
        self.last_head: tuple[int, str] | None = None
        self._head_read: asyncio.Future[tuple[int, str]] | None = None
        self.head_timestamp: tuple[int, int] | None = None  # (number, stamp) of the last head read
        self._receipts: _ReceiptRound | None = None  # the asks of this turn of the loop
        # The account's pending count at the last receipt round: where the node's pool of our
        # transactions ends (a flight at that nonce whose transaction it lost is next to send).
        self.pending_nonce: int | None = None
        self._answering: set[asyncio.Task[None]] = set()

    def notify_head(self) -> None:
        """A new head arrived: wake ``next_head`` now instead of at its next poll."""
        self._new_head.set()

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """One JSON-RPC batch; each answer is a result or the exception for that call."""
        try:
            return await self.rpc.batch(calls, timeout=self.timeout, return_exceptions=True)
        except RpcError:
            self.metrics.rpc_errors.labels("batch").inc()
            raise

    async def next_head(self, deadline: float, since: tuple[int, str] | None = None,
                        ) -> tuple[int, str] | None:
        """Wait for a head that differs (number or hash) from ``since`` (by default the last
        one any caller saw; a caller among several in flight passes its own; a ``since``
        with an empty hash compares the number only); None at deadline."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            self._new_head.clear()
            try:
                head = await self._read_head()
            except RpcError as exc:
                self.metrics.rpc_errors.labels("eth_getBlockByNumber").inc()
                log.warning("head_poll_failed", error=str(exc))
                head = self.last_head or (0, "")
            seen = self.last_head if since is None else since
            # A hash left empty: only the number is known (the head a request was sent at).
            if (head[0] != seen[0] if seen is not None and not seen[1] else head != seen):
                self.last_head = head
                return head
            wait = min(self.poll_interval, max(deadline - loop.time(), 0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_head.wait(), wait)
        return None

    async def past(self, head: int) -> bool:
        """Whether the node's head is past block ``head`` now (flights asking at once share
        one read; a failed read says yes: what asks simulates again, the safe side)."""
        try:
            number, _ = await self._read_head()
        except RpcError:
            self.metrics.rpc_errors.labels("eth_getBlockByNumber").inc()
            return True
        return number > head

    async def _read_head(self) -> tuple[int, str]:
        """The node's head. Flights watching at once share one read in the air: forty
        liquidations in flight poll the head once, not forty times."""
        if self._head_read is None or self._head_read.done():
            self._head_read = asyncio.ensure_future(self._fetch_head())
        return await asyncio.shield(self._head_read)

    async def _fetch_head(self) -> tuple[int, str]:
        block = await self.rpc.call("eth_getBlockByNumber", ["latest", False],
                                    timeout=self.timeout)
        head = hex_to_int(block["number"], "number"), str(block["hash"])
        if "timestamp" in block:
            self.head_timestamp = (head[0], hex_to_int(block["timestamp"], "timestamp"))
        return head

    async def receipt_and_nonce(self, hashes: list[str]) -> tuple[dict[str, Any] | None, int]:
        """The receipt of whichever of ``hashes`` is included, and the mined nonce.

        Flights that ask in the same turn of the event loop (a new head wakes them all) share
        one batch and one nonce read: 256 flights ask once a block, not 256 times (the
        10,000-borrower crash made ~950 calls a block, most of them these)."""
        if self._receipts is None:
            self._receipts = _ReceiptRound()
            asyncio.get_running_loop().call_soon(self._flush_receipts)
        round_ = self._receipts
        waiter: asyncio.Future[tuple[dict[str, Any] | None, int]] = \
            asyncio.get_running_loop().create_future()
        round_.asks.append((hashes, waiter))
        return await waiter

    def _flush_receipts(self) -> None:
        round_, self._receipts = self._receipts, None
        if round_ is not None:
            task = asyncio.ensure_future(self._answer(round_))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer(self, round_: _ReceiptRound) -> None:
        hashes = list(dict.fromkeys(h for asked, _ in round_.asks for h in asked))
        try:
            results = await self.batch([("eth_getTransactionReceipt", [h]) for h in hashes]
                                       + [("eth_getTransactionCount", [self.address, "latest"]),
                                          ("eth_getTransactionCount", [self.address, "pending"])])
            pending = results.pop()
            mined_nonce: int | Exception = hex_to_int(results[-1], "eth_getTransactionCount") \
                if not isinstance(results[-1], Exception) else results[-1]
            self.pending_nonce = None if isinstance(pending, Exception) \
                else hex_to_int(pending, "eth_getTransactionCount")
        except Exception as exc:  # the transport: every flight of the round hears it
            for _, waiter in round_.asks:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        found = dict(zip(hashes, results[:-1], strict=True))
        for asked, waiter in round_.asks:
            if not waiter.done():
                _settle(waiter, [found[h] for h in asked], mined_nonce)

    async def still_canonical(self, receipt: dict[str, Any]) -> bool:
        """True when the receipt's block is still the chain's block at that height."""
        block = await self.rpc.call("eth_getBlockByNumber", [receipt["blockNumber"], False],
                                    timeout=self.timeout)
        return block is not None and str(block["hash"]).lower() == str(receipt["blockHash"]).lower()

    async def known_to_node(self, tx_hash: str) -> bool:
        """False when the node no longer holds the transaction (evicted, restarted)."""
        known = await self.rpc.call("eth_getTransactionByHash", [tx_hash], timeout=self.timeout)
        return known is not None

    async def top_call_trace(self, tx_hash: str) -> dict[str, Any] | None:
        """The mined transaction's top call as the node traces it (``callTracer``); None when
        the node does not trace, or the read fails (only the reason of a revert hangs on it)."""
        try:
            trace = await self.rpc.call("debug_traceTransaction", [tx_hash, TOP_CALL_TRACE],
                                        timeout=self.timeout)
        except (RpcError, RpcResponseError):
            return None
        return trace if isinstance(trace, dict) else None

    async def waiting_in_mempool(self, tx: PendingTx) -> bool:
        """True while ``tx`` waits in the mempool (not mined, and not dropped or replaced)."""
        receipt, found = await self.batch([("eth_getTransactionReceipt", [tx.tx_hash]),
                                           ("eth_getTransactionByHash", [tx.tx_hash])])
        for r in (receipt, found):
            if isinstance(r, Exception):
                raise r
        return receipt is None and found is not None


class _ReceiptRound:
    """The flights asking for their receipts in one turn of the event loop."""

    def __init__(self) -> None:
        self.asks: list[tuple[list[str], asyncio.Future[tuple[dict[str, Any] | None, int]]]] = []


def _settle(waiter: asyncio.Future[tuple[dict[str, Any] | None, int]], answers: list[Any],
            mined_nonce: int | Exception) -> None:
    """One flight's answer: its included receipt (if any) and the mined nonce, or the error
    that stands in for either."""
    if isinstance(mined_nonce, Exception):
        waiter.set_exception(mined_nonce)
        return
    for r in answers:
        if isinstance(r, Exception):
            waiter.set_exception(r)
            return
        if r is not None and r.get("blockHash"):
            waiter.set_result((dict(r), mined_nonce))
            return
    waiter.set_result((None, mined_nonce))
