"""The order in which sends take their nonces: the order they were planned in.

Liquidations planned in one round on the pool state each previous one leaves must be mined in
that order; consecutive nonces mine in nonce order, so a send may claim its nonce only once
every send planned before it has claimed its own (or given up). The planning caller hands out
a ``Turn`` per plan; the sender waits for it before its claim and ends it after.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from keeper.chain.types import PendingTx


@dataclass(slots=True)
class SendOrder:
    """Tickets in planning order; ``serving`` is the first one not done yet."""

    issued: int = 0
    serving: int = 0
    _done: set[int] = field(default_factory=set)
    # Who waits for ``serving`` to reach a ticket: each is woken once, when it does (a crash
    # has hundreds of sends waiting; one event for all woke every one at every turn).
    _waiting: dict[int, list[asyncio.Future[None]]] = field(default_factory=dict)

    def turn(self) -> Turn:
        """The next ticket, for the plan just made."""
        self.issued += 1
        return Turn(self, self.issued - 1)

    async def wait(self, ticket: int) -> None:
        if self.serving >= ticket:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(ticket, [])
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
            if not queue:
                self._waiting.pop(ticket, None)
            raise

    def done(self, ticket: int) -> None:
        self._done.add(ticket)
        while self.serving in self._done:
            self._done.discard(self.serving)
            self.serving += 1
            for waiter in self._waiting.pop(self.serving, ()):
                if not waiter.done():
                    waiter.set_result(None)


@dataclass(slots=True)
class Turn:
    """One send's place in its ``SendOrder``, and the nonce it took once it claimed one."""

    order: SendOrder = field(compare=False)
    ticket: int
    nonce: int | None = field(default=None, compare=False)
    sent: PendingTx | None = field(default=None, compare=False)  # what it handed out first

    async def wait(self) -> None:
        """Return once every send planned before this one has claimed its nonce or ended."""
        await self.order.wait(self.ticket)

    @property
    def due(self) -> bool:
        """Whether every send planned before this one has claimed its nonce or ended."""
        return self.order.serving >= self.ticket

    def done(self) -> None:
        """This send claimed its nonce, or will not (idempotent)."""
        self.order.done(self.ticket)

    async def handed_out(self) -> PendingTx | None:
        """Once this send and every one before it took their nonces or ended: the transaction
        this one handed out, or None when it sent nothing."""
        await self.order.wait(self.ticket + 1)
        return self.sent

    def took(self, nonce: int) -> None:
        """This send's transaction carries ``nonce`` (its replacements and cancel too)."""
        self.nonce = nonce
