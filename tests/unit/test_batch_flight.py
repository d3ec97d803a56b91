"""Batches: plans that keep their collateral go out together in one ``liquidateBatch``, in the
order they were planned among the plans sent alone; the follow-ups in batches of their own
behind every first of the round; each order's outcome is read from its own event of the one
receipt."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from eth_abi import encode as abi_encode

from keeper.app.inflight import Lane
from keeper.app.scan_task import Candidates
from keeper.app.sending import ExecuteTask, Sending
from keeper.contracts import artifacts
from keeper.exec.batch import Batches, PreparedBatch
from keeper.exec.executor import Execution
from keeper.exec.gate import OpenGate
from keeper.exec.tx import Status, TxOutcome, TxRequest
from tests.unit.test_in_flight_scheduler import _candidate

COLLATERAL, DEBT, LIQUIDATOR = "0x" + "cc" * 20, "0x" + "dd" * 20, "0x" + "ee" * 20


def _plan(user: str, *, kept: bool = True, debt_to_cover: int = 100) -> Any:
    path = () if kept else (COLLATERAL, DEBT)
    return SimpleNamespace(user=user, collateral_asset=COLLATERAL, debt_asset=DEBT,
                           liquidator=LIQUIDATOR, debt_to_cover=debt_to_cover,
                           params=SimpleNamespace(keep_collateral=kept, swap_legs=(),
                                                  swap_path=path))


class _Fakes:
    """A planner that plans every account (``sell`` sells its collateral: never batched),
    an executor whose sends wait for ``go``, and batches that record what they carried."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.sent: list[tuple[str, ...]] = []  # the users of each transaction, in send order
        self.turns: list[int] = []  # the ticket of each, in the same order
        self.follow_ups: list[bool] = []  # whether each batch prepared was one of follow-ups
        self.executor = self

    async def plan(self, user: str, account: Any, market: Any, *, round_: Any) -> Any:
        return _plan(user, kept=user != "sell")

    # ---- a plan alone (the executor's part) ----
    async def prepare(self, plan: Any, market: Any, **kw: Any) -> Any:
        request = TxRequest(LIQUIDATOR, b"", 1, label=plan.user, turn=kw.get("turn"))
        return SimpleNamespace(user=plan.user, plan=plan, request=request)

    async def send(self, prepared: Any) -> Execution:
        return (await self._send((prepared.user,), prepared.request.turn, [prepared.plan]))[0]

    # ---- a batch (``Batches``' part) ----
    async def prepare_batch(self, plans: list[Any], market: Any, **kw: Any) -> Any:
        self.follow_ups.append(kw["follow_ups"])  # labelled apart from a batch of firsts
        return SimpleNamespace(plans=plans, turn=kw["turn"])

    async def send_batch(self, prepared: Any) -> list[Execution]:
        return await self._send(tuple(p.user for p in prepared.plans), prepared.turn,
                                prepared.plans)

    async def _send(self, users: tuple[str, ...], turn: Any, plans: list[Any]
                    ) -> list[Execution]:
        await turn.wait()
        self.sent.append(users)
        self.turns.append(turn.ticket)
        turn.done()
        await self.go.wait()
        # The second order of "k2" was taken first by a rival: undone alone in the batch.
        return [Execution(p.user, plan=p, outcome=TxOutcome(Status.MINED, "b", tx_hash="0x1",
                                                            block_number=99))
                if not (p.user == "k2" and i == len(plans) - 1 and len(plans) > 1)
                else Execution(p.user, plan=p, outcome=TxOutcome(
                    Status.SKIPPED, "b", reason="reverted: 47 (in batch 0x1)"))
                for i, p in enumerate(plans)]


def _task(fakes: _Fakes, lane: Lane, candidates: Candidates, size: int) -> ExecuteTask:
    market = SimpleNamespace(reserve_of=lambda asset: SimpleNamespace(
        configuration=SimpleNamespace(debt_ceiling=0)))
    book = SimpleNamespace(market=lambda: market, account=lambda u: None, block_hash="0x05")
    keeper = SimpleNamespace(executor=fakes, planner=fakes, sync=SimpleNamespace(book=book),
                             gate=OpenGate(), decisions=None)
    supervisor = SimpleNamespace(succeeded=lambda *_: None, failed=lambda *_, **__: None)
    task = ExecuteTask(Sending(keeper, supervisor, lane, candidates,  # type: ignore[arg-type]
                               lambda: False), batch_size=size)
    task.batches._batches = SimpleNamespace(  # type: ignore[assignment]
        executor=fakes, prepare=fakes.prepare_batch, send=fakes.send_batch)
    return task


async def test_kept_plans_go_out_together_in_planning_order_their_follow_ups_last() -> None:
    fakes = _Fakes()
    lane = Lane(backoff_max_blocks=64, max_in_flight=16)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("k1", "k2", "k3", "sell", "k4", "k5")])
    task = _task(fakes, lane, candidates, size=3)

    async def follow_up(plan: Any, market: Any, round_: Any, **_: Any) -> Any:
        return _plan(plan.user, debt_to_cover=50) if plan.user == "k2" else None

    task.follow_ups.plan = follow_up  # type: ignore[method-assign,assignment]
    runner = asyncio.create_task(task.run())
    for _ in range(300):
        await asyncio.sleep(0)
    # Three orders a batch; the sale alone, in its turn, after the batch planned before it
    # and before the one planned after it; k2's follow-up behind every first, in a batch of
    # its own even alone (a plain flight would settle it as a first and follow it up again).
    assert fakes.sent == [("k1", "k2", "k3"), ("sell",), ("k4", "k5"), ("k2",)]
    assert fakes.turns == [0, 1, 2, 3] and fakes.follow_ups == [False, False, True]
    assert all(u in task.in_flight for u in ("k1", "k2", "k3", "sell", "k4", "k5"))
    fakes.go.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert not task.in_flight and not lane.full
    # Mined at 99: not due before a scan has seen it, the follow-up's failure does not undo
    # its first's (k2 waits like the others, it does not back off).
    assert not any(lane.due(u, 98) for u in ("k1", "k2", "k3", "sell", "k4", "k5"))
    assert all(lane.due(u, 99) for u in ("k1", "k2", "k3", "sell", "k4", "k5"))
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_a_lone_first_sent_alone_gets_one_follow_up_and_stays_in_flight_for_it() -> None:
    """A batch of one first goes out as a plain flight; its follow-up, held back, goes in a
    batch of its own, and the plain flight plans none of its own (two follow-ups of one
    account: the second reverts on chain)."""
    fakes = _Fakes()
    lane = Lane(backoff_max_blocks=64, max_in_flight=16)
    candidates = Candidates()
    candidates.put(5, [_candidate("k1")])
    task = _task(fakes, lane, candidates, size=4)
    follow_ups: list[str] = []

    async def follow_up(plan: Any, market: Any, round_: Any, **_: Any) -> Any:
        follow_ups.append(plan.user)
        return _plan(plan.user, debt_to_cover=50) if plan.debt_to_cover == 100 else None

    followers: list[str] = []

    async def behind(leader: Any, *_: Any) -> None:
        followers.append(leader.user)  # would plan, and send, a follow-up of its own

    task.follow_ups.plan = follow_up  # type: ignore[method-assign,assignment]
    task.follow_ups.behind = behind  # type: ignore[method-assign,assignment]
    runner = asyncio.create_task(task.run())
    for _ in range(300):
        await asyncio.sleep(0)
    assert fakes.sent == [("k1",), ("k1",)] and follow_ups == ["k1"] and followers == []
    fakes.go.set()
    for _ in range(300):
        await asyncio.sleep(0)
        if not task.in_flight:
            break
    assert not task.in_flight and not lane.full and not task._held
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert fakes.sent == [("k1",), ("k1",)]


async def test_an_account_settles_once_by_its_best_order() -> None:
    """Both orders of "k2" undone: it backs off once, not twice. The first order of "k1"
    undone and its follow-up mined: it counts as liquidated. Each account stays in flight
    till its follow-up's batch is over."""
    fakes = _Fakes()
    follow_ups_out = asyncio.Event()

    async def send_batch(prepared: Any) -> list[Execution]:
        await prepared.turn.wait()
        prepared.turn.done()
        follow_ups = all(p.debt_to_cover == 50 for p in prepared.plans)
        if follow_ups:
            await follow_ups_out.wait()
        failed = TxOutcome(Status.SKIPPED, "b", reason="reverted: 47 (in batch 0x1)")
        mined = TxOutcome(Status.MINED, "b", tx_hash="0x1", block_number=99)
        return [Execution(p.user, plan=p,
                          outcome=mined if follow_ups and p.user == "k1" else failed)
                for p in prepared.plans]

    lane = Lane(backoff_max_blocks=64, max_in_flight=16)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("k1", "k2")])
    task = _task(fakes, lane, candidates, size=4)
    task.batches._batches.send = send_batch  # type: ignore[union-attr,method-assign]

    async def follow_up(plan: Any, market: Any, round_: Any, **_: Any) -> Any:
        return _plan(plan.user, debt_to_cover=50)

    task.follow_ups.plan = follow_up  # type: ignore[method-assign,assignment]
    runner = asyncio.create_task(task.run())
    for _ in range(100):
        await asyncio.sleep(0)
    # The firsts are over (both undone), the follow-ups' batch is not: both still in flight.
    assert set(task.in_flight) == {"k1", "k2"} and not lane.due("k1", 99)
    follow_ups_out.set()
    for _ in range(300):
        await asyncio.sleep(0)
        if not task.in_flight and not lane.due("k2", 5):
            break
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    # One back-off waits a block; a second would have doubled it.
    assert not lane.due("k2", 5) and lane.due("k2", 6)
    assert not lane.due("k1", 98) and lane.due("k1", 99)


async def test_a_batch_cancelled_while_gathering_leaves_nothing_in_flight() -> None:
    fakes = _Fakes()
    planned = fakes.plan

    async def slow(user: str, account: Any, market: Any, *, round_: Any) -> Any:
        if user == "slow":
            await asyncio.Event().wait()  # planning never ends: the task is cancelled in it
        return await planned(user, account, market, round_=round_)

    fakes.plan = slow  # type: ignore[method-assign]
    lane = Lane(backoff_max_blocks=64, max_in_flight=16)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("k1", "slow")])
    task = _task(fakes, lane, candidates, size=4)
    runner = asyncio.create_task(task.run())
    for _ in range(50):
        await asyncio.sleep(0)
    assert "k1" in task.in_flight and not fakes.sent  # gathered, not sent
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    # Nothing of the batch was sent: its account is free and its turn holds no one back.
    assert "k1" not in task.in_flight and lane.due("k1", 5) and fakes.sent == []
    assert task.order.serving == task.order.issued


# ---- reading one receipt for every order -------------------------------------------------------

def _log(event: str, user: str, data: bytes) -> dict[str, Any]:
    ev = artifacts.ours("FlashLiquidator").abi.event(event)
    topics = [ev.topic0, "0x" + abi_encode(["address"], [user]).hex()]
    if event == "CollateralKept":
        topics += ["0x" + abi_encode(["address"], [a]).hex() for a in (COLLATERAL, DEBT)]
    return {"address": LIQUIDATOR, "topics": topics, "data": "0x" + data.hex()}


async def test_each_order_is_accounted_from_its_own_event_and_a_failed_one_is_skipped() -> None:
    a, b = "0x" + "a1" * 20, "0x" + "b2" * 20
    logs = [_log("CollateralKept", a, abi_encode(["uint256", "uint256"], [100, 7])),
            _log("OrderFailed", b, abi_encode(["bytes"], [
                bytes.fromhex("08c379a0") + abi_encode(["string"], ["47"])])),
            _log("CollateralKept", a, abi_encode(["uint256", "uint256"], [50, 3]))]
    accounted: list[tuple[str, int, list[Any]]] = []

    class Executor:
        def __init__(self) -> None:
            self.sender = SimpleNamespace(execute=self.execute)
            self.rpc = SimpleNamespace(call=self.call)

        async def execute(self, request: TxRequest, still_wanted: Any) -> TxOutcome:
            return TxOutcome(Status.MINED, request.label, tx_hash="0xb", block_number=9,
                             gas_used=900, effective_gas_price=1)

        async def call(self, method: str, params: list[Any]) -> Any:
            assert method == "eth_getTransactionReceipt" and params == ["0xb"]
            return {"status": "0x1", "logs": logs}

        def recheck(self, *_: Any) -> bool:
            return True

        def forget(self, label: str) -> None:
            pass

        async def account_for(self, user: str, plan: Any, outcome: TxOutcome, predicted: int,
                              market: Any, receipt: Any) -> Execution:
            assert outcome.gas_used is not None
            accounted.append((user, outcome.gas_used, receipt["logs"]))
            return Execution(user, plan=plan, outcome=outcome)

    plans = (_plan(a), _plan(b), _plan(a, debt_to_cover=50))
    request = TxRequest(LIQUIDATOR, b"", 1, label="batch")
    out = await Batches(Executor()).send(  # type: ignore[arg-type]
        PreparedBatch(plans, request, 900, SimpleNamespace()))  # type: ignore[arg-type]
    assert [e.user for e in out] == [a, b, a]
    # Two orders mined: each charged half the gas, each seeing only its own event.
    assert [(u, g, lg) for u, g, lg in accounted] == [(a, 450, [logs[0]]), (a, 450, [logs[2]])]
    failed = out[1].outcome
    assert failed is not None and failed.status is Status.SKIPPED and failed.tx_hash is None
    assert failed.reason == "reverted: 47 (in batch 0xb)"


async def test_follow_ups_are_planned_once_every_first_is_out_on_the_accounts_planned() -> None:
    """The round plans its batched firsts one after the other and their follow-ups last
    (planned beside each, they took 70% as much CPU as the firsts in a big crash); a
    first that is over before its follow-up is planned leaves its account in flight till
    then, and then frees it, with a follow-up or without. Each follow-up is planned on the
    account its first was planned on: by then the book holds what the first left."""
    fakes = _Fakes()
    fakes.go.set()  # sends end at once: firsts are over before their follow-ups are planned
    lane = Lane(backoff_max_blocks=64, max_in_flight=16)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("k1", "k2", "k3", "k4", "k5")])
    task = _task(fakes, lane, candidates, size=2)
    mined: set[str] = set()  # accounts whose first the book has applied
    book: Any = task.sending.keeper.sync.book
    book.account = lambda u: ("after", u) if u in mined else ("before", u)
    asked: list[tuple[str, int, bool, Any]] = []

    async def follow_up(plan: Any, market: Any, round_: Any, **kw: Any) -> Any:
        for _ in range(20):
            await asyncio.sleep(0)  # the firsts' sends run, and end, meanwhile
        mined.update(("k1", "k2", "k3", "k4", "k5"))
        asked.append((plan.user, task.order.issued, plan.user in task.in_flight, kw["account"]))
        return _plan(plan.user, debt_to_cover=50) if plan.user == "k2" else None

    task.follow_ups.plan = follow_up  # type: ignore[method-assign,assignment]
    runner = asyncio.create_task(task.run())
    for _ in range(1_000):
        await asyncio.sleep(0)
        if len(fakes.sent) == 4 and not task.in_flight:
            break
    # Three turns for the firsts ([k1, k2], [k3, k4], k5 alone) before any follow-up was
    # planned; each account still in flight when its follow-up was, though its first ended.
    assert asked == [(u, 3, True, ("before", u)) for u in ("k1", "k2", "k3", "k4", "k5")]
    assert fakes.sent == [("k1", "k2"), ("k3", "k4"), ("k5",), ("k2",)]
    assert fakes.follow_ups == [False, False, True]
    assert not task.in_flight and not task._held and not lane.full
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_a_batch_of_follow_ups_goes_out_as_soon_as_it_is_full() -> None:
    """Follow-ups go out in batches as the round plans them, not once they all are: planned
    all first, the 10,000-borrower crash's held the sends up ~1.5 s with a core busy."""
    fakes = _Fakes()
    lane = Lane(backoff_max_blocks=64, max_in_flight=16)
    candidates = Candidates()
    candidates.put(5, [_candidate(u) for u in ("k1", "k3", "k4", "k5", "k6")])
    task = _task(fakes, lane, candidates, size=2)
    sent_when_planned: list[tuple[str, list[tuple[str, ...]]]] = []

    async def follow_up(plan: Any, market: Any, round_: Any, **kw: Any) -> Any:
        for _ in range(20):
            await asyncio.sleep(0)  # the batches handed out meanwhile take their turns
        sent_when_planned.append((plan.user, list(fakes.sent)))
        return _plan(plan.user, debt_to_cover=50)

    task.follow_ups.plan = follow_up  # type: ignore[method-assign,assignment]
    runner = asyncio.create_task(task.run())
    for _ in range(1_000):
        await asyncio.sleep(0)
        if len(fakes.sent) == 6:
            break
    firsts = [("k1", "k3"), ("k4", "k5"), ("k6",)]
    # The follow-ups of k1 and k3 went out before k5's was planned; k6's alone, last.
    assert sent_when_planned[3] == ("k5", [*firsts, ("k1", "k3")])
    assert fakes.sent == [*firsts, ("k1", "k3"), ("k4", "k5"), ("k6",)]
    assert fakes.follow_ups == [False, False, True, True, True]
    fakes.go.set()
    for _ in range(200):
        await asyncio.sleep(0)
    assert not task.in_flight and not task._held and not lane.full
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
