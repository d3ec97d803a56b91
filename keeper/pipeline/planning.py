"""The plan stage: gather what planning needs once, plan purely, count and log the verdict.

``LiquidationPlanner.plan`` turns one account of the book into a ``Plan`` for the next block
or a ``Rejection``; it sends nothing (keeper.exec carries a plan out).
"""

from __future__ import annotations

import functools
from dataclasses import replace

from keeper.chain.rpc import JsonRpc
from keeper.domain.account import Market, UserAccount
from keeper.domain.fees import FeePolicy
from keeper.domain.plan import GasPrice, Plan, Rejection, RejectionReason
from keeper.domain.quote import Quoter, UniswapV2Quoter
from keeper.domain.routing import RoutingQuoter
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.pipeline.gather import Gathered, Venue, gather
from keeper.pipeline.planner import PlannerConfig, plan_liquidation
from keeper.protocols.uniswap_v2.pair import pair_address
from keeper.protocols.uniswap_v3.pool_state import V3PoolReader

log = get_logger(__name__)


class LiquidationPlanner:
    """Plans liquidations on the book's view for the block after the node's latest."""

    def __init__(self, rpc: JsonRpc, venue: Venue, config: PlannerConfig, fee_policy: FeePolicy,
                 metrics: Metrics, *, block_time: int | None = None) -> None:
        self.rpc = rpc
        self.venue = venue
        self.config = config
        self.fee_policy = fee_policy
        self.metrics = metrics
        self.block_time = block_time
        self.v3_reader = V3PoolReader(rpc) if venue.uniswap_v3 is not None else None

    async def plan(self, user: str, account: UserAccount, market: Market) -> Plan | Rejection:
        """Plan ``user``'s liquidation on ``market`` for the next block.

        ``market`` may be the book's view or one with prices the chain has not seen yet (a
        pending oracle update).
        """
        gathered = await gather(self.rpc, self.venue, sorted(account.reserves),
                                block_time=self.block_time, rules=self.config.rules,
                                v3_reader=self.v3_reader)
        verdict = self._decide(user, account, market, gathered)
        if isinstance(verdict, Rejection):
            self.metrics.rejections.labels(reason=verdict.reason.value).inc()
            if verdict.not_before is not None:
                # A grace period: the account is due again at the first block after it.
                log.info("liquidation_waiting", user=user, reason=verdict.reason.value,
                         not_before=verdict.not_before, detail=verdict.detail)
            else:
                log.info("liquidation_skipped", user=user, reason=verdict.reason.value,
                         detail=verdict.detail)
        else:
            self.metrics.plans.inc()
        return verdict

    def _decide(self, user: str, account: UserAccount, market: Market,
                gathered: Gathered) -> Plan | Rejection:
        # Interest accrues to the second: plan at the timestamp of the block that includes us.
        planned_market = replace(market, timestamp=gathered.next_block.timestamp)
        quoter = self._quoter(gathered)
        # Decide with the most we would bid as tip: the real bid is a share of the profit and
        # never more, so an accepted plan stays profitable at the price actually paid.
        gas_price = GasPrice(gathered.next_block.base_fee, self.fee_policy.max_priority_fee)
        try:
            return plan_liquidation(user, account, planned_market, quoter, gas_price,
                                    gathered.funding, self.config, gathered.limits)
        except Exception as exc:  # a task boundary for one candidate: log, count, go on
            log.error("planning_failed", user=user, error=f"{type(exc).__name__}: {exc}")
            return Rejection(user, RejectionReason.MISSING_DATA, f"{type(exc).__name__}: {exc}")

    def _quoter(self, gathered: Gathered) -> Quoter:
        """Uniswap V2 alone, or V2 and V3 together when V3 pools were read (see gather)."""
        if not gathered.v3_pools:
            return UniswapV2Quoter(gathered.reserves, hubs=list(self.venue.hubs))
        pair = functools.partial(pair_address, self.venue.uniswap_v2_factory,
                                 init_code_hash=self.venue.pair_init_code_hash)
        return RoutingQuoter(gathered.reserves, gathered.v3_pools, self.venue.hubs,
                             pair_address=pair)
