"""Several liquidations in one transaction: ``FlashLiquidator.liquidateBatch``.

In a crash the daemon's sends are the bottleneck, not its planning: each liquidation sent on
its own is traced, simulated, signed and handed out, one after the other in nonce order (~12 ms
a send on a loaded node in the 10,000-borrower race: ~95 sends a second, less than the ~140
liquidations a 60M-gas block holds). A batch pays that once for all its orders. Only orders
that keep their collateral go in one (they trade in no pool, so none changes what another
gets, and the contract runs each in its own frame: one that a rival took first is undone
alone, ``OrderFailed``; the batch reverts only when none succeeds).

``Batches.prepare`` traces the batch's gas (or takes it from the figures of the batches traced
before: ``BatchGasMemo``) and builds its request; ``Batches.send`` has the sender see it
through (traced and sent once more, behind the sends planned since, when a remembered figure
fell short) and returns one ``Execution`` per order: the ones mined with what each made (its
``CollateralKept`` event; the gas paid split evenly between them), the ones undone as skipped
with the contract's reason.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from keeper.domain.account import Market
from keeper.domain.plan import Plan
from keeper.exec.executor import (
    Execution,
    LiquidationExecutor,
    gas_fields,
    requeued,
    to_native,
)
from keeper.exec.gas_memo import BatchGasMemo
from keeper.exec.order import Turn
from keeper.exec.simulate import reason_of
from keeper.exec.tx import Status, TxOutcome, TxRequest
from keeper.obs.logging import get_logger
from keeper.protocols.aave_v3.liquidator import batch_results, encode_liquidate_batch

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """Plans that keep their collateral and the one request that carries them all out."""

    plans: tuple[Plan, ...]
    request: TxRequest
    predicted_gas: int
    market: Market
    remembered_gas: bool = False  # priced by ``BatchGasMemo``, not traced

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(p.user for p in self.plans)


class Batches:
    """Batched sends for ``executor`` (the same owner, sender and accounting)."""

    def __init__(self, executor: LiquidationExecutor) -> None:
        self.executor = executor
        self.gas_memo = BatchGasMemo()

    async def prepare(self, plans: Sequence[Plan], market: Market, *,
                      detected_at: float | None = None, flagged_at: float | None = None,
                      block_seen_at: float | None = None, turn: Turn | None = None,
                      follow_ups: bool = False) -> PreparedBatch:
        """The batch of ``plans`` (each keeps its collateral, all for one liquidator) with
        its gas traced at the plans' timestamp; the latency stamps are the earliest plan's.
        ``follow_ups``: second liquidations, labelled apart (an account may lead a batch of
        firsts and one of follow-ups at once, and a label keys the request's checks)."""
        first = plans[0]
        data = encode_liquidate_batch([p.params for p in plans])
        modelled = sum(p.gas_estimate for p in plans)
        remembered = self.gas_memo.usable(plans)
        if remembered is not None:
            gas, traced = remembered, True
        else:
            gas, traced = await self.executor.predict_gas(first.liquidator, data,
                                                          first.timestamp, modelled)
            if traced:
                self.gas_memo.learn(plans, gas)
        native_price = market.prices.get(self.executor.native_asset, 0)
        gas_limit, known_gas = gas_fields(gas, traced, modelled)
        request = TxRequest(
            to=first.liquidator,
            data=data,
            expected_profit_native=sum(to_native(p.gross_profit_usd, native_price)
                                       for p in plans),
            gas_limit=gas_limit,
            known_gas=known_gas,
            label=f"liquidate batch of {len(plans)}{' follow-ups' if follow_ups else ''} "
                  f"from {first.user}",
            detected_at=detected_at,
            flagged_at=flagged_at,
            block_seen_at=block_seen_at,
            turn=turn,
            shares=frozenset(),  # kept collaterals outside isolation: see ``touches``
        )
        for plan in plans:
            self.executor.log_planned(plan, batch=request.label)
        return PreparedBatch(tuple(plans), request, gas, market,
                             remembered_gas=remembered is not None)

    async def send(self, batch: PreparedBatch) -> list[Execution]:
        """Send ``batch``, see it through, and say what became of each of its orders."""
        executor = self.executor
        request = batch.request
        still_wanted = functools.partial(executor.recheck, batch.users)
        try:
            outcome = await executor.sender.execute(request, still_wanted=still_wanted)
            if batch.remembered_gas and outcome.status is Status.SKIPPED \
                    and outcome.reason.startswith("simulation"):
                traced = await self._traced(batch, outcome)
                if traced is not None:
                    # Never lost to a remembered figure: once more at the traced one, behind
                    # the sends planned since (its turn ended with the refusal).
                    batch, request = traced, traced.request
                    outcome = await executor.sender.execute(requeued(request),
                                                            still_wanted=still_wanted)
        finally:
            executor.forget(request.label)
        n = len(batch.plans)
        predicted = (outcome.simulated_gas or batch.predicted_gas) // n
        if outcome.status is not Status.MINED:
            return [Execution(p.user, plan=p, outcome=outcome, predicted_gas=predicted)
                    for p in batch.plans]
        receipt = await executor.rpc.call("eth_getTransactionReceipt", [outcome.tx_hash])
        results = batch_results(receipt, request.to)
        if [u for u, _ in results] != [p.user.lower() for p in batch.plans]:
            # Not the batch we sent (events missing or out of order): no per-order figures.
            log.warning("batch_results_unreadable", tx_hash=outcome.tx_hash,
                        orders=len(batch.plans), events=len(results))
            return [Execution(p.user, plan=p, outcome=outcome, predicted_gas=predicted)
                    for p in batch.plans]
        done = sum(isinstance(r, dict) for _, r in results)
        # One receipt for all: each mined order is charged an even share of the gas paid.
        share = replace(outcome, gas_used=(outcome.gas_used or 0) // max(done, 1))
        out: list[Execution] = []
        for plan, (_, result) in zip(batch.plans, results, strict=True):
            if isinstance(result, dict):
                # The receipt as this order sees it: its own event (an account may have two
                # orders in one batch, a liquidation and its follow-up).
                own = receipt | {"logs": [result]}
                out.append(await executor.account_for(plan.user, plan, share, predicted,
                                                      batch.market, receipt=own))
                continue
            reason = reason_of("0x" + result.hex(), "execution reverted")
            log.info("batch_order_failed", user=plan.user, tx_hash=outcome.tx_hash,
                     block=outcome.block_number, reason=reason)
            # Not a transaction of its own: skipped, so the account is planned again.
            out.append(Execution(plan.user, plan=plan, predicted_gas=predicted, outcome=TxOutcome(
                Status.SKIPPED, request.label, reason=f"{reason} (in batch {outcome.tx_hash})",
                head=outcome.block_number)))
        return out

    async def _traced(self, batch: PreparedBatch, outcome: TxOutcome) -> PreparedBatch | None:
        """``batch``, refused on its remembered figure, traced on the block its simulation
        ran on: with the traced figure when the call takes more gas than the remembered one
        (too short for it), else None (a refusal at a figure that covers the call is the
        chain's answer; the accounts are planned again). Learns the figure."""
        retraced = await self.executor.retraced(batch.request, outcome, batch.plans[0].timestamp,
                                                sum(p.gas_estimate for p in batch.plans))
        if retraced is None:
            return None
        request, gas = retraced
        self.gas_memo.learn(batch.plans, gas)
        if gas <= (batch.request.known_gas or 0):
            return None
        return replace(batch, request=request, predicted_gas=gas, remembered_gas=False)
