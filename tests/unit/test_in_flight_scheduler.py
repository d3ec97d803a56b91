"""Several liquidations in flight: consecutive nonces, a stuck low nonce that starves nothing,
a rejected send in the middle that leaves no gap, never two flights for one account, slots,
and the back-off by time that strands nothing on a quiet chain."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from keeper.app.inflight import Lane, RefusedBesideOurs
from keeper.app.scan_task import Candidates
from keeper.app.sending import ExecuteTask, Sending
from keeper.domain.fees import Fees
from keeper.domain.plan import Rejection, RejectionReason
from keeper.exec.executor import Execution, Prepared
from keeper.exec.gate import OpenGate
from keeper.exec.nonce import NonceManager
from keeper.exec.tx import Status, TxOutcome, TxRequest
from keeper.pipeline.scan import LiquidatableAccount
from tests.unit.test_rollback import NonceNode

ME = "0x" + "aa" * 20


# ---- nonces ----------------------------------------------------------------------------------

async def _send(nonces: NonceManager, *, accepted: bool = True, chain: int | None = None) -> Any:
    async with nonces.claim(chain) as lease:
        if accepted:
            lease.mark_sent()
    return lease


async def test_flights_get_consecutive_nonces_without_waiting_for_receipts() -> None:
    node = NonceNode(7)
    nonces = NonceManager(node, ME)
    leases = await asyncio.gather(*(_send(nonces) for _ in range(5)))
    assert sorted(lease.nonce for lease in leases) == [7, 8, 9, 10, 11]
    assert nonces.outstanding == [7, 8, 9, 10, 11] and nonces.busy
    assert node.reads == 2  # one resync (latest + pending), then the counter


async def test_a_stuck_low_nonce_does_not_starve_the_rest() -> None:
    nonces = NonceManager(NonceNode(3), ME)
    stuck = await _send(nonces)  # never mined, never released: its flight is replacing it
    later = [await _send(nonces, chain=4) for _ in range(3)]  # the node holds 3 in its pool
    assert [lease.nonce for lease in later] == [4, 5, 6]
    for lease in later:
        lease.mark_used()
        assert not nonces.release(lease)
    assert nonces.outstanding == [stuck.nonce]


async def test_a_rejected_send_in_the_middle_leaves_no_gap() -> None:
    nonces = NonceManager(NonceNode(10), ME)
    first = await _send(nonces)
    refused = await _send(nonces, accepted=False)  # the node said no: nothing holds 11
    third = await _send(nonces)
    assert (first.nonce, refused.nonce, third.nonce) == (10, 11, 11)
    assert nonces.outstanding == [10, 11]


async def test_a_send_refused_after_its_claim_ended_gives_back_its_nonce_or_is_a_gap() -> None:
    node = NonceNode(20)
    nonces = NonceManager(node, ME)
    alone = await _send(nonces)  # handed out; the node's answer comes after the claim
    assert not await nonces.refused(alone)  # refused, nothing after it: 20 is free again
    assert nonces.outstanding == [] and (await _send(nonces)).nonce == 20
    low, high = await _send(nonces), await _send(nonces)
    assert (low.nonce, high.nonce) == (21, 22)
    assert await nonces.refused(low)  # 22 went out meanwhile: a gap the caller fills
    assert nonces.outstanding == [20, 22]
    assert (await _send(nonces)).nonce == 23  # the counter does not go back under 22
    # No answer at all: the node is asked before the next claim.
    unknown = await _send(nonces)
    assert not await nonces.refused(unknown, known=False)
    reads = node.reads
    await _send(nonces)
    assert node.reads == reads + 2  # the latest and pending counts, read again


async def test_a_flight_that_ends_unused_below_others_is_a_gap_to_fill() -> None:
    nonces = NonceManager(NonceNode(0), ME)
    low, high = await _send(nonces), await _send(nonces)
    assert nonces.release(low)  # dropped without its nonce used, while 1 waits behind it
    high.mark_used()
    assert not nonces.release(high)
    # The next claim asks the node again (it knows whether it still holds 0).
    assert (await _send(nonces)).nonce == 0


async def test_a_counter_ahead_of_the_chain_with_nothing_in_flight_takes_the_chain() -> None:
    nonces = NonceManager(NonceNode(0), ME)
    for _ in range(3):
        lease = await _send(nonces)
        lease.mark_used()
        nonces.release(lease)
    # A rollback not reported yet: the chain is back at 1 and nothing of ours covers 1..2.
    assert (await _send(nonces, chain=1)).nonce == 1
    # Something else used our nonces: the chain is ahead.
    assert (await _send(nonces, chain=9)).nonce == 9


async def test_pending_nonces_below_the_first_we_sent_are_strangers() -> None:
    nonces = NonceManager(NonceNode(5), ME)
    assert not nonces.strangers(5, 5)  # nothing pending
    assert nonces.strangers(5, 7)  # a process before this one left 5 and 6 in the mempool
    ours = [await _send(nonces, chain=7) for _ in range(2)]
    assert [lease.nonce for lease in ours] == [7, 8]
    assert nonces.strangers(5, 9)  # 5 and 6 still pending below ours
    assert not nonces.strangers(7, 9)  # only ours
    # Counts read before a flight of ours was mined and ended: still ours, not a stranger.
    ours[0].mark_used()
    nonces.release(ours[0])
    assert not nonces.strangers(7, 9) and not nonces.strangers(8, 9)


# ---- the lane ------------------------------------------------------------------------------

def test_never_two_flights_for_one_account_and_slots_are_bounded() -> None:
    lane = Lane(backoff_max_blocks=64, max_in_flight=2)
    lane.take("a")
    assert not lane.due("a", 1) and lane.due("b", 1)
    with pytest.raises(RuntimeError):
        lane.take("a")
    assert not lane.full
    lane.take("b")
    assert lane.full and lane.busy and lane.user == "a"
    lane.drop("a")
    assert not lane.full and lane.due("a", 1) and lane.ends == 1


async def test_a_backrun_holding_the_lane_stops_new_flights() -> None:
    lane = Lane(backoff_max_blocks=64, max_in_flight=8)
    async with lane.held():
        assert lane.full
    assert not lane.full


def test_back_off_by_time_strands_nothing_on_a_quiet_chain() -> None:
    now = [100.0]
    lane = Lane(backoff_max_blocks=64, backoff_seconds=2.0, clock=lambda: now[0])
    lane.back_off("a", 10)
    lane.back_off("a", 11)  # second failure: 2 blocks or 4 seconds
    assert not lane.due("a", 12)
    assert lane.next_retry_time(["a", "b"]) == 104.0
    now[0] = 104.0
    assert lane.due("a", 12)  # no block came: the clock let it through
    now[0] = 100.0
    assert lane.due("a", 13)  # blocks came first


_COLLATERAL = "0x" + "cc" * 20

# ---- the execute task --------------------------------------------------------------------------

def _candidate(user: str) -> LiquidatableAccount:
    return LiquidatableAccount(user=user, health_factor=9 * 10**17, total_collateral_base=1,
                               total_debt_base=1, confirmed_on_chain=True, block=5)


class _Fakes:
    """A keeper whose planner plans everyone but ``"poor"`` and whose sends wait for ``go``."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.sending: list[str] = []
        self.in_air = 0
        self.most_in_air = 0
        self.rounds: list[int] = []

    async def plan(self, user: str, account: Any, market: Any, *, round_: Any) -> Any:
        self.rounds.append(id(round_))
        if user == "poor":
            return Rejection(user, RejectionReason.UNPROFITABLE, "")
        # Each sells its collateral (through a pair): none is followed up in the same block.
        return SimpleNamespace(user=user, collateral_asset=_COLLATERAL, params=SimpleNamespace(
            swap_legs=(), swap_path=(_COLLATERAL, "0x" + "dd" * 20)))

    async def prepare(self, plan: Any, market: Any, **_: Any) -> Any:
        # A prepared request names its plan (each send goes under the opportunity's claim).
        return SimpleNamespace(user=plan.user, plan=SimpleNamespace(debt_asset="0xdebt"))

    async def send(self, prepared: Any) -> Execution:
        self.sending.append(prepared.user)
        self.in_air += 1
        self.most_in_air = max(self.most_in_air, self.in_air)
        await self.go.wait()
        self.in_air -= 1
        return Execution(prepared.user, outcome=TxOutcome(Status.MINED, "l", tx_hash="0x1",
                                                           block_number=99))


def _task(fakes: _Fakes, lane: Lane, candidates: Candidates) -> ExecuteTask:
    # A market whose collateral has no debt ceiling (outside isolation).
    market = SimpleNamespace(reserve_of=lambda asset: SimpleNamespace(
        configuration=SimpleNamespace(debt_ceiling=0)))
    book = SimpleNamespace(market=lambda: market, account=lambda u: None, block_hash="0x05")
    keeper = SimpleNamespace(executor=fakes, planner=fakes, sync=SimpleNamespace(book=book),
                             gate=OpenGate(), decisions=None)
    supervisor = SimpleNamespace(succeeded=lambda *_: None, failed=lambda *_, **__: None)
    return ExecuteTask(Sending(keeper, supervisor, lane, candidates,  # type: ignore[arg-type]
                               lambda: False))


async def test_every_candidate_of_a_scan_is_sent_without_waiting_for_receipts() -> None:
    fakes = _Fakes()
    lane = Lane(backoff_max_blocks=64, max_in_flight=3)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("a", "poor", "b", "c", "d")])
    task = asyncio.create_task(_task(fakes, lane, candidates).run())
    for _ in range(100):
        await asyncio.sleep(0)
    # Three slots: a, b, c in the air at once; the poor one was planned and backed off.
    assert fakes.sending == ["a", "b", "c"] and fakes.most_in_air == 3
    assert not lane.due("poor", 5) and lane.full
    assert len(set(fakes.rounds)) == 1  # one planning round for the block
    fakes.go.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert fakes.sending == ["a", "b", "c", "d"]  # a slot came free: d went
    # Mined at block 99: none is due again before a scan has seen that block.
    assert not any(lane.due(u, 98) for u in "abcd") and lane.due("a", 99)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_account_refused_beside_sends_of_ours_is_due_again_once_they_ended() -> None:
    # "poor" is planned unprofitable while "a" is in the air (the round's pools are as a's
    # sale leaves them): once a's flight has ended it is planned again at once, on the same
    # block, not after its back-off. Refused with nothing of ours in the air, it backs off.
    fakes = _Fakes()
    lane = Lane(backoff_max_blocks=64, max_in_flight=3)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("a", "poor")])
    runner = _task(fakes, lane, candidates)
    task = asyncio.create_task(runner.run())
    for _ in range(100):
        await asyncio.sleep(0)
    assert fakes.sending == ["a"] and not lane.due("poor", 5) and len(runner.beside_ours) == 1
    plans = len(fakes.rounds)
    fakes.go.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert len(fakes.rounds) == plans + 1  # poor, again
    assert not lane.due("poor", 5) and len(runner.beside_ours) == 0  # alone: it backs off
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_refusals_beside_ours_wait_for_the_sends_in_the_air_at_their_time() -> None:
    beside = RefusedBesideOurs()
    beside.refused("x", 3)  # tickets 0..3 issued when x was refused
    beside.refused("y", 5)
    beside.refused("x", 7)  # refused again later: waits for the later sends
    assert beside.ended(4) == [] and len(beside) == 2  # ticket 4 and on: y's 5 still flies
    assert beside.ended(6) == ["y"]
    assert beside.ended(None) == ["x"] and len(beside) == 0  # nothing in the air


async def test_sends_take_their_nonces_in_the_order_they_were_planned() -> None:
    from keeper.exec.order import SendOrder

    order = SendOrder()
    nonces = NonceManager(NonceNode(0), ME)
    turns = [order.turn() for _ in range(3)]
    got: dict[int, int] = {}

    async def send(i: int, delay: int) -> None:
        for _ in range(delay):  # the later-planned ones are ready first
            await asyncio.sleep(0)
        await turns[i].wait()
        got[i] = (await _send(nonces)).nonce
        turns[i].done()

    await asyncio.gather(send(0, 30), send(1, 10), send(2, 0))
    assert got == {0: 0, 1: 1, 2: 2}
    # One that gives up before its claim does not hold the others back.
    late = [order.turn() for _ in range(2)]
    late[0].done()
    await asyncio.wait_for(late[1].wait(), 1)


async def test_each_send_waiting_its_turn_is_woken_once_and_a_cancelled_one_leaves_nothing() -> None:
    from keeper.exec.order import SendOrder

    order = SendOrder()
    turns = [order.turn() for _ in range(4)]
    woken: list[int] = []

    async def wait(i: int) -> None:
        await turns[i].wait()
        woken.append(i)

    waiters = [asyncio.create_task(wait(i)) for i in (3, 2, 1)]
    gone = asyncio.create_task(order.wait(4))  # gives up before its turn
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert sorted(order._waiting) == [1, 2, 3]  # the cancelled waiter's place is gone
    turns[1].done()  # out of order: nobody may go before 0 is done
    await asyncio.sleep(0)
    assert woken == []
    turns[0].done()  # 0 and 1 done: 2 is served
    await asyncio.sleep(0)
    assert woken == [1, 2] and not waiters[0].done()
    turns[2].done()
    await asyncio.gather(*waiters)
    assert woken == [1, 2, 3] and order._waiting == {}


class _FollowFakes(_Fakes):
    """Sends that hand their transaction out (the sender's part of a ``Turn``), and a
    follow-up for ``"half"``, the account the close factor leaves under 1."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[tuple[str, Any, Any]] = []  # (user, turn, after)
        self.fees: list[Fees | None] = []  # the exact fees each send bid, if any
        self.sender = SimpleNamespace(policy=SimpleNamespace(min_priority_fee=3))

    async def plan(self, user: str, account: Any, market: Any, *, round_: Any) -> Any:
        return SimpleNamespace(user=user, params=SimpleNamespace(swap_legs=(), swap_path=()),
                               collateral_asset=_COLLATERAL, debt_asset="0xdebt")

    async def prepare(self, plan: Any, market: Any, **kw: Any) -> Any:
        self.prepared.append((plan.user, kw.get("turn"), kw.get("after")))
        request = TxRequest("0xliquidator", b"", 1, label=plan.user, turn=kw.get("turn"))
        return Prepared(plan.user, plan, request, 0, market)

    async def send(self, prepared: Any) -> Execution:
        turn = prepared.request.turn
        self.fees.append(prepared.request.exact_fees)
        if turn is not None:  # handed out: the tx it sent, then the next may claim
            turn.sent = SimpleNamespace(name=f"tx of {prepared.user}", fees=Fees(100, 50))
            turn.done()
        self.sending.append(prepared.user)
        await self.go.wait()
        return Execution(prepared.user, outcome=TxOutcome(Status.MINED, "l", tx_hash="0x1",
                                                           block_number=99))


async def test_a_follow_up_goes_behind_its_first_and_the_firsts_planned_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = _FollowFakes()
    lane = Lane(backoff_max_blocks=64, max_in_flight=8)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("half", "b", "c")])
    task = _task(fakes, lane, candidates)

    async def follow_up(plan: Any, market: Any, round_: Any) -> Any:
        return None if plan.user != "half" else SimpleNamespace(user="half", debt_asset="0xd")

    monkeypatch.setattr(task.follow_ups, "plan", follow_up)
    runner = asyncio.create_task(task.run())
    for _ in range(200):
        await asyncio.sleep(0)
    # The firsts went in planning order, each under its turn; the follow-up of "half" behind
    # the first of "half" and the firsts planned meanwhile, as the transaction that must
    # follow the first of "half", under no turn (it takes no place in the send order).
    assert [u for u in fakes.sending if u != "half"] == ["b", "c"]
    assert fakes.sending[0] == "half" and fakes.sending.count("half") == 2
    assert fakes.sending.index("b") < len(fakes.sending) - 1 - fakes.sending[::-1].index("half")
    follows = [p for p in fakes.prepared if p[2] is not None]
    assert len(follows) == 1 and len(fakes.prepared) == 4
    assert follows[0][0] == "half" and follows[0][1] is None
    assert follows[0][2].name == "tx of half"
    assert all(turn is not None for _, turn, after in fakes.prepared if after is None)
    # The firsts bid the policy's share of their profit; the follow-up the least tip, under
    # its first's fee cap: behind our firsts in a full block.
    assert sorted(map(str, fakes.fees)) == sorted(map(str, [None, None, None, Fees(100, 3)]))
    assert lane.full is False and "half" in task.in_flight  # in flight till both are over
    fakes.go.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert "half" not in task.in_flight
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_no_follow_up_goes_behind_a_first_the_node_refused_after_it_was_handed_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The first of "half" was handed out (the next sends took their nonces), and its refusal
    # came back while its follow-up was planned: the follow-up's simulation ran with the first
    # ahead of it, so it is not sent.
    fakes = _FollowFakes()
    lane = Lane(backoff_max_blocks=64, max_in_flight=8)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("half", "b")])
    task = _task(fakes, lane, candidates)

    async def follow_up(plan: Any, market: Any, round_: Any) -> Any:
        if plan.user != "half":
            return None
        first_turn = next(turn for user, turn, _ in fakes.prepared if user == "half")
        first_turn.sent = None  # what the sender does when the answer is a refusal
        return SimpleNamespace(user="half", debt_asset="0xd")

    monkeypatch.setattr(task.follow_ups, "plan", follow_up)
    runner = asyncio.create_task(task.run())
    for _ in range(200):
        await asyncio.sleep(0)
    assert sorted(fakes.sending) == ["b", "half"]
    assert [p for p in fakes.prepared if p[2] is not None] == []
    fakes.go.set()
    for _ in range(100):
        await asyncio.sleep(0)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


class _RefusedBySimulation(_Fakes):
    """"a"'s liquidation is refused by its simulation (the chain's state differs from the
    book's); "b"'s is refused by a guard; "c"'s is mined."""

    async def send(self, prepared: Any) -> Execution:
        self.sending.append(prepared.user)
        outcome = {
            "a": TxOutcome(Status.SKIPPED, "l", "simulation: reverted: InsufficientProfit",
                           code="simulation_reverted"),
            "b": TxOutcome(Status.SKIPPED, "l", "gas budget", code="gas_budget"),
        }.get(prepared.user, TxOutcome(Status.MINED, "l", tx_hash="0x1", block_number=99))
        return Execution(prepared.user, outcome=outcome)


async def test_an_account_whose_simulation_refused_it_is_doubted_for_the_next_scan() -> None:
    # The book may be wrong about it (an event a node lost leaves its vouch standing): the
    # scan task asks the chain about the doubted accounts on its next pass.
    fakes = _RefusedBySimulation()
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("a", "b", "c")])
    task = asyncio.create_task(_task(fakes, Lane(backoff_max_blocks=64, max_in_flight=3),
                                     candidates).run())
    for _ in range(100):
        await asyncio.sleep(0)
    assert sorted(fakes.sending) == ["a", "b", "c"] and candidates.doubted == {"a"}
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
