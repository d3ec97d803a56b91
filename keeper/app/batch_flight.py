"""The execute task's batches: plans that keep their collateral, gathered as a round plans them
and sent together in one ``liquidateBatch`` transaction (``keeper.exec.batch``).

A batch takes its place in the send order when its first plan joins it, and goes out when it is
full or the round has nothing more to plan. An account's follow-up (what the close factor
leaves under HF 1, ``FollowUps``) waits for the round's first liquidations: it is planned once
every first of the round is (on the account its first was planned on), and the follow-ups go
out in batches of their own behind them all (``OpenBatch.follow_ups``). A later nonce runs
after the first's, so the follow-up still sees the account the first leaves; sent right behind
their firsts, the follow-ups of the 10,000-borrower crash (~580 of ~2,340 liquidations) took
block space from accounts not liquidated at all yet. A single process only: a keeper network
claims each account on its own, and sends one liquidation at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keeper.domain.account import Market
from keeper.domain.claim import Claim
from keeper.domain.plan import Plan
from keeper.exec.batch import Batches
from keeper.exec.executor import Execution, touches
from keeper.exec.gate import OpenGate, claiming
from keeper.exec.order import Turn
from keeper.exec.tx import Status
from keeper.obs.logging import get_logger

if TYPE_CHECKING:
    from keeper.app.sending import Sending

log = get_logger(__name__)


@dataclass(slots=True)
class OpenBatch:
    """Plans gathered for one transaction, its place in the send order, and when its first
    account was picked for planning (event-loop time: the latency stamps are the earliest).
    ``follow_ups``: second liquidations whose firsts went out in earlier batches."""

    turn: Turn
    detected: float
    plans: list[Plan] = field(default_factory=list)
    follow_ups: bool = False


class BatchFlights:
    """Flies batches of up to ``size`` plans for the execute task."""

    def __init__(self, sending: Sending, size: int) -> None:
        self.sending = sending
        self.size = size
        self._batches: Batches | None = None

    def takes(self, plan: Plan, market: Market) -> bool:
        """Whether ``plan`` may go in a batch: batching on, a single process, and a plan that
        keeps a collateral outside isolation (it trades in no pool: ``touches``)."""
        return (self.size > 1 and plan.params.keep_collateral
                and isinstance(self.sending.keeper.gate, OpenGate) and not touches(plan, market))

    async def fly(self, batch: OpenBatch, market: Market, block: int,
                  release: Callable[[tuple[str, ...]], None]) -> None:
        """Prepare and send ``batch``, ``release`` its accounts (no longer in flight) once
        it is over, and settle each."""
        keeper = self.sending.keeper
        executor = keeper.executor
        assert executor is not None
        if self._batches is None or self._batches.executor is not executor:
            self._batches = Batches(executor)
        batches = self._batches
        plans = batch.plans
        users = tuple(p.user for p in plans)  # one order an account: follow-ups go apart
        # A follow-up's account was flagged long before: its first carried the latency.
        seen = None if batch.follow_ups else self.sending.candidates.seen.get(users[0])

        async def send() -> list[Execution]:
            prepared = await batches.prepare(
                plans, market, detected_at=batch.detected,
                flagged_at=seen.flagged_at if seen else None,
                block_seen_at=seen.block_seen_at if seen else None, turn=batch.turn,
                follow_ups=batch.follow_ups)
            if self.sending.stopping():
                return []  # planned before the signal: no new liquidation starts
            claim = Claim(users[0], plans[0].debt_asset, block)
            try:
                with claiming(claim):
                    return await batches.send(prepared)
            finally:
                await keeper.gate.release(claim)

        try:
            executions = await self.sending.guarded("execute", users, block, send,
                                                    rpc_method="liquidate")
        finally:
            batch.turn.done()
            release(users)
        for execution in executions or ():
            if not batch.follow_ups:
                self.sending.settled(block, execution)
            elif _mined(execution):
                # Its first settled the lane; a mined follow-up says from when the account
                # is due again.
                self.sending.settled(block, execution, follow_up=True)
            else:
                # To the record only: the account backs off once (its first), not twice.
                self.sending.followed_up(block, execution.user, execution)


def _mined(execution: Execution) -> bool:
    return execution.outcome is not None and execution.outcome.status is Status.MINED
