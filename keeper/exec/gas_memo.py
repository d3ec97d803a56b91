"""The gas liquidations of one shape used, so that a comfortable plan skips its trace.

The executor traces every plan before it is sent (``debug_traceCall`` at the plan's stamp):
one round trip, ~1.9 ms of the ~6 ms from detection to the node on the quiet reaction bench.
A liquidation's gas is set by its shape (contract, collateral and debt reserves, flash loan or
own funds, swap route) more than by its size, so the figures traced or mined for one shape
price the next. It is used only where a miss cannot make a send lose: the plan's gross
profit must pay twice the remembered gas (a figure up to 100% short still leaves it
profitable), and the sender's simulation checks the call at the limit it implies (a figure
too short fails there, and the executor traces it then). Marginal plans keep the trace.
``BatchGasMemo`` does the same for ``liquidateBatch``, by the gas an order of a batch took.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

from keeper.domain.plan import Plan
from keeper.protocols.aave_v3.liquidator import contract_legs

_KEPT = 1_024  # shapes remembered (a market has a few hundred pairs × routes)
_SEEN = 8  # figures remembered per shape
MIN_REMEMBERED_ORDERS = 4  # a smaller batch is traced: its 30% margin is under an order's gas

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


def pays_twice(plan: Plan, gas: int) -> bool:
    """Whether ``plan``'s gross profit pays twice ``gas`` at its price: its modelled gas cost
    scaled from its modelled gas to that figure (a plan without a model never does)."""
    return plan.gas_estimate > 0 and plan.gross_profit * plan.gas_estimate >= 2 * plan.gas_cost * gas


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
        if not seen:
            return None
        gas = max(seen)
        return gas if pays_twice(plan, gas) else None

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


class BatchGasMemo:
    """The most gas an order of a ``liquidateBatch`` took, over the last few batches traced,
    by liquidator contract: a batch of orders comfortable enough goes on it without a trace.

    In a crash every batch was traced, then simulated: two runs of ~2.25M gas a batch of ten
    on the node, one after the other, the trace ~22 ms (p50) of a busy anvil in the
    600M-gas 10,000 race, as long as the simulation. A batch's gas is its orders' (each
    ~195-230k: Aave's ``liquidationCall``, an approval, a transfer), so a batch is priced at
    its size times the most an order took; the figure comes from traces only (a receipt's
    gas is net of refunds, less than the call needs). The sender checks the call at the
    limit this implies, 130% of the figure, a margin the orders share (each frame gets what
    the ones before it left), where a batch's orders differ by a few percent (2.23M and
    2.27M gas, the medians of batches of ten over four pairs and over seven). A simulation
    refused on a remembered figure is traced, and sent again if the trace needs more
    (``Batches.send``). A figure short by more than the margin would leave the last orders
    without gas: each undone alone (``OrderFailed``), its account planned again.

    Only a batch of ``MIN_REMEMBERED_ORDERS`` or more goes on it: the margin is then worth an
    order of an account holding many reserves (~1.7 times the usual). A batch of two in the
    busy 10,000 race did not have it (a 700k limit where one order needed ~420k): the heavy
    order failed alone inside a batch mined a block before, and the batch that tried it
    again ran out of gas on chain, its simulation having passed on the block before."""

    def __init__(self) -> None:
        self._per_order: dict[str, deque[int]] = {}

    def usable(self, plans: Sequence[Plan]) -> int | None:
        """The gas of a batch of ``plans`` (``MIN_REMEMBERED_ORDERS`` or more) when every
        plan's gross profit pays twice its share at the remembered figure (as
        ``GasMemo.usable``); else None (trace it)."""
        seen = self._per_order.get(plans[0].liquidator) if plans else None
        if not seen or len(plans) < MIN_REMEMBERED_ORDERS:
            return None
        per_order = max(seen)
        return per_order * len(plans) if all(pays_twice(p, per_order) for p in plans) else None

    def learn(self, plans: Sequence[Plan], gas: int) -> None:
        """A batch of ``plans`` took ``gas`` (a trace)."""
        if gas <= 0 or not plans:
            return
        seen = self._per_order.setdefault(plans[0].liquidator, deque(maxlen=_SEEN))
        seen.append(-(-gas // len(plans)))
