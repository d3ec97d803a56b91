"""One nonce manager per account: a single writer, the node as the source of truth on doubt.

The executor keeps at most one transaction in flight per account, so the manager is a lock
plus a counter: ``lease()`` holds the lock for the whole life of a transaction (send, replace,
receipt) and yields the nonce to use. Leaving the lease after ``mark_used()`` moves the counter
on; leaving it with nothing sent keeps it; leaving it after ``mark_sent()`` without
``mark_used()``, or on an exception, forgets the counter so the next lease asks the node again
(``eth_getTransactionCount(address, "pending")``): we no longer know whether the node holds our
transaction, and the node does.

A rollback (a reorg, or a node restored from an older state) can undo transactions we counted
as mined: ``rolled_back()`` forgets the counter at once, and a lease that was open across it
does not move the counter on when it ends. The next lease then takes the chain's nonce, so
nothing is ever sent behind a gap that no transaction of ours will fill.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import hex_to_int


@dataclass(slots=True)
class NonceLease:
    """The nonce handed out by ``NonceManager.lease``; call ``mark_used`` once it is spent."""

    nonce: int
    sent: bool = False
    used: bool = False

    def mark_sent(self) -> None:
        """Something with this nonce was handed to a node or relay (it may be mined later)."""
        self.sent = True

    def mark_used(self) -> None:
        """The nonce was consumed on chain (a mined transaction, ours or a cancel)."""
        self.used = True


class NonceManager:
    """Nonces for ``address``; use one instance per account and only one."""

    def __init__(self, rpc: JsonRpc, address: str, *, timeout: float = 10.0) -> None:
        self.rpc = rpc
        self.address = address.lower()
        self.timeout = timeout
        self._lock = asyncio.Lock()
        self._next: int | None = None
        self._rollbacks = 0  # rollbacks seen; a lease open across one forgets its counter

    @property
    def busy(self) -> bool:
        """True while a transaction of this account is in flight."""
        return self._lock.locked()

    async def node_nonce(self, block: str = "pending") -> int:
        """The node's transaction count for the account at ``block``."""
        raw = await self.rpc.call(
            "eth_getTransactionCount", [self.address, block], timeout=self.timeout
        )
        return hex_to_int(raw, "eth_getTransactionCount")

    async def node_nonces(self) -> tuple[int, int]:
        """The node's (latest, pending) transaction counts for the account, in one batch."""
        latest, pending = await self.rpc.batch(
            [("eth_getTransactionCount", [self.address, "latest"]),
             ("eth_getTransactionCount", [self.address, "pending"])], timeout=self.timeout)
        return (hex_to_int(latest, "eth_getTransactionCount"),
                hex_to_int(pending, "eth_getTransactionCount"))

    async def resync(self) -> int:
        """Forget the local counter and take the node's pending count (never below the mined
        one: a node whose mempool lags its chain must not hand out a used nonce)."""
        latest, pending = await self.node_nonces()
        self._next = max(latest, pending)
        return self._next

    def rolled_back(self) -> None:
        """The chain went back (a reorg or a restore): transactions counted as mined may be
        gone. Take the chain's nonce before the next send."""
        self._rollbacks += 1
        self._next = None

    def invalidate(self) -> None:
        """Ask the node before the next lease."""
        self._next = None

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[NonceLease]:
        """Hold the account for one transaction and yield the nonce to use."""
        async with self._lock:
            nonce = self._next if self._next is not None else await self.resync()
            lease = NonceLease(nonce)
            rollbacks = self._rollbacks
            try:
                yield lease
            except BaseException:
                self._next = None
                raise
            # The holder may have moved the lease to the node's nonce after a nonce error.
            if rollbacks != self._rollbacks:
                self._next = None  # what it saw mined may have been rolled back since
            elif lease.used:
                self._next = lease.nonce + 1
            elif lease.sent:
                self._next = None
            else:
                self._next = lease.nonce
