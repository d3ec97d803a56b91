"""The sending side of a backrun: our liquidation right after a pending oracle update.

keeper.pipeline.backrun finds and plans the liquidation a pending price update makes
possible; here it becomes a request that follows the oracle transaction (``TxRequest.after``)
with its exact fees (``backrun_fees``). The ``Sender`` simulates the pair [oracle tx, ours]
with ``eth_simulateV1`` and sends only if ours succeeds after it. With the same fees, fee
ordering puts ours behind the oracle tx (equal tips keep arrival order); a higher tip would
put ours first, where it reverts.
"""

from __future__ import annotations

from dataclasses import replace

from keeper.chain.types import PendingTx
from keeper.domain.fees import Fees
from keeper.exec.executor import Prepared


def backrun_fees(leader: Fees) -> Fees:
    """The fees of a transaction that must land right after ``leader``: exactly its fees.

    The same tip *and* fee cap give the same effective tip at any base fee, so fee ordering
    cannot put ours first (where it reverts) and equal bids keep arrival order. The sender
    refuses them when the fee cap is below the next base fee (the leader cannot be included
    then either) or above our configured caps.
    """
    return Fees(leader.max_fee_per_gas, leader.max_priority_fee_per_gas)


def behind(prepared: Prepared, leader: PendingTx) -> Prepared:
    """``prepared`` as a backrun of ``leader``: sent after it, in its block, at its fees."""
    request = replace(prepared.request, after=leader, exact_fees=backrun_fees(leader.fees),
                      label=f"backrun {prepared.user}")
    return replace(prepared, request=request)
