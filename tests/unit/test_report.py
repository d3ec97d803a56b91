"""The one-pass report's reasons: "skipped: " once, and a sent transaction's fate by name."""

from __future__ import annotations

from keeper.domain.plan import Rejection, RejectionReason
from keeper.exec.executor import Execution
from keeper.exec.tx import Status, TxOutcome

USER = "0x" + "ab" * 20


def test_a_skipped_send_gives_its_reason_without_the_status() -> None:
    # The report prefixes "skipped: "; issue 9 printed "skipped: skipped: simulation: ...".
    skipped = Execution(USER, outcome=TxOutcome(Status.SKIPPED, "liquidate",
                                                "simulation: reverted: MustNotLeaveDust"))
    assert skipped.skipped_reason == "simulation: reverted: MustNotLeaveDust"


def test_a_sent_transaction_and_a_rejection_say_what_they_are() -> None:
    dropped = Execution(USER, outcome=TxOutcome(Status.DROPPED, "liquidate", "timeout"))
    assert dropped.skipped_reason == "dropped: timeout"
    rejected = Execution(USER, rejection=Rejection(USER, RejectionReason.UNPROFITABLE, "net 3"))
    assert rejected.skipped_reason == "unprofitable: net 3"
    assert Execution(USER, outcome=TxOutcome(Status.MINED, "liquidate")).skipped_reason == ""
