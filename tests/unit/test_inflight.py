"""The lane shared by the execute and backrun tasks: one liquidation in flight, back-off per account."""

from __future__ import annotations

import asyncio

from keeper.app.inflight import Lane
from keeper.exec.executor import Execution
from keeper.exec.tx import Status, TxOutcome


def outcome(status: Status, tx_hash: str | None = None, block: int | None = None) -> TxOutcome:
    return TxOutcome(status=status, label="liquidation", tx_hash=tx_hash, block_number=block)


def test_a_skipped_account_waits_1_2_4_blocks_up_to_the_cap() -> None:
    lane = Lane(backoff_max_blocks=4)
    assert lane.due("a", 0)
    waits = []
    block = 100
    for _ in range(5):
        assert lane.settle("a", block, outcome(Status.SKIPPED)) is None
        wait = next(w for w in range(1, 10) if lane.due("a", block + w))
        waits.append(wait)
        block += wait
    assert waits == [1, 2, 4, 4, 4]


def test_an_account_the_chain_overtook_is_due_next_block_and_keeps_its_back_off() -> None:
    # A simulation that pays less than the plan (pending arbitrage, a moving pool) says the
    # market moved, not that the account fails: once it settles the account must be tried.
    lane = Lane(backoff_max_blocks=64, clock=lambda: 0.0)
    lane.settle("a", 100, outcome(Status.SKIPPED))
    lane.settle("a", 101, outcome(Status.SKIPPED))  # two failures of its own: waits 2
    for block in range(103, 120):
        assert lane.due("a", block)
        lane.settle("a", block, outcome(Status.SKIPPED), overtaken=True)
        assert not lane.due("a", block) and lane.due("a", block + 1)
    # Its own next failure doubles from where its own count stood (2 -> 4 blocks).
    lane.settle("a", 120, outcome(Status.SKIPPED))
    assert not lane.due("a", 123) and lane.due("a", 124)


def test_a_node_error_retries_next_block_without_growing_the_back_off() -> None:
    now = [0.0]
    lane = Lane(backoff_max_blocks=64, clock=lambda: now[0])
    for block in range(10, 20):
        lane.retry_next("a", block)
        assert lane.due("a", block + 1)
    # On a quiet chain, due after the time back-off's first step.
    assert not lane.due("a", 19)
    now[0] = 2.0
    assert lane.due("a", 19)


def test_an_overtaken_execution_is_one_the_profit_floor_refused() -> None:
    floor = TxOutcome(Status.SKIPPED, "liquidation",
                      "simulation: reverted: InsufficientProfit(488778, 631472)")
    other = TxOutcome(Status.SKIPPED, "liquidation", "simulation: reverted: 0x4e487b71")
    assert Execution("a", outcome=floor).overtaken
    assert not Execution("a", outcome=other).overtaken
    assert not Execution("a").overtaken


def test_mined_is_due_from_a_scan_of_its_block_and_forgets_the_failures() -> None:
    lane = Lane(backoff_max_blocks=64)
    lane.back_off("a", 10)
    lane.back_off("a", 11)  # failures: 2, due at 13
    assert lane.settle("a", 13, outcome(Status.MINED, "0x1", block=15)) == 15
    assert not lane.due("a", 14) and lane.due("a", 15)
    lane.back_off("a", 15)
    assert lane.due("a", 16)  # one failure since the liquidation: one block


def test_a_backrun_that_sent_nothing_does_not_back_off() -> None:
    lane = Lane(backoff_max_blocks=64)
    assert lane.settle("a", 5, outcome(Status.SKIPPED), back_off_unsent=False) is None
    assert lane.due("a", 5)
    assert lane.settle("a", 5, outcome(Status.DROPPED, "0x2"), back_off_unsent=False) is None
    assert not lane.due("a", 5) and lane.due("a", 6)


def test_keep_only_forgets_accounts_no_longer_liquidatable() -> None:
    lane = Lane(backoff_max_blocks=64)
    lane.back_off("a", 1)
    lane.back_off("b", 1)
    lane.keep_only({"b"})
    assert lane.due("a", 1) and not lane.due("b", 1)


async def test_one_in_flight_marked_while_held() -> None:
    lane = Lane(backoff_max_blocks=64)
    async with lane.held():
        assert lane.busy
        with lane.flying("a"):
            assert lane.user == "a"
        assert lane.user is None
        idle = asyncio.create_task(lane.idle())
        await asyncio.sleep(0)
        assert not idle.done()
    await asyncio.wait_for(idle, 1)
    assert not lane.busy


def test_an_account_in_a_grace_period_is_due_every_block_and_keeps_its_back_off() -> None:
    lane = Lane(backoff_max_blocks=64)
    lane.back_off("a", 10)
    lane.back_off("a", 11)  # failures: 2, due at 13
    # Rejected for a grace period ending at t=5000: due on the next block, each block, so
    # the first block after the period is not missed; the back-off does not grow.
    for block in (13, 14, 15, 16):
        assert lane.due("a", block)
        assert lane.settle("a", block, None, not_before=5_000) is None
        assert not lane.due("a", block) and lane.due("a", block + 1)
        assert lane.waiting_until("a") == 5_000
    lane.back_off("a", 17)  # the third failure since: 4 blocks
    assert not lane.due("a", 20) and lane.due("a", 21)
    assert lane.waiting_until("a") is None
