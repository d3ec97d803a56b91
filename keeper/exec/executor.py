"""From a plan to a mined liquidation: predict its gas, send it, and account for it.

``LiquidationExecutor`` is handed a ``Plan`` (keeper.domain.plan; the pipeline built it from
data gathered once per block) and the market it was planned on. ``prepare`` traces the call's
gas at the plan's timestamp and builds the ``TxRequest``; ``send`` hands it to the ``Sender``
(which simulates, signs, sends and sees it through), then measures what really happened: the
owner's balance of the debt asset before and after the transaction's block, and the gas paid.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import PendingTx
from keeper.domain.account import Market, MissingMarketData
from keeper.domain.amm import sort_tokens
from keeper.domain.plan import Plan, Rejection
from keeper.domain.swap_route import Venue
from keeper.errors import ExecutionReverted, RpcError, RpcResponseError
from keeper.exec.gas_memo import GasMemo
from keeper.exec.order import Turn
from keeper.exec.reads import TOP_CALL_TRACE
from keeper.exec.sender import Sender
from keeper.exec.tx import Status, TxOutcome, TxRequest
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.protocols.aave_v3.liquidator import (
    collateral_kept,
    encode_liquidate,
    liquidated_profit,
    refused_by_profit_floor,
)
from keeper.protocols.erc20 import balance_of

log = get_logger(__name__)

BASE_UNIT = 10**8
TRACED_GAS_LIMIT_PERCENT = 130


def gas_fields(gas: int, traced: bool, modelled: int) -> tuple[int, int | None]:
    """A request's (gas limit, known gas) from its predicted ``gas``. A traced figure is exact
    and known; its limit leaves room for the 63/64 of the gas a flash-loan callback must be
    able to forward (the sender checks the call at it). Else the model's figure, as the limit."""
    return (gas * TRACED_GAS_LIMIT_PERCENT // 100, gas) if traced else (modelled, None)


@dataclass(frozen=True, slots=True)
class Execution:
    """What became of one candidate: a plan and its outcome, or the reason there was none."""

    user: str
    plan: Plan | None = None
    rejection: Rejection | None = None
    outcome: TxOutcome | None = None
    predicted_gas: int | None = None
    predicted_net_usd: int | None = None  # gross profit less predicted gas × price paid
    realised_profit: int | None = None  # debt-asset units: our contract's Liquidated profit
    realised_net_usd: int | None = None  # realised profit less the gas paid, in USD
    gas_paid: int | None = None  # wei

    @property
    def overtaken(self) -> bool:
        """Not sent because the simulation found the trade paying less than the plan's floor:
        the chain moved under the plan, and the next block's plan may pay again."""
        o = self.outcome
        return o is not None and o.status is Status.SKIPPED and refused_by_profit_floor(o.reason)

    @property
    def skipped_reason(self) -> str:
        if self.rejection is not None:
            return f"{self.rejection.reason.value}: {self.rejection.detail}".rstrip(": ")
        if self.outcome is None or self.outcome.status is Status.MINED:
            return ""
        if self.outcome.status is Status.SKIPPED:
            return self.outcome.reason  # the report says "skipped: " once
        return f"{self.outcome.status.value}: {self.outcome.reason}"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A plan and the request that carries it out, not sent yet (``send`` sends it)."""

    user: str
    plan: Plan
    request: TxRequest
    predicted_gas: int
    market: Market  # the view it was planned on (prices for the profit accounting)
    remembered_gas: bool = False  # sent on its shape's remembered gas, traced after


def requeued(request: TxRequest) -> TxRequest:
    """``request`` with a new turn, after every send planned so far (none if it had none)."""
    turn = request.turn
    return request if turn is None else replace(request, turn=turn.order.turn())


def to_native(amount_usd: int, native_price: int, native_decimals: int = 18) -> int:
    """USD (8 decimals) to wei of the native coin at the oracle's price."""
    return amount_usd * 10**native_decimals // native_price if native_price > 0 else 0


class LiquidationExecutor:
    """Sends the plans it is given for one keeper account (``owner``), one at a time.

    ``native_asset`` is the reserve whose oracle price prices the native coin (for the
    expected profit in wei and the realised profit net of gas).
    """

    def __init__(self, rpc: JsonRpc, sender: Sender, metrics: Metrics, *, owner: str,
                 native_asset: str, native_decimals: int = 18,
                 block_time: int | None = None) -> None:
        self.rpc = rpc
        self.sender = sender
        self.metrics = metrics
        self.owner = owner
        self.native_asset = native_asset
        self.native_decimals = native_decimals
        self.block_time = block_time
        # (user, after, head) -> True when blocks (after, head] left the user and its prices
        # alone (the daemon's ``QuietBlocks``); then a kept liquidation is not asked again.
        self.quiet: Callable[[str, int, int], bool] | None = None
        self._checked: dict[str, int] = {}  # request label -> head of its last check
        self.gas_memo = GasMemo()

    async def prepare(self, plan: Plan, market: Market, *, detected_at: float | None = None,
                      trace_gas: bool = True, flagged_at: float | None = None,
                      block_seen_at: float | None = None, turn: Turn | None = None,
                      after: PendingTx | None = None) -> Prepared:
        """The request that carries ``plan`` out, with its gas predicted.

        ``market`` is the view the plan was made on (the book's, or one with prices the chain
        has not seen yet: a pending oracle update, when ``trace_gas=False``, since a trace at
        the head would run without the new price and revert; the sender's simulation measures
        the gas instead). ``detected_at``, ``flagged_at`` and ``block_seen_at`` (event-loop
        time: planning began, the scanner first flagged the account, the block it was flagged
        on arrived) feed the latency histograms. ``turn`` orders its nonce among the plans
        made with it (``keeper.exec.order``); ``after``, a transaction of ours it must follow
        (a follow-up of the same account, planned on what that one leaves).
        """
        # Encoded here, not by the planner: most plans of a crash go out in batches, which
        # encode their orders together.
        calldata = encode_liquidate(plan.params)
        remembered = self.gas_memo.usable(plan) if trace_gas and after is None else None
        if remembered is not None:
            # A comfortable plan of a shape traced before: sent on the remembered figure and
            # traced after, on the block its simulation ran on (the exact figure for the
            # accounts, and for a second try if the remembered one fails the simulation).
            predicted_gas, traced = remembered, True
        else:
            predicted_gas, traced = await self.predict_gas(plan.liquidator, calldata,
                                                           plan.timestamp, plan.gas_estimate) \
                if trace_gas else (plan.gas_estimate, False)
            if traced:
                self.gas_memo.learn(plan, predicted_gas)
        native_price = market.prices.get(self.native_asset, 0)
        gas_limit, known_gas = gas_fields(predicted_gas, traced, plan.gas_estimate)
        request = TxRequest(
            to=plan.liquidator,
            data=calldata,
            expected_profit_native=to_native(plan.gross_profit_usd, native_price),
            gas_limit=gas_limit,
            known_gas=known_gas,
            label=f"liquidate {plan.user}",
            detected_at=detected_at,
            flagged_at=flagged_at,
            block_seen_at=block_seen_at,
            turn=turn,
            after=after,
            shares=touches(plan, market),
        )
        self.log_planned(plan)
        return Prepared(plan.user, plan, request, predicted_gas, market,
                        remembered_gas=remembered is not None)

    async def _traced(self, prepared: Prepared, outcome: TxOutcome) -> tuple[Prepared, bool]:
        """``prepared``, sent on a remembered figure, with its gas traced on the block its
        simulation ran on; and whether to try it again, if the simulation refused it: only
        when the call uses more gas than the figure (too short for it). A refusal at a figure
        that covers the call is the chain's answer (the account, a pool, ours pending in it),
        and the account is planned again as after any refusal. Learns the figure."""
        plan = prepared.plan
        retraced = await self.retraced(prepared.request, outcome, plan.timestamp,
                                       plan.gas_estimate)
        if retraced is None:  # the call reverts there: the simulation said why
            return replace(prepared, remembered_gas=False), False
        request, gas = retraced
        self.gas_memo.learn(plan, gas)
        again = gas > (prepared.request.known_gas or 0)
        return replace(prepared, request=request, predicted_gas=gas, remembered_gas=False), again

    async def retraced(self, request: TxRequest, outcome: TxOutcome, timestamp: int,
                       modelled: int) -> tuple[TxRequest, int] | None:
        """``request``, sent on a remembered gas figure, traced on the block ``outcome``'s
        simulation ran on (at ``timestamp``, as the including block): with the limit and
        known gas of the traced figure, and that figure; None when the call reverts there.
        A single plan's and a batch's (``Batches.send``) alike."""
        head = outcome.attempts[0].block if outcome.attempts else outcome.head
        gas, traced = await self.predict_gas(request.to, request.data, timestamp, modelled,
                                             block="latest" if head is None else hex(head))
        if not traced:
            return None
        gas_limit, known_gas = gas_fields(gas, True, modelled)
        return replace(request, gas_limit=gas_limit, known_gas=known_gas), gas

    def log_planned(self, plan: Plan, **context: str) -> None:
        """The ``liquidation_planned`` line of a plan about to be sent (``context``: the batch
        it goes in)."""
        log.info("liquidation_planned", user=plan.user, collateral=plan.collateral_asset,
                 debt=plan.debt_asset, debt_to_cover=plan.debt_to_cover,
                 headroom=plan.params.debt_to_cover - plan.debt_to_cover,
                 gross_profit=plan.gross_profit, net_profit_usd=plan.net_profit_usd / BASE_UNIT,
                 modelled_gas=plan.gas_estimate, flash_loan=plan.use_flash_loan,
                 dry_run=self.sender.settings.dry_run, **context)

    async def send(self, prepared: Prepared) -> Execution:
        """Hand a prepared request to the sender, see it through and account for it."""
        user, plan, predicted_gas = prepared.user, prepared.plan, prepared.predicted_gas
        label = prepared.request.label
        still_wanted = functools.partial(self.recheck, (prepared.user,))
        try:
            outcome = await self.sender.execute(prepared.request, still_wanted=still_wanted)
            if prepared.remembered_gas:
                prepared, again = await self._traced(prepared, outcome)
                if again and outcome.status is Status.SKIPPED \
                        and outcome.reason.startswith("simulation"):
                    # Never lost to a remembered figure: once more at the traced one. Its
                    # turn ended with the refusal and sends planned after it may have taken
                    # nonces since: a new turn, behind them, so that they are out before its
                    # claim and its check on top of ours in flight sees them.
                    outcome = await self.sender.execute(requeued(prepared.request),
                                                        still_wanted=still_wanted)
                predicted_gas = prepared.predicted_gas  # the exact figure, for the accounts
            else:
                # The simulation's figure (traced at the plan's stamp), else the model's.
                predicted_gas = outcome.simulated_gas or predicted_gas
        finally:
            self.forget(label)
        if outcome.status is not Status.MINED:
            return Execution(user, plan=plan, outcome=outcome, predicted_gas=predicted_gas)
        if outcome.gas_used:
            self.gas_memo.learn(plan, outcome.gas_used)
        return await self.account_for(user, plan, outcome, predicted_gas, prepared.market)

    async def recheck(self, users: tuple[str, ...], request: TxRequest, head: int) -> bool:
        """``_still_wanted``, unless nothing it depends on moved since its last check: a
        request that trades in no pool and whose accounts (one, or a batch's) and prices the
        blocks since left alone (``quiet``)."""
        last = self._checked.get(request.label)
        self._checked[request.label] = head
        quiet = self.quiet
        if last is not None and quiet is not None and request.shares == frozenset() \
                and all(quiet(user, last, head) for user in users):
            return True
        return await self._still_wanted(request, head)

    def forget(self, label: str) -> None:
        """The request ``label`` ended: its last check is no longer needed."""
        self._checked.pop(label, None)

    async def _still_wanted(self, request: TxRequest, head: int) -> bool:
        """Asked on every block while our liquidation is in flight: would it still succeed?

        Another keeper may have liquidated the account, the price may have recovered, or the
        pool moved so the profit floor is no longer met: the contract would revert, so the
        sender cancels rather than paying for a revert. A read that fails says nothing: keep.
        """
        call = {"from": self.owner, "to": request.to, "data": "0x" + request.data.hex()}
        # At the state of the head but the timestamp of the block that would include us: the
        # plan's debt amounts are exact for that second, not for the head's.
        attempts: list[list[Any]] = [[call, "latest"]]
        try:
            if self.block_time is not None:
                stamp = self.sender.reads.head_timestamp
                if stamp is None or stamp[0] != head:  # the watcher's head read has it
                    latest = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
                    stamp = (head, int(latest["timestamp"], 16))
                attempts.insert(0, [call, "latest", {}, {"time": hex(stamp[1] + self.block_time)}])
            for params in attempts:
                try:
                    await self.rpc.call("eth_call", params)
                    return True
                except ExecutionReverted as exc:
                    log.info("liquidation_no_longer_valid", label=request.label, head=head,
                             reason=exc.rpc_message, action="cancel")
                    return False
                except RpcResponseError:
                    continue  # a node without block overrides: the plain call next
        except RpcError:
            pass  # the node is unreachable: no evidence either way
        return True

    async def predict_gas(self, to: str, calldata: bytes, timestamp: int,
                          fallback: int, *, block: str = "latest") -> tuple[int, bool]:
        """Gas the transaction will use, from a traced call when the node offers tracing
        (anvil, geth, erigon); ``eth_estimateGas`` overshoots it by the 63/64 reserve of the
        flash-loan callback. Falls back to the planner's model (then not exact: False).

        The trace runs at the plan's timestamp, as the including block will: at the head's
        own timestamp a reserve already touched in that block skips its index update
        (``updateState`` returns early), and the trace came out ~20-40k gas short of the
        receipt. A node that refuses block overrides gets the plain trace.
        """
        tx = {"from": self.owner, "to": to, "data": "0x" + calldata.hex()}
        # The top call alone: its gasUsed is all we read.
        at_plan_time = TOP_CALL_TRACE | {"blockOverrides": {"time": hex(timestamp)}}
        for options in (at_plan_time, TOP_CALL_TRACE, {"tracer": "callTracer"}):
            try:
                trace = await self.rpc.call("debug_traceCall", [tx, block, options])
            except Exception as exc:  # tracing is optional on real nodes
                log.debug("trace_call_unavailable", error=str(exc), options=list(options))
                continue
            if isinstance(trace, dict) and "gasUsed" in trace and not trace.get("error"):
                return int(trace["gasUsed"], 16), True
        return fallback, False

    async def account_for(self, user: str, plan: Plan, outcome: TxOutcome, predicted_gas: int,
                          market: Market, receipt: Any = None) -> Execution:
        """What the mined ``outcome`` of ``plan`` made, from its receipt (read unless given:
        a batch reads it once for all its orders)."""
        assert outcome.block_number is not None
        block = outcome.block_number
        if receipt is None:
            receipt = await self.rpc.call("eth_getTransactionReceipt", [outcome.tx_hash])
        realised = liquidated_profit(receipt, plan.liquidator, user)
        kept = collateral_kept(receipt, plan.liquidator, user) if realised is None else None
        if kept is not None:
            realised = _kept_value(kept, plan, market)
        if realised is None:  # a contract without the event: the owner's balance over the block
            before, after = await self.rpc.batch([
                balance_of(plan.debt_asset, self.owner, hex(block - 1)),
                balance_of(plan.debt_asset, self.owner, hex(block)),
            ])
            realised = int(after, 16) - int(before, 16)
        gas_paid = outcome.gas_cost or 0
        debt_reserve = market.reserve_of(plan.debt_asset)
        unit = 10**debt_reserve.configuration.decimals
        debt_price = market.prices[plan.debt_asset]
        native_price = market.prices.get(self.native_asset, 0)
        native_unit = 10**self.native_decimals
        realised_net = realised * debt_price // unit - gas_paid * native_price // native_unit
        price_paid = outcome.effective_gas_price or 0
        predicted_net = plan.gross_profit_usd - predicted_gas * price_paid * native_price // native_unit
        self.metrics.profit_realised_eth.inc(max(0, to_native(realised * debt_price // unit,
                                                               native_price)) / 1e18)
        log.info("liquidation_mined", user=user, tx_hash=outcome.tx_hash, block=block,
                 realised_profit=realised, planned_profit=plan.gross_profit,
                 gas_used=outcome.gas_used, predicted_gas=predicted_gas,
                 realised_net_usd=realised_net / BASE_UNIT, predicted_net_usd=predicted_net / BASE_UNIT)
        return Execution(user, plan=plan, outcome=outcome, predicted_gas=predicted_gas,
                         predicted_net_usd=predicted_net, realised_profit=realised,
                         realised_net_usd=realised_net, gas_paid=gas_paid)


def _kept_value(kept: tuple[int, int], plan: Plan, market: Market) -> int:
    """What a liquidation that kept the collateral made, in debt-asset units: the collateral
    received at the oracle's price (the Pool's own valuation of it) less the debt repaid."""
    repaid, seized = kept
    return market.value_in(seized, plan.collateral_asset, plan.debt_asset) - repaid


def touches(plan: Plan, market: Market) -> frozenset[str]:
    """What on chain ``plan``'s outcome depends on that another send of ours may change
    (``TxRequest.shares``; see ``_touches``); empty for a plan that keeps a collateral outside
    isolation."""
    return _touches(plan, isolated=_isolated(plan.collateral_asset, market))


def _isolated(collateral_asset: str, market: Market) -> bool:
    """Whether the collateral has a debt ceiling (isolation mode)."""
    try:
        return market.reserve_of(collateral_asset).configuration.debt_ceiling > 0
    except MissingMarketData:
        return False


def _touches(plan: Plan, *, isolated: bool) -> frozenset[str]:
    """What on chain ``plan``'s outcome depends on that another liquidation of ours may
    change: the pools it trades in, and an isolated collateral's total debt (every liquidation
    against it lowers that one counter, which on 3.0 underflows, panic 0x11, once it is below
    the debt repaid: 13 of ours reverted that way in the 10,000-borrower race when they were
    checked at the head beside each other). Its account is its own, and the planning round
    accounts for our contract's balances; a plan that keeps a collateral without a ceiling
    (or repays the asset it seizes) touches nothing."""
    params = plan.params
    hops = [(h.venue, h.pool, h.token_in, h.token_out) for leg in params.swap_legs
            for h in leg.hops] or [(Venue.UNISWAP_V2, "", a, b)
                                   for a, b in pairwise(params.swap_path)]
    # A V2 pair by its tokens (a path names no address), a V3 pool by its address.
    pools = {pool.lower() if venue == Venue.UNISWAP_V3 else "/".join(sort_tokens(a.lower(), b.lower()))
             for venue, pool, a, b in hops}
    return frozenset(pools | ({f"isolated:{plan.collateral_asset.lower()}"} if isolated else set()))
