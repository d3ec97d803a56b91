"""The liquidations in flight and each account's back-off, shared by the execute and backrun
tasks so that neither liquidates an account the other is liquidating or just liquidated."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, replace

from keeper.exec.tx import Status, TxOutcome

BACKOFF_SECONDS = 2.0  # time back-off of the first failure; doubles like the block one


@dataclass(frozen=True, slots=True)
class _Cooldown:
    """When an account may be tried again: on a scan at ``retry_at`` or, on a quiet chain,
    once the clock reaches ``retry_time``, whichever comes first."""

    retry_at: int
    failures: int = 0
    not_before: int | None = None  # a known time it waits for (block timestamp), if any
    retry_time: float | None = None


class Backoff:
    """When each candidate is due again (see ``Lane``); ``clock`` is monotonic seconds."""

    def __init__(self, backoff_max_blocks: int, backoff_seconds: float,
                 clock: Callable[[], float]) -> None:
        self.backoff_max_blocks = backoff_max_blocks
        self.backoff_seconds = backoff_seconds
        self.clock = clock
        self._cooldowns: dict[str, _Cooldown] = {}

    def due(self, user: str, block: int) -> bool:
        """May ``user`` be tried on a scan of ``block``?"""
        cooldown = self._cooldowns.get(user)
        return (cooldown is None or block >= cooldown.retry_at
                or (cooldown.retry_time is not None and self.clock() >= cooldown.retry_time))

    def next_retry_time(self, users: Collection[str]) -> float | None:
        """The earliest clock time one of ``users`` comes due by time alone (None: none
        waits by time)."""
        times = [c.retry_time for u in users if (c := self._cooldowns.get(u)) is not None
                 and c.retry_time is not None]
        return min(times, default=None)

    def back_off(self, user: str, block: int) -> None:
        """``user`` was not liquidated at ``block``: wait twice as long as last time."""
        previous = self._cooldowns.get(user)
        failures = (previous.failures if previous else 0) + 1
        wait = min(2 ** (failures - 1), self.backoff_max_blocks)
        self._cooldowns[user] = _Cooldown(retry_at=block + wait, failures=failures,
                                          retry_time=self.clock() + wait * self.backoff_seconds)

    def retry_next(self, user: str, block: int) -> None:
        """``user`` was not liquidated at ``block`` for a reason that is not its own (the chain
        moved under the plan, the node failed a call): due on the next block, or after
        ``backoff_seconds`` on a quiet chain, its back-off unchanged."""
        previous = self._cooldowns.get(user)
        self._cooldowns[user] = _Cooldown(retry_at=block + 1,
                                          failures=previous.failures if previous else 0,
                                          retry_time=self.clock() + self.backoff_seconds)

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
               back_off_unsent: bool = True, not_before: int | None = None,
               overtaken: bool = False) -> int | None:
        """Record how the liquidation of ``user``, tried at ``block``, ended; the block it was
        mined in, or None (then the account backs off, unless nothing was sent and
        ``back_off_unsent`` is false, or it waits for the time ``not_before``). One whose
        plan the chain ``overtaken`` (its simulation paid less than planned: pools and prices
        moved, pending trades) is due on the next block without backing off: the move that
        refused it is mined within a block or two, and a back-off grown through a crash would
        strand a profitable account once the market settles."""
        if outcome is not None and (outcome.rolled_back or outcome.fenced):
            # Given up because a rollback went below its nonce, or refused by the send gate
            # while another replica held the sender lease: plan it again at once.
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
        if overtaken and (outcome is None or outcome.tx_hash is None):
            self.retry_next(user, block)
        elif back_off_unsent or (outcome is not None and outcome.tx_hash is not None):
            self.back_off(user, block)
        return None

    def rewind(self, block: int, users: Collection[str]) -> None:
        """The chain went back to ``block``: the rolled-back ``users`` (our liquidations of
        them may be undone) are due at once, and no other account waits for a block number
        of the abandoned branch."""
        self._cooldowns = {
            u: c if c.retry_at <= block + 1 else replace(c, retry_at=block + 1)
            for u, c in self._cooldowns.items() if u not in users}

    def forgive(self, users: Iterable[str]) -> None:
        """``users`` are due at once, their back-off forgotten (what refused them is gone)."""
        for user in users:
            self._cooldowns.pop(user, None)

    def keep_only(self, users: Collection[str]) -> None:
        """Forget the back-off of accounts that are no longer liquidatable."""
        self._cooldowns = {u: c for u, c in self._cooldowns.items() if u in users}


class Lane(Backoff):
    """Up to ``max_in_flight`` liquidations in flight, never two for one account, and when
    each candidate is due again.

    The execute task starts one flight per account (``flying``); a backrun holds the lane
    exclusively (``held``: no new flight starts meanwhile, and it only runs when none is in
    flight, since by the time it waited behind one its block is gone). An account is due
    again from a scan of the block that mined our liquidation of it (never while it is in
    flight, never on a stale view); one that was not liquidated waits 1, 2, 4 ... blocks, up
    to ``backoff_max_blocks``, or as many times ``backoff_seconds`` if no block comes
    (a quiet chain strands nothing). One that waits for a known time (a liquidation grace
    period) does not back off: it is due on every new block, since the planner, which knows
    each block's timestamp, is what holds it until that time, and a back-off would miss the
    first block after it.
    """

    def __init__(self, backoff_max_blocks: int, *, max_in_flight: int = 1,
                 backoff_seconds: float = BACKOFF_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(backoff_max_blocks, backoff_seconds, clock)
        self.max_in_flight = max(1, max_in_flight)
        self._flying: dict[str, None] = {}  # accounts in flight, oldest first
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()  # a flight ended (a slot, an account, the drain)
        self.ends = 0  # flights ended so far

    @property
    def user(self) -> str | None:
        """The oldest account in flight (for the drain and the logs)."""
        return next(iter(self._flying), None)

    @property
    def busy(self) -> bool:
        """Something is in flight, or a backrun holds the lane."""
        return self._lock.locked() or bool(self._flying)

    @property
    def full(self) -> bool:
        """No new flight may start: all slots taken, or a backrun holds the lane."""
        return self._lock.locked() or len(self._flying) >= self.max_in_flight

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the lane exclusively (wait for it when a backrun holds it)."""
        async with self._lock:
            yield

    async def idle(self) -> None:
        """Return once nothing is in flight and nobody holds the lane."""
        while True:
            async with self._lock:
                if not self._flying:
                    return
                ends = self.ends
            await self.wait_ended(ends)

    async def wait_ended(self, ends: int) -> None:
        """Return once more than ``ends`` flights have ended."""
        while self.ends <= ends:
            self._changed.clear()
            await self._changed.wait()

    def take(self, user: str) -> None:
        """Mark ``user``'s liquidation in flight (one per account); ``drop`` ends it."""
        if user in self._flying:
            raise RuntimeError(f"a liquidation of {user} is in flight already")
        self._flying[user] = None

    def drop(self, user: str) -> None:
        if self._flying.pop(user, 0) is None:
            self.ends += 1
            self._changed.set()

    @contextlib.contextmanager
    def flying(self, user: str) -> Iterator[None]:
        """Mark ``user``'s liquidation as in flight for the block's length."""
        self.take(user)
        try:
            yield
        finally:
            self.drop(user)

    def due(self, user: str, block: int) -> bool:
        """May ``user`` be tried on a scan of ``block``? Never while it is in flight."""
        return user not in self._flying and super().due(user, block)


class RefusedBesideOurs:
    """Accounts refused while liquidations of ours were in the air, for a reason those can
    cause, until they have all ended.

    A round plans on the pools and the funding as our sends still in the air will leave them
    (``PlanRound``): an account that sells into the same pools may not pay on that view, or
    find no route or no funds, and be worth it once they are mined or gone. Its back-off grows
    meanwhile (the fault test with an outage: sends of ours held behind a lost nonce for
    seconds, the accounts selling into their pools refused at -$2.31 four times, their
    back-off doubling, then planned at +$53.94 once the sends cleared). So such an account is
    due again at once when every send that was in the air at its refusal has ended.
    ``ticket`` is the last ``SendOrder`` ticket issued at the refusal; tickets only grow, so
    the record is in ticket order."""

    def __init__(self) -> None:
        self._waiting: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def refused(self, user: str, ticket: int) -> None:
        self._waiting.pop(user, None)  # re-inserted last: the order stays by ticket
        self._waiting[user] = ticket

    def ended(self, oldest_in_air: int | None) -> list[str]:
        """The accounts whose sends in the air at their refusal have all ended, now that the
        oldest ticket still in the air is ``oldest_in_air`` (None: nothing in the air)."""
        ready: list[str] = []
        for user, ticket in self._waiting.items():
            if oldest_in_air is not None and ticket >= oldest_in_air:
                break
            ready.append(user)
        for user in ready:
            del self._waiting[user]
        return ready
