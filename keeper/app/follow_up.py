"""Follow-ups: a second liquidation of an account the close factor leaves under HF 1, sent
right behind our first, in the same block, where another keeper would take the rest.

Planned (in the first's ``PlanRound``) on the account the first leaves (``account_after``),
only for plans that trade in no pool and in a single process (a keeper network claims an
account once per block). It is simulated as the pair [first, second], which then sees all it
depends on, and needs no place in the send order but behind the first. First liquidations come
first: a follow-up waits for every send planned before it is planned itself to go out (sent at
once, follow-ups took the first block from firsts, and the 1,000-borrower race fell from 98% to
81% of the liquidations). It does not wait for its whole round to be planned: that was too late
for the leftovers (97% in three runs, against 99.1%). Plans that go out in batches
(``keeper.app.batch_flight``) have theirs in batches of their own, behind every first of the
round, instead.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from keeper.app.claims import send_claimed
from keeper.domain.account import Market, UserAccount, calculate_user_account_data
from keeper.domain.account_after import account_after
from keeper.domain.fees import Fees
from keeper.domain.plan import Plan, Rejection
from keeper.domain.wadray import WAD
from keeper.exec.executor import Execution, touches
from keeper.exec.gate import OpenGate
from keeper.exec.order import SendOrder, Turn
from keeper.obs.logging import get_logger
from keeper.pipeline.plan_round import PlanRound

if TYPE_CHECKING:
    from keeper.app.sending import Sending

log = get_logger(__name__)


class FollowUps:
    """The follow-ups of the execute task's flights; ``order`` is the firsts' send order."""

    def __init__(self, sending: Sending, order: SendOrder) -> None:
        self.sending = sending
        self.order = order

    async def plan(self, leader: Plan, market: Market, round_: PlanRound, *,
                   account: UserAccount | None = None) -> Plan | None:
        """The follow-up of ``leader``, or None when its account is left healthy, when none
        pays, or when either trades in a pool. ``account``: the one ``leader`` was planned
        on (the book's now, unless given)."""
        keeper = self.sending.keeper
        if keeper.planner is None or not self.may_follow(leader, market):
            return None
        before = keeper.sync.book.account(leader.user) if account is None else account
        after = account_after(before, market, leader)
        if after is None or calculate_user_account_data(after, market).health_factor >= WAD:
            return None
        second = await keeper.planner.plan(leader.user, after, market, round_=round_)
        return None if isinstance(second, Rejection) or touches(second, market) else second

    def may_follow(self, leader: Plan, market: Market) -> bool:
        """Whether ``leader`` may have a follow-up at all (no IO): a single process, and a
        plan that keeps a collateral outside isolation (it touches nothing on chain but its
        account). Checked before a flight starts a follower."""
        return isinstance(self.sending.keeper.gate, OpenGate) and not touches(leader, market)

    async def behind(self, leader: Plan, turn: Turn, market: Market, round_: PlanRound,
                     block: int, detected: float) -> None:
        """Once ``leader`` is handed out (``turn``), its follow-up if one pays, as the
        transaction that must follow it; nothing when the leader sent nothing."""
        keeper = self.sending.keeper
        executor = keeper.executor
        assert executor is not None
        first = await turn.handed_out()
        await self.order.wait(self.order.issued)
        if first is None or self.sending.stopping():
            return
        try:
            plan = await self.plan(leader, market, round_)
        except Exception as exc:  # optional: the account is planned again on the next block
            log.warning("follow_up_not_planned", user=leader.user, error=str(exc))
            return
        if plan is None or turn.sent is None:
            return  # none pays, or the node refused the first after it was handed out

        async def send() -> Execution:
            assert executor is not None and plan is not None
            prepared = await executor.prepare(plan, market, detected_at=detected, after=first)
            # The least tip we bid: ordered behind our firsts in a full block, never in their
            # place (bidding its own share of profit, 8 follow-ups took the first block's place
            # of 8 firsts, which the naive keeper then took in the next).
            tip = min(executor.sender.policy.min_priority_fee,
                      first.fees.max_priority_fee_per_gas)
            request = replace(prepared.request,
                              exact_fees=Fees(first.fees.max_fee_per_gas, tip))
            return await send_claimed(keeper, replace(prepared, request=request), block)

        execution = await self.sending.guarded("execute", plan.user, block, send,
                                               rpc_method="liquidate")
        self.sending.followed_up(block, plan.user, execution)

