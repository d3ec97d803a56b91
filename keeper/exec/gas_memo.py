"""The gas liquidations of one shape used, so that a comfortable plan skips its trace.

The executor traces every plan before it is sent (``debug_traceCall`` at the plan's stamp):
one round trip, ~1.9 ms of the ~6 ms from detection to the node on the quiet reaction bench.
A liquidation's gas is set by its shape (contract, collateral and debt reserves, flash loan or
own funds, swap route) more than by its size, so the figures traced or mined for one shape
price the next. It is used only where a miss cannot make a send lose: the plan's gross
profit must pay twice the remembered gas (a figure up to 100% short still leaves it
profitable), and the sender's simulation checks the call at the limit it implies (a figure
too short fails there, and the executor traces it then). Marginal plans keep the trace.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from keeper.domain.plan import Plan
from keeper.protocols.aave_v3.liquidator import contract_legs

_KEPT = 1_024  # shapes remembered (a market has a few hundred pairs × routes)
_SEEN = 8  # figures remembered per shape

Shape = tuple[Any, ...]


def shape(plan: Plan) -> Shape:
    """What sets a liquidation's gas: our contract, the pair, where the debt asset comes from,
    whether the collateral is kept, and each leg's hops (venue, pool, fee) as the contract
    runs them, not the amounts."""
    params = plan.params
    pool = params.flash_pool
    legs = tuple(tuple((int(h.venue), h.token_in, h.token_out, h.fee) for h in leg.hops)
                 for leg in contract_legs(params))
    return (plan.liquidator, params.collateral_asset, params.debt_asset, params.flash_loan,
            params.keep_collateral, None if pool is None else (pool.pair_token, pool.fee), legs)


class GasMemo:
    """The most gas any of the last few liquidations of each shape used, traced or mined
    (shapes bounded, least recent out).

    The most, not the last: within one shape the figure moves with what each call touches
    (a balance emptied or set, a reserve's first touch in the block): 434-528k gas over
    1,764 plans of the 10,000-borrower crash's offline run. And a call needs more gas than
    it uses (refunds come at the end, a callback keeps 1/64 back), which the 130% limit
    covers only from an upper figure."""

    def __init__(self) -> None:
        self._gas: OrderedDict[Shape, deque[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._gas)

    def usable(self, plan: Plan) -> int | None:
        """The remembered gas of ``plan``'s shape when the plan is comfortable enough to go
        without a trace: its gross profit pays twice that gas at the plan's price, so a
        figure up to 100% short still leaves it profitable. Else None (trace it)."""
        seen = self._gas.get(shape(plan))
        if not seen or plan.gas_estimate <= 0:
            return None
        gas = max(seen)
        # The plan's gas cost scaled from its modelled gas to the remembered figure.
        twice_the_gas = 2 * plan.gas_cost * gas
        return gas if plan.gross_profit * plan.gas_estimate >= twice_the_gas else None

    def learn(self, plan: Plan, gas: int) -> None:
        """``plan``'s shape used ``gas`` (a trace at its stamp, or its receipt)."""
        if gas <= 0:
            return
        key = shape(plan)
        seen = self._gas.get(key)
        if seen is None:
            seen = self._gas[key] = deque(maxlen=_SEEN)
        seen.append(gas)
        self._gas.move_to_end(key)
        while len(self._gas) > _KEPT:
            self._gas.popitem(last=False)
