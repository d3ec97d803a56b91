"""A send the gate refused (another replica holds the sender lease) is not the account's fault:
the account does not back off, so a standby that becomes the holder plans it at once."""

from __future__ import annotations

from keeper.app.inflight import Lane
from keeper.exec.tx import Status, TxOutcome

USER = "0x" + "ab" * 20


def refused(*, fenced: bool) -> TxOutcome:
    return TxOutcome(Status.DROPPED, f"liquidate {USER}",
                     "rejected by node: not clear to send: this replica does not hold the lease",
                     nonce=7, fenced=fenced)


def test_a_gate_refusal_does_not_back_the_account_off() -> None:
    lane = Lane(64)
    for _ in range(3):  # a standby refused three times running
        assert lane.settle(USER, 100, refused(fenced=True)) is None
    assert lane.due(USER, 101)


def test_another_refusal_by_the_node_still_backs_off() -> None:
    lane = Lane(64)
    assert lane.settle(USER, 100, refused(fenced=False)) is None
    assert not lane.due(USER, 100)
