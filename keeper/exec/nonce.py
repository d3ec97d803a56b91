"""One nonce manager per account: a single writer, the node as the source of truth on doubt.

Several transactions of the account may be in flight at once, with consecutive nonces:
``claim()`` holds the *send lock* only while one transaction is signed and handed out, and
moves the counter on once it is marked sent. The sender marks it sent as it hands the
transaction to the node, without waiting for the answer (the next send signs meanwhile); a
refusal then comes back through ``refused()``: with no later nonce out, the next claim takes
the same nonce again (re-sequencing); with later ones out, the caller fills it with a cancel.
A send left without an answer is no refusal: its nonce stays outstanding, its flight's.
``release()`` ends a flight (mined, cancelled, dropped); one that ends with its nonce sent but
not used, below other flights, is reported as a possible gap for the sender to fill with a
cancel. ``lease()`` is the older whole-life form: it holds the lock for the whole life of a
transaction (send, replace, receipt) and yields the nonce to use. Leaving the lease after
``mark_used()`` moves the counter on; leaving it with nothing sent keeps it; leaving it after
``mark_sent()`` without ``mark_used()``, or on an exception, forgets the counter so the next
lease asks the node again (``eth_getTransactionCount(address, "pending")``): we no longer know
whether the node holds our transaction, and the node does.

A rollback (a reorg, or a node restored from an older state) can undo transactions we counted
as mined: ``rolled_back()`` forgets the counter at once, and a lease that was open across it
does not move the counter on when it ends. The next lease then takes the chain's nonce, so
nothing is ever sent behind a gap that no transaction of ours will fill. A flight given up
because the chain went back below its nonce is an *orphan*: the node may still hold its
transaction, queued behind the gap, and may count it in its pending nonce (anvil counts its
pool's highest nonce). While orphans stand at or above the chain's nonce, the pending count
does not move the counter past the gap, and a claim at an orphan's nonce carries its fees
(``NonceLease.outbid``) for the send that must replace it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import hex_to_int
from keeper.domain.fees import Fees
from keeper.obs.logging import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class NonceLease:
    """The nonce handed out by ``NonceManager.lease``; call ``mark_used`` once it is spent."""

    nonce: int
    sent: bool = False
    used: bool = False
    rollbacks: int = 0  # the manager's rollback count when it was claimed
    outbid: Fees | None = None  # an orphan's fees at this nonce: a send must replace it

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
        self._outstanding: dict[int, NonceLease] = {}  # claimed, handed out, not released
        self._first_sent: int | None = None  # the first nonce this manager handed out
        self._orphans: dict[int, Fees] = {}  # given up after a rollback; the node may hold them

    @property
    def busy(self) -> bool:
        """True while a transaction of this account is in flight."""
        return self._lock.locked() or bool(self._outstanding)

    @property
    def outstanding(self) -> list[int]:
        """The nonces of the flights handed out and not released yet, lowest first."""
        return sorted(self._outstanding)

    def strangers(self, latest: int, pending: int) -> bool:
        """Whether the node holds transactions of the account that this manager did not hand
        out: a pending nonce below the first one it sent. After a restart, those the process
        before this one left in the mempool. (Not "a nonce none of our flights holds": the
        counts are read before the check, and a flight mined and ended since is no longer
        ours to hold.)"""
        return pending > latest and (self._first_sent is None or latest < self._first_sent)

    def _handed_out(self, nonce: int) -> None:
        if self._first_sent is None:
            self._first_sent = nonce

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
        self._next = self._chain_next(latest, pending)
        return self._next

    def orphaned(self, nonce: int, fees: Fees | None) -> None:
        """A flight at ``nonce`` was given up because the chain went back below it: the node
        may still hold its transaction (signed at ``fees``), queued behind the gap."""
        if fees is not None:
            self._orphans[nonce] = fees

    def _chain_next(self, latest: int, pending: int) -> int:
        """The chain's next nonce for us, from the node's mined and pending counts."""
        for nonce in [n for n in self._orphans if n < latest]:
            del self._orphans[nonce]  # the chain went past it: mined, or replaced
        if pending > latest and self._orphans and min(self._orphans) < pending:
            # The pending count may be our orphans' (anvil counts a pool's transactions
            # behind a gap): taken as it is, every send would queue behind the gap.
            return max(latest, max(self._outstanding, default=latest - 1) + 1)
        return max(latest, pending)

    def rolled_back(self) -> None:
        """The chain went back (a reorg or a restore): transactions counted as mined may be
        gone. Take the chain's nonce before the next send."""
        self._rollbacks += 1
        self._next = None

    def invalidate(self) -> None:
        """Ask the node before the next lease."""
        self._next = None

    def _reconcile(self, counter: int, latest: int, pending: int) -> int:
        """The nonce to send at, given the node's counts read just before the claim."""
        chain = self._chain_next(latest, pending)
        if chain > counter:
            # Something not counted here used our nonces (another process on this key).
            log.warning("nonce_moved_to_chain", counter=counter, chain=chain)
            return chain
        if chain < counter and not any(chain <= n < counter for n in self._outstanding):
            # Nothing of ours covers [chain, counter): a rollback not reported yet. Sending
            # at the counter would wait behind a gap that no transaction will fill.
            log.warning("nonce_moved_to_chain", counter=counter, chain=chain)
            return chain
        return counter

    @asynccontextmanager
    async def claim(self, latest: int | None = None,
                    pending: int | None = None) -> AsyncIterator[NonceLease]:
        """The next nonce, for one send: the send lock is held only until the block ends.

        Mark the lease sent once the node took the transaction: the counter then moves on
        and the lease stays outstanding until ``release``. Left unsent (the node refused it,
        or nothing was sent), the counter stays, so the next claim takes the same nonce.
        ``latest`` and ``pending`` (the node's counts, read alongside the simulation) correct
        a counter a rollback or a foreign sender left wrong.
        """
        async with self._lock:
            nonce = self._next if self._next is not None else await self.resync()
            if latest is not None:
                nonce = self._reconcile(nonce, latest, latest if pending is None else pending)
            lease = NonceLease(nonce, rollbacks=self._rollbacks,
                               outbid=self._orphans.get(nonce))
            try:
                yield lease
            except BaseException:
                self._next = None
                raise
            if lease.sent:
                self._handed_out(lease.nonce)
                self._outstanding[lease.nonce] = lease
                self._orphans.pop(lease.nonce, None)  # replaced, unless refused (below)
                self._next = lease.nonce + 1
            else:
                self._next = lease.nonce

    async def refused(self, lease: NonceLease, *, known: bool = True) -> bool:
        """The send of ``lease``, handed out without waiting for the node's answer, came back
        refused (``known``), or with no answer at all: its flight is over. Refused with no
        later nonce of ours out, the next claim takes it again, as if the claim had waited
        for the answer. True when later ones went out meanwhile: they wait behind it, and
        the caller fills it (a cancel). Without an answer, the node is asked next time."""
        async with self._lock:  # not while a claim between reading and moving the counter
            self._outstanding.pop(lease.nonce, None)
            if lease.outbid is not None:
                self._orphans.setdefault(lease.nonce, lease.outbid)  # it still holds the nonce
            if not known or lease.rollbacks != self._rollbacks:
                self._next = None
                return False
            lease.sent = False
            if any(n > lease.nonce for n in self._outstanding):
                return True
            if self._next == lease.nonce + 1:
                self._next = lease.nonce
            return False

    def release(self, lease: NonceLease) -> bool:
        """The flight of ``lease`` is over. True when its nonce was handed out and not used
        while later nonces of ours are in flight: they wait behind it, so the caller fills
        the nonce (a cancel) unless the node still holds something for it."""
        self._outstanding.pop(lease.nonce, None)
        if lease.rollbacks != self._rollbacks:
            self._next = None  # what it saw mined may have been rolled back since
            return False
        if lease.used or not lease.sent:
            return False
        self._next = None  # the node knows whether it holds the nonce; ask it next time
        return any(n > lease.nonce for n in self._outstanding)

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
            if lease.sent or lease.used:
                self._handed_out(lease.nonce)
            # The holder may have moved the lease to the node's nonce after a nonce error.
            if rollbacks != self._rollbacks:
                self._next = None  # what it saw mined may have been rolled back since
            elif lease.used:
                self._next = lease.nonce + 1
            elif lease.sent:
                self._next = None
            else:
                self._next = lease.nonce
