"""From a confirmed candidate to a mined liquidation: plan, predict, send, and account for it.

``LiquidationExecutor.handle`` reads what the planner needs that the book does not hold (AMM
reserves, the liquidator's funding, the next block's fees) in two JSON-RPC batches, plans, and
hands the plan to the ``Sender`` (which simulates, signs, sends and sees it through). It then
measures what really happened: the owner's balance of the debt asset before and after the
transaction's block, and the gas paid.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

from keeper.chain.rpc import JsonRpc
from keeper.domain.account import Market, UserAccount
from keeper.domain.fees import FeePolicy
from keeper.domain.quote import UniswapV2Quoter, load_pair_reserves, needed_pairs
from keeper.errors import ExecutionReverted, RpcError, RpcResponseError
from keeper.exec.sender import Sender
from keeper.exec.tx import Status, TxOutcome, TxRequest
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.pipeline.planner import (
    FundingSource,
    GasPrice,
    Plan,
    PlannerConfig,
    Rejection,
    RejectionReason,
    plan_liquidation,
    read_funding,
)

log = get_logger(__name__)

_BALANCE_OF = bytes.fromhex("70a08231")
BASE_UNIT = 10**8
TRACED_GAS_LIMIT_PERCENT = 130


@dataclass(frozen=True, slots=True)
class Venue:
    """Where liquidations happen: the pool, our contract and its owner, the AMM."""

    pool: str
    liquidator: str
    owner: str
    uniswap_v2_factory: str
    pair_init_code_hash: bytes
    hubs: tuple[str, ...]
    a_tokens: dict[str, str]  # reserve asset -> its aToken (lendable liquidity lives there)


@dataclass(frozen=True, slots=True)
class Execution:
    """What became of one candidate: a plan and its outcome, or the reason there was none."""

    user: str
    plan: Plan | None = None
    rejection: Rejection | None = None
    outcome: TxOutcome | None = None
    predicted_gas: int | None = None
    predicted_net_usd: int | None = None  # gross profit less predicted gas × price paid
    realised_profit: int | None = None  # debt-asset units: the owner's balance change
    realised_net_usd: int | None = None  # realised profit less the gas paid, in USD
    gas_paid: int | None = None  # wei

    @property
    def skipped_reason(self) -> str:
        if self.rejection is not None:
            return f"{self.rejection.reason.value}: {self.rejection.detail}".rstrip(": ")
        if self.outcome is not None and self.outcome.status is not Status.MINED:
            return f"{self.outcome.status.value}: {self.outcome.reason}"
        return ""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A plan and the request that carries it out, not sent yet (``send`` sends it)."""

    user: str
    plan: Plan
    request: TxRequest
    predicted_gas: int
    market: Market  # the view it was planned on (prices for the profit accounting)


def next_base_fee(base_fee: int, gas_used: int, gas_limit: int) -> int:
    """EIP-1559: the base fee of the block after one with these figures."""
    target = gas_limit // 2
    if target == 0 or gas_used == target:
        return base_fee
    if gas_used > target:
        return base_fee + max(1, base_fee * (gas_used - target) // target // 8)
    return max(0, base_fee - base_fee * (target - gas_used) // target // 8)


def to_native(amount_usd: int, native_price: int, native_decimals: int = 18) -> int:
    """USD (8 decimals) to wei of the native coin at the oracle's price."""
    return amount_usd * 10**native_decimals // native_price if native_price > 0 else 0


class LiquidationExecutor:
    """Plans and executes liquidations for one keeper account, one at a time."""

    def __init__(
        self,
        rpc: JsonRpc,
        sender: Sender,
        venue: Venue,
        planner: PlannerConfig,
        fee_policy: FeePolicy,
        metrics: Metrics,
        *,
        block_time: int | None = None,
    ) -> None:
        self.block_time = block_time
        self.rpc = rpc
        self.sender = sender
        self.venue = venue
        self.planner = planner
        self.fee_policy = fee_policy
        self.metrics = metrics

    async def handle(self, user: str, account: UserAccount, market: Market) -> Execution:
        """Plan ``user``'s liquidation on ``market`` (the book's view) and see it through."""
        prepared = await self.prepare(user, account, market)
        if isinstance(prepared, Rejection):
            return Execution(user, rejection=prepared)
        return await self.send(prepared)

    async def prepare(self, user: str, account: UserAccount, market: Market, *,
                      trace_gas: bool = True) -> Prepared | Rejection:
        """Plan ``user``'s liquidation on ``market`` for the next block and build its request.

        ``market`` may be the book's view or one with prices the chain has not seen yet (a
        pending oracle update); then ``trace_gas=False``, since a trace at the head would run
        without the new price and revert: the sender's simulation measures the gas instead.
        """
        detected = time.monotonic()
        head = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        head_ts = int(head["timestamp"], 16)
        base_fee = next_base_fee(int(head.get("baseFeePerGas", "0x0"), 16),
                                 int(head["gasUsed"], 16), int(head["gasLimit"], 16))
        # Interest accrues to the second: plan for the block that will include us.
        # With a known slot time the next block's stamp is exact; without one, anvil-style
        # wall-clock stamps are the best guess.
        next_ts = (head_ts + self.block_time if self.block_time is not None
                   else max(int(time.time()), head_ts + 1))
        planned_market = replace(market, timestamp=next_ts)
        plan_or_reject = await self._plan(user, account, planned_market, base_fee)
        if isinstance(plan_or_reject, Rejection):
            self.metrics.rejections.labels(reason=plan_or_reject.reason.value).inc()
            log.info("liquidation skipped", user=user, reason=plan_or_reject.reason.value,
                     detail=plan_or_reject.detail)
            return plan_or_reject
        plan = plan_or_reject
        self.metrics.plans.inc()
        predicted_gas, traced = await self._predict_gas(plan) if trace_gas \
            else (plan.gas_estimate, False)
        native_price = market.prices.get(self.planner.native_asset, 0)
        request = TxRequest(
            to=self.venue.liquidator,
            data=plan.calldata,
            expected_profit_native=to_native(plan.gross_profit_usd, native_price),
            # A traced figure is exact; the limit leaves room for the 63/64 gas a flash-loan
            # callback must be able to forward (the sender checks the call at this limit).
            gas_limit=predicted_gas * TRACED_GAS_LIMIT_PERCENT // 100 if traced else plan.gas_estimate,
            known_gas=predicted_gas if traced else None,
            label=f"liquidate {user}",
            detected_at=detected,
        )
        log.info("liquidation planned", user=user, collateral=plan.collateral_asset,
                 debt=plan.debt_asset, debt_to_cover=plan.debt_to_cover,
                 gross_profit=plan.gross_profit, net_profit_usd=plan.net_profit_usd / BASE_UNIT,
                 predicted_gas=predicted_gas, flash_loan=plan.use_flash_loan,
                 dry_run=self.sender.settings.dry_run)
        return Prepared(user, plan, request, predicted_gas, market)

    async def send(self, prepared: Prepared) -> Execution:
        """Hand a prepared request to the sender, see it through and account for it."""
        user, plan, predicted_gas = prepared.user, prepared.plan, prepared.predicted_gas
        outcome = await self.sender.execute(prepared.request, still_wanted=self._still_wanted)
        if outcome.status is not Status.MINED:
            return Execution(user, plan=plan, outcome=outcome, predicted_gas=predicted_gas)
        return await self._account_for(user, plan, outcome, predicted_gas, prepared.market)

    async def _still_wanted(self, request: TxRequest, head: int) -> bool:
        """Asked on every block while our liquidation is in flight: would it still succeed?

        Another keeper may have liquidated the account, the price may have recovered, or the
        pool moved so the profit floor is no longer met: the contract would revert, so the
        sender cancels rather than paying for a revert. A read that fails says nothing: keep.
        """
        call = {"from": self.venue.owner, "to": request.to, "data": "0x" + request.data.hex()}
        # At the state of the head but the timestamp of the block that would include us: the
        # plan's debt amounts are exact for that second, not for the head's.
        attempts: list[list[Any]] = [[call, "latest"]]
        try:
            if self.block_time is not None:
                latest = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
                next_ts = int(latest["timestamp"], 16) + self.block_time
                attempts.insert(0, [call, "latest", {}, {"time": hex(next_ts)}])
            for params in attempts:
                try:
                    await self.rpc.call("eth_call", params)
                    return True
                except ExecutionReverted as exc:
                    log.info("in-flight liquidation no longer valid; cancelling",
                             label=request.label, head=head, reason=exc.rpc_message)
                    return False
                except RpcResponseError:
                    continue  # a node without block overrides: the plain call next
        except RpcError:
            pass  # the node is unreachable: no evidence either way
        return True

    async def _plan(self, user: str, account: UserAccount, market: Market,
                    base_fee: int) -> Plan | Rejection:
        # Only the user's own assets can be seized or repaid: read just their pools and funding.
        assets = sorted(account.reserves)
        pairs_needed = needed_pairs(assets, assets, hubs=list(self.venue.hubs))
        debts = {a: self.venue.a_tokens[a] for a in assets if a in self.venue.a_tokens}
        reserves, funding = await asyncio.gather(
            load_pair_reserves(self.rpc, self.venue.uniswap_v2_factory, pairs_needed,
                               init_code_hash=self.venue.pair_init_code_hash),
            read_funding(self.rpc, FundingSource(self.venue.pool, self.venue.liquidator, debts)),
        )
        quoter = UniswapV2Quoter(reserves, hubs=list(self.venue.hubs))
        # Decide with the most we would bid as tip: the real bid is a share of the profit and
        # never more, so an accepted plan stays profitable at the price actually paid.
        gas_price = GasPrice(base_fee, self.fee_policy.max_priority_fee)
        try:
            return plan_liquidation(user, account, market, quoter, gas_price, funding, self.planner)
        except Exception as exc:  # a task boundary for one candidate: log, count, go on
            log.error("planning failed", user=user, error=f"{type(exc).__name__}: {exc}")
            return Rejection(user, RejectionReason.MISSING_DATA, f"{type(exc).__name__}: {exc}")

    async def _predict_gas(self, plan: Plan) -> tuple[int, bool]:
        """Gas the transaction will use, from a traced call when the node offers tracing
        (anvil, geth, erigon); ``eth_estimateGas`` overshoots it by the 63/64 reserve of the
        flash-loan callback. Falls back to the planner's model (then not exact: False).

        The trace runs at the plan's timestamp, as the including block will: at the head's
        own timestamp a reserve already touched in that block skips its index update
        (``updateState`` returns early), and the trace came out ~20-40k gas short of the
        receipt. A node that refuses block overrides gets the plain trace.
        """
        tx = {"from": self.venue.owner, "to": self.venue.liquidator,
              "data": "0x" + plan.calldata.hex()}
        at_plan_time = {"tracer": "callTracer", "blockOverrides": {"time": hex(plan.timestamp)}}
        for options in (at_plan_time, {"tracer": "callTracer"}):
            try:
                trace = await self.rpc.call("debug_traceCall", [tx, "latest", options])
            except Exception as exc:  # tracing is optional on real nodes
                log.debug("debug_traceCall unavailable", error=str(exc), options=list(options))
                continue
            if isinstance(trace, dict) and "gasUsed" in trace and not trace.get("error"):
                return int(trace["gasUsed"], 16), True
        return plan.gas_estimate, False

    async def _account_for(self, user: str, plan: Plan, outcome: TxOutcome, predicted_gas: int,
                           market: Market) -> Execution:
        assert outcome.block_number is not None
        block = outcome.block_number
        data = "0x" + (_BALANCE_OF + bytes(12) + bytes.fromhex(self.venue.owner[2:])).hex()
        before, after = await self.rpc.batch([
            ("eth_call", [{"to": plan.debt_asset, "data": data}, hex(block - 1)]),
            ("eth_call", [{"to": plan.debt_asset, "data": data}, hex(block)]),
        ])
        realised = int(after, 16) - int(before, 16)
        gas_paid = outcome.gas_cost or 0
        debt_reserve = next(r for r in market.reserves.values() if r.asset == plan.debt_asset)
        unit = 10**debt_reserve.configuration.decimals
        debt_price = market.prices[plan.debt_asset]
        native_price = market.prices.get(self.planner.native_asset, 0)
        native_unit = 10**self.planner.native_decimals
        realised_net = realised * debt_price // unit - gas_paid * native_price // native_unit
        price_paid = outcome.effective_gas_price or 0
        predicted_net = plan.gross_profit_usd - predicted_gas * price_paid * native_price // native_unit
        self.metrics.profit_realised_eth.inc(max(0, to_native(realised * debt_price // unit,
                                                               native_price)) / 1e18)
        log.info("liquidation mined", user=user, tx_hash=outcome.tx_hash, block=block,
                 realised_profit=realised, planned_profit=plan.gross_profit,
                 gas_used=outcome.gas_used, predicted_gas=predicted_gas,
                 realised_net_usd=realised_net / BASE_UNIT, predicted_net_usd=predicted_net / BASE_UNIT)
        return Execution(user, plan=plan, outcome=outcome, predicted_gas=predicted_gas,
                         predicted_net_usd=predicted_net, realised_profit=realised,
                         realised_net_usd=realised_net, gas_paid=gas_paid)
