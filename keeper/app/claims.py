"""A liquidation sent under its claim: the one place the app tells the send gate
(``keeper.exec.gate``) which opportunity the transactions it is asked about are for."""

from __future__ import annotations

from keeper.app.root import Keeper
from keeper.domain.claim import Claim
from keeper.domain.plan import Rejection, RejectionReason
from keeper.exec.executor import Execution, Prepared
from keeper.exec.gate import claiming


def standing_by(keeper: Keeper, user: str) -> Execution | None:
    """A standby of a keeper network plans nothing: ``user`` is due again on the next block
    (``not_before`` 0: no back-off), ready for the moment this replica takes the lease."""
    if keeper.gate.may_send():
        return None
    return Execution(user, rejection=Rejection(user, RejectionReason.STANDBY,
                                               "this replica does not hold the sender lease",
                                               not_before=0))


async def send_claimed(keeper: Keeper, prepared: Prepared, block: int) -> Execution:
    """``keeper.executor.send(prepared)`` as the claim (account, debt asset, ``block``); the
    claim is released when the liquidation is over, however it ended."""
    assert keeper.executor is not None
    claim = Claim(prepared.user, prepared.plan.debt_asset, block)
    try:
        with claiming(claim):
            return await keeper.executor.send(prepared)
    finally:
        await keeper.gate.release(claim)
