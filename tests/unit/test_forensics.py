"""keeper.app.forensics: one reason for each liquidation the keeper did not take; and the
decision record's file (keeper.app.decisions)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from keeper.app.decisions import Decision, DecisionLog, read_decisions
from keeper.app.forensics import OurTx, TheirLiquidation, Verdict, classify, tally
from keeper.domain.plan import Rejection, RejectionReason

USER = "0x" + "aa" * 20
GWEI = 10**9


def ev(block: int = 10, *, index: int = 0, tip: int | None = 2 * GWEI) -> TheirLiquidation:
    return TheirLiquidation(block, 1_000 + block, "0x" + "11" * 32, index, USER, "0xnaive",
                            "0xweth", "0xusdc", 100, tip)


def rec(kind: str, block: int, at: float | None = None, **data: Any) -> Decision:
    return Decision(block, USER, kind, 1_000.0 + block if at is None else at, data)


def halt(block: int, *codes: str) -> Decision:
    return Decision(block, "", "halt", 0.0, {"codes": list(codes), "messages": [f"{c} on"
                                                                              for c in codes]})


def verdict(records: list[Decision], *, halts: list[Decision] | None = None,
            ours: dict[str, OurTx] | None = None, event: TheirLiquidation | None = None
            ) -> Verdict:
    return classify(event or ev(), records, halts or [], ours or {})


SENT = rec("sent", 9, tx_hash="0xOURS", nonce=4, tip=GWEI)


def test_never_flagged_is_not_seen_in_time() -> None:
    v = verdict([])
    assert (v.reason, v.detail) == ("not_seen", "never flagged before block 10")


def test_flagged_only_at_or_after_the_block_is_late_by_blocks_and_ms() -> None:
    v = verdict([rec("flagged", 11, at=1_010.25)])
    assert v.reason == "not_seen"
    assert v.detail == "flagged at block 11, 2 block(s) late (250 ms after block 10's time)"


def test_cleared_before_the_block_is_not_seen() -> None:
    v = verdict([rec("flagged", 5), rec("cleared", 7)])
    assert (v.reason, v.detail) == ("not_seen", "not a candidate since block 7 before block 10")


def test_flagged_but_never_planned_is_queued() -> None:
    v = verdict([rec("flagged", 8)])
    assert (v.reason, v.detail) == ("queued", "flagged at block 8, not planned before block 10")


def test_unprofitable_carries_the_figure() -> None:
    v = verdict([rec("flagged", 8),
                 rec("skipped", 9, reason="unprofitable", detail="net -4 < 1",
                     best_net_usd=-412_345_678)])
    assert (v.reason, v.detail) == ("unprofitable",
                                    "best net profit -4.12 USD; net -4 < 1 (planned at block 9)")


def test_another_rejection_is_skipped_with_its_reason() -> None:
    v = verdict([rec("flagged", 8), rec("skipped", 9, reason="no_route", detail="WETH/USDC")])
    assert (v.reason, v.detail) == ("skipped", "no_route: WETH/USDC (at block 9)")


def test_a_rejection_after_the_block_does_not_count() -> None:
    v = verdict([rec("flagged", 8), rec("skipped", 10, reason="unprofitable")])
    assert v.reason == "queued"


def test_planned_not_yet_sent_is_in_flight() -> None:
    v = verdict([rec("flagged", 8), rec("planned", 9, net_usd=5)])
    assert (v.reason, v.detail) == ("in_flight", "planned at block 9, not mined before block 10")


def test_our_tx_pending_at_the_block_is_in_flight() -> None:
    v = verdict([rec("flagged", 8), rec("planned", 8), SENT],
                ours={"0xours": OurTx("0xours", None)})
    assert v.reason == "in_flight"
    assert v.detail == ("our 0xours (nonce 4, tip 1.000 gwei) handed out at head 9, "
                        "pending at block 10")


def test_our_tx_mined_later_was_pending_too() -> None:
    v = verdict([rec("flagged", 8), SENT], ours={"0xours": OurTx("0xours", 12, 0, GWEI)})
    assert v.reason == "in_flight"


def test_lost_the_race_to_a_higher_fee_in_the_same_block() -> None:
    v = verdict([rec("flagged", 8), SENT],
                ours={"0xours": OurTx("0xours", 10, 3, GWEI)}, event=ev(index=1, tip=5 * GWEI))
    assert v.reason == "lost_race_fee"
    assert v.detail == ("theirs 0x11111111 at index 1 tip 5.000 gwei, ours 0xours at index 3 "
                        "tip 1.000 gwei")


def test_lost_the_race_at_an_equal_fee_by_being_later_in_the_block() -> None:
    v = verdict([rec("flagged", 8), SENT],
                ours={"0xours": OurTx("0xours", 10, 3, GWEI)}, event=ev(index=1, tip=GWEI))
    assert v.reason == "lost_race_order"


def test_ours_first_in_the_block_and_theirs_after_is_after_ours() -> None:
    v = verdict([rec("flagged", 8), SENT],
                ours={"0xours": OurTx("0xours", 10, 0, GWEI, ok=True)}, event=ev(index=2))
    assert v.reason == "after_ours"


def test_a_tx_that_ended_before_the_block_is_not_in_flight() -> None:
    v = verdict([rec("flagged", 8), SENT,
                 rec("outcome", 9, status="dropped", reason="timeout", hashes=["0xOURS"])],
                ours={"0xours": OurTx("0xours", None)})
    assert (v.reason, v.detail) == ("failed", "ours 0xOURS dropped at block 9: timeout")


def test_our_liquidation_mined_before_leaves_the_rest_to_them() -> None:
    v = verdict([rec("flagged", 6), rec("sent", 7, tx_hash="0xa"),
                 rec("outcome", 8, status="mined", hashes=["0xa"])],
                ours={"0xa": OurTx("0xa", 8, 0, GWEI, ok=True)})
    assert v.reason == "after_ours"


def test_held_by_the_oracle_guard() -> None:
    v = verdict([rec("held", 8, assets=["0xweth"])])
    assert (v.reason, v.detail) == ("oracle_guard", "held since block 8 (0xweth halted)")
    assert verdict([rec("held", 6, assets=["0xweth"]), rec("released", 7)]).reason == "not_seen"


def test_a_refusal_of_the_kill_switch_or_the_gas_budget() -> None:
    def refused(why: str) -> str:
        return verdict([rec("flagged", 8),
                        rec("outcome", 9, status="skipped", reason=why, hashes=[])]).reason
    assert refused("kill switch engaged (circuit breaker)") == "breaker"
    assert refused("circuit breaker open after 3 consecutive failures") == "breaker"
    assert refused("gas budget exhausted: 5 wei spent") == "gas_budget"
    assert refused("simulation: reverted") == "not_sent"


def test_a_simulation_over_the_block_before_theirs_lost_to_their_pending_tx() -> None:
    def simulated(head: int) -> Verdict:
        return verdict([rec("flagged", 8), rec("planned", 8),
                        Decision(8, USER, "outcome", 0.0, {"status": "skipped",
                                 "reason": "simulation: reverted: 45", "hashes": []}, head)])
    v = simulated(9)
    assert (v.reason, v.detail) == ("lost_race_pending",
                                    "our simulation on the pending state over block 9 reverted: 45")
    assert simulated(8).reason == "not_sent"
    # Simulated once block 10 (theirs) had come: no word on block 10; it was still in flight.
    assert simulated(10).reason == "in_flight"


def test_a_verdict_reached_after_their_block_came_is_no_word_on_it() -> None:
    late = Decision(9, USER, "skipped", 0.0, {"reason": "healthy"}, head=10)
    assert verdict([rec("flagged", 8), late]).reason == "queued"


def test_a_halt_in_force_explains_a_flagged_account_with_no_decision() -> None:
    assert verdict([rec("flagged", 8)], halts=[halt(5, "kill_switch")]).reason == "breaker"
    assert verdict([rec("flagged", 8)], halts=[halt(5, "gas_budget")]).reason == "gas_budget"
    assert verdict([rec("flagged", 8)], halts=[halt(5, "gas_budget"), halt(7)]).reason == "queued"
    assert verdict([rec("flagged", 8)], halts=[halt(10, "kill_switch")]).reason == "queued"


def test_the_counts_add_up() -> None:
    verdicts = [Verdict("queued", ""), Verdict("not_seen", ""), Verdict("queued", "")]
    counts = tally(verdicts)
    assert counts == {"queued": 2, "not_seen": 1}
    assert sum(counts.values()) == len(verdicts)


def test_the_record_survives_in_sqlite_and_is_pruned(tmp_path: Path) -> None:
    path = tmp_path / "keeper.sqlite"

    async def go() -> None:
        log = DecisionLog(path, keep_blocks=100, clock=lambda: 5.0)
        log.scanned(10, [USER, "0xb"], [USER, "0xb"])
        log.scanned(11, [USER], [])
        log.verdict(11, USER, Rejection(USER, RejectionReason.UNPROFITABLE, "x",
                                        best_net_profit_usd=-3))
        log.halts(11, ["kill_switch"], ["kill switch engaged"])
        log.halts(12, ["kill_switch"], ["kill switch engaged"])  # no change: no record
        await log.flush()
        assert log.pending == []
        log.add("flagged", 300, "0xc")  # 300 - 100: everything below 200 goes
        await log.close()

    asyncio.run(go())
    got = read_decisions(path)
    assert [(d.block, d.kind) for d in got] == [(300, "flagged")]


def test_the_record_reads_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "keeper.sqlite"

    async def go() -> None:
        log = DecisionLog(path, clock=lambda: 5.0)
        log.scanned(10, [USER], [USER])
        log.scanned(11, [], [])
        log.verdict(11, USER, Rejection(USER, RejectionReason.UNPROFITABLE, "x",
                                        best_net_profit_usd=-3))
        log.halts(11, ["kill_switch"], ["kill switch engaged"])
        await log.close()

    asyncio.run(go())
    got = read_decisions(path)
    assert [(d.block, d.user, d.kind) for d in got] == [
        (10, USER, "flagged"), (11, USER, "cleared"), (11, USER, "skipped"), (11, "", "halt")]
    assert got[2].data == {"reason": "unprofitable", "detail": "x", "best_net_usd": -3}
    assert got[3].data == {"codes": ["kill_switch"], "messages": ["kill switch engaged"]}
