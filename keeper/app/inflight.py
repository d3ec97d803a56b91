"""The liquidation in flight and each account's back-off, shared by the execute and backrun
tasks so that neither liquidates an account the other is liquidating or just liquidated."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass, replace

from keeper.exec.tx import Status, TxOutcome


@dataclass(frozen=True, slots=True)
class _Cooldown:
    """When an account may be tried again: not before a scan at ``retry_at``."""

    retry_at: int
    failures: int = 0
    not_before: int | None = None  # a known time it waits for (block timestamp), if any


class Lane:
    """One transaction in flight for the account, and when each candidate is due again.

    The lane is held for the whole life of a liquidation (the sender's nonce lease would
    serialise two of them too, but a backrun must not wait behind a liquidation: by then its
    block is gone). An account is due again from a scan of the block that mined our
    liquidation of it (never while it is in flight, never on a stale view); one that was not
    liquidated waits 1, 2, 4 ... blocks, up to ``backoff_max_blocks``. One that waits for a
    known time (a liquidation grace period) does not back off: it is due on every new block,
    since the planner, which knows each block's timestamp, is what holds it until that time,
    and a back-off would miss the first block after it.
    """

    def __init__(self, backoff_max_blocks: int) -> None:
        self.backoff_max_blocks = backoff_max_blocks
        self.user: str | None = None  # whose liquidation is in flight
        self._lock = asyncio.Lock()
        self._cooldowns: dict[str, _Cooldown] = {}

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the lane (wait for it when busy)."""
        async with self._lock:
            yield

    async def idle(self) -> None:
        """Return once nothing is in flight."""
        async with self._lock:
            return

    @contextlib.contextmanager
    def flying(self, user: str) -> Iterator[None]:
        """Mark ``user``'s liquidation as the one in flight (for the drain and the logs)."""
        self.user = user
        try:
            yield
        finally:
            self.user = None

    def due(self, user: str, block: int) -> bool:
        """May ``user`` be tried on a scan of ``block``?"""
        cooldown = self._cooldowns.get(user)
        return cooldown is None or block >= cooldown.retry_at

    def back_off(self, user: str, block: int) -> None:
        """``user`` was not liquidated at ``block``: wait twice as long as last time."""
        previous = self._cooldowns.get(user)
        failures = (previous.failures if previous else 0) + 1
        wait = min(2 ** (failures - 1), self.backoff_max_blocks)
        self._cooldowns[user] = _Cooldown(retry_at=block + wait, failures=failures)

    def wait_for(self, user: str, block: int, not_before: int) -> None:
        """``user`` cannot be liquidated before the block stamped ``not_before``: due again on
        the next block, its back-off unchanged."""
        previous = self._cooldowns.get(user)
        self._cooldowns[user] = _Cooldown(retry_at=block + 1,
                                          failures=previous.failures if previous else 0,
                                          not_before=not_before)

    def waiting_until(self, user: str) -> int | None:
        """The time ``user`` waits for, if any (for the logs and tests)."""
        cooldown = self._cooldowns.get(user)
        return cooldown.not_before if cooldown else None

    def settle(self, user: str, block: int, outcome: TxOutcome | None, *,
               back_off_unsent: bool = True, not_before: int | None = None) -> int | None:
        """Record how the liquidation of ``user``, tried at ``block``, ended; the block it was
        mined in, or None (then the account backs off, unless nothing was sent and
        ``back_off_unsent`` is false, or it waits for the time ``not_before``)."""
        if outcome is not None and outcome.rolled_back:
            # Given up because a rollback went below its nonce: plan it again at once.
            self._cooldowns.pop(user, None)
            return None
        if (outcome is not None and outcome.status is Status.MINED
                and outcome.block_number is not None):
            # Due again once a scan has seen the block with our liquidation in it: the close
            # factor may leave the account under 1, worth another round.
            self._cooldowns[user] = _Cooldown(retry_at=outcome.block_number)
            return outcome.block_number
        if not_before is not None and (outcome is None or outcome.tx_hash is None):
            self.wait_for(user, block, not_before)
            return None
        if back_off_unsent or (outcome is not None and outcome.tx_hash is not None):
            self.back_off(user, block)
        return None

    def rewind(self, block: int, users: Collection[str]) -> None:
        """The chain went back to ``block``: the rolled-back ``users`` (our liquidations of
        them may be undone) are due at once, and no other account waits for a block number
        of the abandoned branch."""
        self._cooldowns = {
            u: c if c.retry_at <= block + 1 else replace(c, retry_at=block + 1)
            for u, c in self._cooldowns.items() if u not in users}

    def keep_only(self, users: Collection[str]) -> None:
        """Forget the back-off of accounts that are no longer liquidatable."""
        self._cooldowns = {u: c for u, c in self._cooldowns.items() if u in users}
