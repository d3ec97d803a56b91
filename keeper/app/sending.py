"""The daemon's execute task: liquidates every due candidate of the newest scan, several in
flight at once (alone, or in batches: ``keeper.app.batch_flight``). It and the backrun task
(``keeper.app.backrun_task``) share ``Sending``: one ``Lane`` (never two flights for one
account, one back-off per account) and one task boundary (``guarded``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from keeper.app import steps
from keeper.app.batch_flight import BatchFlights, OpenBatch
from keeper.app.claims import send_claimed
from keeper.app.follow_up import FollowUps
from keeper.app.inflight import Lane, RefusedBesideOurs
from keeper.app.root import Keeper
from keeper.app.scan_task import Candidates
from keeper.app.supervise import Supervisor
from keeper.chain.reorg import block_gone
from keeper.domain.account import Market, UserAccount
from keeper.domain.plan import Plan, Rejection, RejectionReason
from keeper.errors import KeeperError, RpcError
from keeper.exec.executor import Execution
from keeper.exec.order import SendOrder, Turn
from keeper.exec.tx import SIMULATION_REVERTED, Status
from keeper.obs.logging import get_logger
from keeper.pipeline.plan_round import PlanRound
from keeper.pipeline.scan import LiquidatableAccount

log = get_logger(__name__)
T = TypeVar("T")


class Sending:
    """What the execute and backrun tasks share: the keeper, the lane, the boundary."""

    def __init__(self, keeper: Keeper, supervisor: Supervisor, lane: Lane,
                 candidates: Candidates, stopping: Callable[[], bool]) -> None:
        self.keeper = keeper
        self.supervisor = supervisor
        self.lane = lane
        self.candidates = candidates
        self.stopping = stopping

    async def attempt(self, task: str, user: str, block: int,
                      send: Callable[[], Awaitable[Execution]], *,
                      rpc_method: str) -> Execution | None:
        """``send`` with ``user`` marked in flight; when it fails (the node, or anything else
        at ``task``'s boundary) the account backs off and None is returned."""
        with self.lane.flying(user):
            return await self.guarded(task, user, block, send, rpc_method=rpc_method)

    async def guarded(self, task: str, user: str | tuple[str, ...], block: int,
                      send: Callable[[], Awaitable[T]], *, rpc_method: str) -> T | None:
        """``send`` behind ``task``'s boundary (the caller marks ``user`` in flight: one
        account, or a batch's)."""
        users = (user,) if isinstance(user, str) else user
        try:
            return await send()
        except KeeperError as exc:
            if block_gone(exc):  # a reorg or a restore under the plan: planned again
                log.info("liquidation_block_gone", task=task, user=user, error=str(exc))
            elif isinstance(exc, RpcError):
                self.keeper.metrics.rpc_errors.labels(method=rpc_method).inc()
                log.warning("liquidation_node_unreachable", task=task, user=user,
                            error=str(exc))
            else:
                self.supervisor.failed(task, exc, user=user)
                for u in users:
                    self.lane.back_off(u, block)
                return None
            # The chain's or the node's doing, not the account's: tried again on the next
            # block (a back-off grown through an outage would strand it once the node is back).
            for u in users:
                self.lane.retry_next(u, block)
        except Exception as exc:  # a task boundary
            self.supervisor.failed(task, exc, user=user)
            for u in users:
                self.lane.back_off(u, block)
        return None

    def settled(self, block: int, execution: Execution | None, user: str | None = None, *,
                follow_up: bool = False) -> None:
        """How the liquidation of an account tried at ``block`` ended: into the decision
        record, the task's health and the lane (due again, backing off, or liquidated)."""
        user = user if execution is None else execution.user
        assert user is not None
        self.record(block, user, execution)
        if execution is None:
            return
        self.supervisor.succeeded("execute")
        if execution.outcome is not None and execution.outcome.code == SIMULATION_REVERTED:
            self.candidates.doubt(user)
        mined = self.lane.settle(user, block, execution.outcome, overtaken=execution.overtaken)
        if mined is not None and execution.outcome is not None:
            self.candidates.forget(user)
            _liquidated(user, execution, mined, follow_up=follow_up)

    def followed_up(self, block: int, user: str, execution: Execution | None) -> None:
        """How a follow-up of ``user`` ended (its first settled the lane): into the decision
        record, and the log when it was mined."""
        self.record(block, user, execution)
        outcome = None if execution is None else execution.outcome
        if execution is not None and outcome is not None and outcome.status is Status.MINED \
                and outcome.block_number is not None:
            _liquidated(user, execution, outcome.block_number, follow_up=True)

    def record(self, block: int, user: str, execution: Execution | None) -> None:
        """Into the decision record: the planner's verdict, or how a request ended."""
        decisions = self.keeper.decisions
        if decisions is None or execution is None:
            return
        if execution.outcome is not None:
            decisions.outcome(self.candidates.block if execution.outcome.block_number is None
                              else execution.outcome.block_number, user, execution.outcome)
        elif execution.rejection is not None:
            decisions.verdict(block, user, execution.rejection)
        elif execution.plan is not None:
            decisions.verdict(block, user, execution.plan)


def _liquidated(user: str, execution: Execution, block: int, *, follow_up: bool = False) -> None:
    assert execution.outcome is not None
    log.info("liquidated", user=user, tx_hash=execution.outcome.tx_hash, block=block,
             realised_net_usd=(execution.realised_net_usd or 0) / 1e8,
             **({"follow_up": True} if follow_up else {}))


# Refusals our own sends in the air can cause: their sales drain the pools the account would
# sell into (no route, or no profit), their repayments spend the contract's own balance.
_OURS_CAN_CAUSE = frozenset({RejectionReason.UNPROFITABLE, RejectionReason.NO_ROUTE,
                             RejectionReason.NO_FUNDS})


@dataclass(frozen=True, slots=True)
class _Flying:
    """A flight's plan and its place in the send order (which knows the nonce it took)."""

    plan: Plan
    turn: Turn

    @property
    def nonce(self) -> int | None:
        return self.turn.nonce


class ExecuteTask:
    """Liquidates every due candidate of the newest scan, best first, up to the lane's
    ``max_in_flight`` at once with consecutive nonces: each is planned in turn (in one
    ``PlanRound`` per block, so liquidations selling into the same pool are planned on the
    state the previous leaves), then prepared and sent in its own flight, without waiting for
    the previous one's receipt. Accounts the close factor leaves under HF 1 are liquidated
    again on later blocks for as long as that pays (see ``Lane``)."""

    def __init__(self, sending: Sending, *, batch_size: int = 1) -> None:
        self.sending = sending
        self.lane = sending.lane
        self.flights: set[asyncio.Task[None]] = set()
        self.in_flight: dict[str, _Flying] = {}  # the plans of the flights in the air
        self.order = SendOrder()  # nonces are taken in planning order
        self._round: PlanRound | None = None
        self._round_head = ""  # the book's block hash the round began on
        self.follow_ups = FollowUps(sending, self.order)
        self.batches = BatchFlights(sending, batch_size)
        # Follow-ups held back for the round's firsts (``_send_follow_ups``), and how many
        # batches each of their accounts is in flight in besides its first's.
        self._follow_ups: list[Plan] = []
        self._held: dict[str, int] = {}
        self.beside_ours = RefusedBesideOurs()

    async def run(self) -> None:
        if self.sending.keeper.executor is None:
            await asyncio.Event().wait()  # scan only: nothing to execute, ever
        candidates = self.sending.candidates
        try:
            while True:
                if self.sending.stopping():
                    # The drain waits for the flights in the air; they end on their own.
                    await asyncio.Event().wait()
                block, items, scans = candidates.block, candidates.items, candidates.scans
                ends = self.lane.ends
                if self.beside_ours:
                    oldest = min((f.turn.ticket for f in self.in_flight.values()), default=None)
                    self.lane.forgive(self.beside_ours.ended(oldest))
                due = self._in_turn([c for c in items if self.lane.due(c.user, block)])
                if due and not self.lane.full:
                    await self._plan_and_send(due, block)
                    continue
                await self._wait(scans, ends, [c.user for c in items])
        finally:
            for flight in list(self.flights):
                flight.cancel()

    async def _wait(self, scans: int, ends: int, users: list[str]) -> None:
        """Until a newer scan, a flight's end (a slot, an account due again), or the time an
        account backing off comes due on a quiet chain."""
        retry = self.lane.next_retry_time(users)
        timeout = None if retry is None else max(retry - self.lane.clock(), 0.0) + 0.001
        waits = {asyncio.ensure_future(self.sending.candidates.wait_newer(scans)),
                 asyncio.ensure_future(self.lane.wait_ended(ends))}
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _in_turn(self, due: list[LiquidatableAccount]) -> list[LiquidatableAccount]:
        """First come, first served: the accounts flagged longest ago first (best first among
        those flagged together), so an account the close factor left under 1, flagged anew
        after our liquidation of it, waits behind the crash's first liquidations."""
        seen = self.sending.candidates.seen
        return sorted(due, key=lambda c: s.flagged_at if (s := seen.get(c.user)) else 0.0)

    def _refused_beside_ours(self, verdict: Execution) -> None:
        """An account refused on a view with sends of ours in the air, for a reason they can
        cause, is due again once they have ended (``RefusedBesideOurs``)."""
        refused = verdict.rejection
        if refused is not None and refused.reason in _OURS_CAN_CAUSE and self.in_flight:
            self.beside_ours.refused(verdict.user, self.order.issued - 1)

    def _round_for(self, block: int) -> PlanRound:
        # A round lasts one block of the chain as the book has it (its hash, not the scan's
        # number): its reads are cached, and pools move under it with every block (our own
        # liquidations, arbitrage); a scan can lag the book, and a chain that went back
        # repeats numbers. Plans on stale pools overestimate and fail their simulation.
        head = self.sending.keeper.sync.book.block_hash
        if self._round is None or self._round.block != block or self._round_head != head:
            self._round = PlanRound(block, list(self.in_flight.values()), head)
            self._round_head = head
        return self._round

    async def _plan_and_send(self, due: list[LiquidatableAccount], block: int) -> None:
        """Plan the due candidates in order and start a flight for each plan, while slots
        are free (a backrun holding the lane also stops the round)."""
        keeper = self.sending.keeper
        round_ = self._round_for(block)
        market = keeper.sync.book.market()
        loop = asyncio.get_running_loop()
        batch: OpenBatch | None = None  # plans that go out together (``BatchFlights``)
        # Batched firsts (and the account each was planned on) whose follow-ups come last.
        unfollowed: list[tuple[Plan, UserAccount]] = []
        followed = 0  # of them, those whose follow-up is planned
        try:
            for candidate in due:
                user = candidate.user
                if self.sending.stopping() or self.lane.full:
                    break
                if not self.lane.due(user, block):
                    continue
                detected = loop.time()
                self.lane.take(user)
                account = keeper.sync.book.account(user)  # its follow-up is planned on it too
                verdict = await self.sending.guarded(
                    "execute", user, block,
                    functools.partial(self._planned, user, account, market, round_),
                    rpc_method="plan")
                self.sending.record(block, user, verdict)
                if verdict is None or verdict.plan is None:
                    self.lane.drop(user)
                    if verdict is not None:
                        waits = verdict.rejection.not_before if verdict.rejection else None
                        self.lane.settle(user, block, None, not_before=waits)
                        self._refused_beside_ours(verdict)
                    continue
                plan = verdict.plan
                if self.batches.takes(plan, market):
                    if batch is None:
                        batch = OpenBatch(self.order.turn(), detected)
                    self.in_flight[user] = _Flying(plan, batch.turn)
                    batch.plans.append(plan)
                    # Its follow-up is planned once every first is (``_follow_in``); held
                    # for it now, so that the first's end leaves the account in flight.
                    self._held[user] = self._held.get(user, 0) + 1
                    unfollowed.append((plan, account))
                    if len(batch.plans) >= self.batches.size:
                        self._start_batch(batch, market, block, round_)
                        batch = None
                else:
                    if batch is not None:  # it was planned first: it takes its nonce first
                        self._start_batch(batch, market, block, round_)
                        batch = None
                    turn = self.order.turn()
                    self.in_flight[user] = _Flying(plan, turn)
                    self._start(self._fly(plan, market, block, detected, turn, round_), user)
                # Plans of one round often need no read (the round has them): without a yield
                # the round would plan everyone before the first flight even traced its gas.
                await asyncio.sleep(0)
            if batch is not None:
                self._start_batch(batch, market, block, round_)
                batch = None
            for first, account in unfollowed:
                await self._follow_in(first, account, market, round_)
                followed += 1
                if len(self._follow_ups) >= self.batches.size:
                    self._send_follow_ups(market, block, round_)  # each batch once full
                await asyncio.sleep(0)  # as between firsts: the flights go on meanwhile
        except BaseException:
            if batch is not None:  # cancelled while gathering: nothing of it was sent
                batch.turn.done()
                self._release(tuple(p.user for p in batch.plans))
            held, self._follow_ups = self._follow_ups, []
            self._release(tuple(p.user for p in held)
                          + tuple(p.user for p, _ in unfollowed[followed:]))
            raise
        self._send_follow_ups(market, block, round_)

    def _start(self, flight: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(flight, name=f"liquidate {name}")
        self.flights.add(task)
        task.add_done_callback(self.flights.discard)

    def _start_batch(self, batch: OpenBatch, market: Market, block: int,
                     round_: PlanRound) -> None:
        """Send ``batch``: alone as a plain flight when it holds one first liquidation."""
        if len(batch.plans) == 1 and not batch.follow_ups:
            plan = batch.plans[0]
            # A first whose follow-up is held back (``_follow_in``) gets no second one.
            follow = None if plan.user in self._held else round_
            self._start(self._fly(plan, market, block, batch.detected, batch.turn, follow),
                        plan.user)
        else:
            self._start(self.batches.fly(batch, market, block, self._release),
                        f"batch of {len(batch.plans)}")

    async def _follow_in(self, plan: Plan, account: UserAccount, market: Market,
                         round_: PlanRound) -> None:
        """``plan``'s follow-up, held back for the round's firsts, when the close factor
        leaves its account under HF 1 and a second liquidation pays: planned after every
        first of the round (which go out meanwhile: planned beside each, in the first 6 s of
        the 10,000-borrower crash with a core busy the follow-ups took 12% of the daemon's
        CPU against the firsts' 18%, and they go out behind every first anyway). The hold taken for it when its first was batched
        keeps the account in flight till the follow-up is over; without one, it goes. On
        ``account``, the one ``plan`` was: the book may hold what the first left by now."""
        second = None
        if not self.sending.stopping():
            try:
                second = await self.follow_ups.plan(plan, market, round_, account=account)
            except Exception as exc:  # optional: the account is planned again on a later block
                log.warning("follow_up_not_planned", user=plan.user, error=str(exc))
        if second is not None and self.batches.takes(second, market):
            self._follow_ups.append(second)
        else:
            self._release((plan.user,))

    def _send_follow_ups(self, market: Market, block: int, round_: PlanRound) -> None:
        """The follow-ups held back, in batches of their own behind every first the round
        planned: in a crash, block space goes to the accounts nobody has liquidated yet
        (the 10,000-borrower race: see ``keeper.app.batch_flight``). Each batch as it fills
        (all at the end, ~580 of them held the sends up ~1.5 s in that race, core busy)."""
        held, self._follow_ups = self._follow_ups, []
        if self.sending.stopping():
            self._release(tuple(p.user for p in held))
            return
        now = asyncio.get_running_loop().time()
        size = self.batches.size
        for i in range(0, len(held), size):
            batch = OpenBatch(self.order.turn(), now, held[i:i + size], follow_ups=True)
            self._start_batch(batch, market, block, round_)

    def _release(self, users: tuple[str, ...]) -> None:
        """``users``' batch is over: no longer in flight, unless another batch of ours
        still holds one (a first's account, while its follow-up waits or flies)."""
        for user in users:
            held = self._held.pop(user, 0)
            if held > 1:
                self._held[user] = held - 1
            if held:
                continue
            self.in_flight.pop(user, None)
            self.lane.drop(user)

    async def _planned(self, user: str, account: UserAccount, market: Market,
                       round_: PlanRound) -> Execution:
        verdict = await steps.plan(self.sending.keeper, user, market, round_, account=account)
        if isinstance(verdict, Rejection):
            return Execution(user, rejection=verdict)
        return Execution(user, plan=verdict)

    async def _fly(self, plan: Plan, market: Market, block: int, detected: float,
                   turn: Turn, round_: PlanRound | None = None) -> None:
        """Prepare and send ``plan`` and see it through, and its follow-up behind it; the
        account is in flight till both are over."""
        user = plan.user
        keeper = self.sending.keeper
        executor = keeper.executor
        assert executor is not None
        seen = self.sending.candidates.seen.get(user)
        follower = None if round_ is None or not self.follow_ups.may_follow(plan, market) \
            else asyncio.create_task(
            self.follow_ups.behind(plan, turn, market, round_, block, detected),
            name=f"follow {user}")

        async def send() -> Execution:
            assert executor is not None
            prepared = await executor.prepare(
                plan, market, detected_at=detected,
                flagged_at=seen.flagged_at if seen else None,
                block_seen_at=seen.block_seen_at if seen else None, turn=turn)
            if self.sending.stopping():
                return Execution(user)  # planned before the signal: no new liquidation starts
            # Under the opportunity's claim: a keeper network fences and records each send.
            return await send_claimed(keeper, prepared, block)

        try:
            try:
                execution = await self.sending.guarded("execute", user, block, send,
                                                       rpc_method="liquidate")
            finally:
                turn.done()  # if it never reached its claim, the next ones must not wait for it
            if follower is not None:
                await follower
        finally:
            if follower is not None and not follower.done():
                follower.cancel()
            self._release((user,))
        self.sending.settled(block, execution, user)
