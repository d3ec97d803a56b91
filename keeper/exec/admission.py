"""Fee admission: may a simulated request be sent now, with which gas limit and fees?

No IO: the caller passes the simulation and ``now``. A request is refused when its fees break
the caps (or, for exact fees, fall below the base fee), when gas at those fees would eat the
expected profit, when a guard refuses the expected cost, or when the account cannot pay the
worst case (gas limit × fee cap + value).
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.domain.fees import FeePolicy, Fees, gas_cost, initial_fees, is_profitable
from keeper.exec.guards import Guards, Refusal
from keeper.exec.simulate import Simulation
from keeper.exec.tx import TxRequest

INCLUDING_BLOCK_GAS_PERCENT = 15
INCLUDING_BLOCK_GAS_MAX = 200_000
"""Room over a limit the call was checked at (``TxRequest.known_gas``): a share of the known
gas, at most the cap. The check ran at the head's stamp, or in the pending block behind ours
at its stamp, where a reserve already updated at that stamp skips its interest update (Aave's
``updateState`` returns early; a Uniswap V2 pair's price accumulators, a V3 pool's observation
likewise); the first of ours to touch it in the including block pays for it: 8,918 gas for
USDC's in a supply (tests/integration/test_including_block_gas.py), a few tens of thousands
for a liquidation's reserves and pools (a fault test's crash: a liquidation sent with a 745k
limit that passes on block 701's state at 701's stamp ran out of gas first in block 702). The
cap keeps a batch's limit close to its gas: a block takes a transaction only if its limit fits
what is left."""


@dataclass(frozen=True, slots=True)
class Admission:
    """What to send with: the request passed every check."""

    gas_limit: int
    fees: Fees
    cost: int  # wei: simulated gas at these fees and the next block's base fee


def admit(req: TxRequest, sim: Simulation, policy: FeePolicy, guards: Guards, *,
          gas_margin_percent: int, now: float) -> Admission | Refusal:
    """The gas limit and fees for ``req`` after a successful ``sim``, or why not to send it."""
    gas_limit = max(req.gas_limit or 0, sim.checked_limit,
                    sim.gas * (100 + gas_margin_percent) // 100)
    if req.known_gas is not None:
        # Passed at its limit at the head's stamp (or the pending block's, behind ours): the
        # including block may need more (see above).
        gas_limit += min(req.known_gas * INCLUDING_BLOCK_GAS_PERCENT // 100,
                         INCLUDING_BLOCK_GAS_MAX)
    if req.exact_fees is not None:
        fees = req.exact_fees
        if fees.max_fee_per_gas < sim.base_fee:
            return Refusal("fee_cap", f"fee cap {fees.max_fee_per_gas} wei below the "
                           f"base fee {sim.base_fee} wei")
        if not policy.allows(fees):
            return Refusal("fee_cap", f"fees {fees} exceed the configured caps")
    else:
        fees = initial_fees(policy, sim.base_fee, req.expected_profit_native, sim.gas)
    cost = gas_cost(sim.gas, fees, sim.base_fee)
    if not is_profitable(req.expected_profit_native, sim.gas, fees, sim.base_fee):
        return Refusal("unprofitable", f"unprofitable: gas {cost} wei ≥ expected "
                       f"profit {req.expected_profit_native} wei")
    refusal = guards.refusal(cost, now)
    if refusal is not None:
        return refusal
    worst = gas_limit * fees.max_fee_per_gas + req.value
    if worst > sim.balance:
        return Refusal("balance", f"balance {sim.balance} wei < worst-case cost {worst} wei")
    return Admission(gas_limit, fees, cost)
