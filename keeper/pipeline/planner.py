"""Decide how to liquidate one account: a ``Plan`` (unsent) or a ``Rejection`` with its reason.

The account is checked first (healthy, bad debt, our own position); then every pair, route and
funding is searched (keeper.pipeline.pair_search) and the best candidate, compared in USD,
becomes the plan, with the calldata for our FlashLiquidator and a ``minProfit`` that makes the
chain revert a trade that turns out worse than planned by more than the configured tolerance.
A pair that cannot be liquidated before a grace period ends makes the account wait for it
(GRACE_PERIOD, with the first timestamp it may be sent at) rather than settle for less.

``plan_liquidation`` is pure given its inputs: the account and market snapshot at the block
timestamp the transaction is meant for, a quoter over a reserves snapshot, the gas price, the
funding facts and the Pool's per-reserve limits. Those are read once per block by
keeper.pipeline.gather; the value types it returns (``Plan``, ``Rejection``) live in
keeper.domain.plan, where the executor reads them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keeper.domain.account import (
    Market,
    MissingMarketData,
    UserAccount,
    calculate_user_account_data,
)
from keeper.domain.liquidation import (
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD,
    NO_LIMITS,
    AaveRules,
    PoolLimits,
)
from keeper.domain.plan import GasPrice, LiquidationParams, Plan, Rejection, RejectionReason
from keeper.domain.profit import asset_to_base
from keeper.domain.quote import UNISWAP_V2, Quoter
from keeper.domain.swap_route import SwapLeg
from keeper.domain.wadray import PERCENTAGE_FACTOR, percent_mul
from keeper.pipeline.pair_search import (
    Candidate,
    Failure,
    Funding,
    GasModel,
    SearchInputs,
    positions,
    search,
)

__all__ = ["Funding", "GasModel", "PlannerConfig", "plan_liquidation"]

# When several pairs fail for different reasons, report the one closest to a trade. A grace
# period comes first: once it ends, that pair may be the trade.
_PRIORITY = (
    RejectionReason.GRACE_PERIOD,
    RejectionReason.UNPROFITABLE,
    RejectionReason.DUST,
    RejectionReason.NO_ROUTE,
    RejectionReason.NO_FUNDS,
    RejectionReason.PAUSED_RESERVE,
    RejectionReason.INACTIVE_RESERVE,
    RejectionReason.WOULD_REVERT,
    RejectionReason.NO_POSITION,
)


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """Settings of the planner (from ``[aave]`` and ``[executor]`` of the keeper's config).

    ``native_asset`` is the reserve whose oracle price prices the chain's native coin (WETH on
    Ethereum; WMATIC, WAVAX... elsewhere). ``min_profit_base`` is the least net profit worth a
    transaction, in the oracle's base currency (USD, 8 decimals). ``profit_tolerance_bps`` is
    how much worse than planned the on-chain profit may come out before the contract reverts.
    ``owner`` is the account that owns (and sends to) the liquidator contract.
    """

    liquidator: str
    native_asset: str
    rules: AaveRules = AaveRules.V3_0
    min_profit_base: int = 10**8
    profit_tolerance_bps: int = 100
    gas: GasModel = field(default_factory=GasModel)
    native_decimals: int = 18
    owner: str | None = None
    keep_collateral: bool = False  # also weigh keeping the collateral (own balance, no sale)

    def __post_init__(self) -> None:
        if not 0 <= self.profit_tolerance_bps <= PERCENTAGE_FACTOR:
            raise ValueError("profit_tolerance_bps must be within 0..10000")


def plan_liquidation(
    user: str,
    account: UserAccount,
    market: Market,
    quoter: Quoter,
    gas_price: GasPrice,
    funding: Funding,
    config: PlannerConfig,
    limits: PoolLimits = NO_LIMITS,
) -> Plan | Rejection:
    """The most profitable liquidation of ``user``, or why there is none.

    ``market`` must be the state at the timestamp the transaction is meant to be mined at
    (``market.timestamp``); the plan is exact for that timestamp and those reserves.
    """
    try:
        data = calculate_user_account_data(account, market)
        native_price = market.price(config.native_asset)
    except MissingMarketData as exc:
        return Rejection(user, RejectionReason.MISSING_DATA, str(exc))
    if data.health_factor >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        return Rejection(user, RejectionReason.HEALTHY, f"health factor {data.health_factor}")
    if config.rules.has_v33_close_factor and data.total_collateral_base == 0 \
            and data.total_debt_base > 0:
        return Rejection(user, RejectionReason.BAD_DEBT,
                         f"debt {_usd(data.total_debt_base)} and no collateral")
    ours = {config.liquidator.lower(), (config.owner or config.liquidator).lower()}
    if config.rules.forbids_self_liquidation and user.lower() in ours:
        return Rejection(user, RejectionReason.SELF_LIQUIDATION, "our own position")

    collaterals, debts = positions(account, market)
    if not collaterals or not debts:
        return Rejection(user, RejectionReason.NO_POSITION, "no seizable collateral or no debt")
    inputs = SearchInputs(market, quoter, gas_price, funding, config.rules, config.gas,
                          native_price, config.native_decimals, limits, config.keep_collateral)
    found = search(account, collaterals, debts, inputs)
    return _verdict(user, market, quoter, found.best, found.failures, gas_price, config)


def _verdict(user: str, market: Market, quoter: Quoter, best: Candidate | None,
             failures: list[Failure], gas_price: GasPrice,
             config: PlannerConfig) -> Plan | Rejection:
    healthy = next((f for f in failures if f.reason is RejectionReason.HEALTHY), None)
    if healthy is not None:
        return Rejection(user, healthy.reason, healthy.detail)
    waits = [f.not_before for f in failures
             if f.reason is RejectionReason.GRACE_PERIOD and f.not_before is not None]
    if best is None or best.outcome.gross_profit <= 0 \
            or best.net_profit_usd < config.min_profit_base:
        if waits:
            # A pair is held back by a grace period: wait for it, whatever the others pay now.
            detail = "; ".join(f.detail for f in failures)
            return Rejection(user, RejectionReason.GRACE_PERIOD, detail, not_before=min(waits))
        if best is None:
            return _rejection(user, failures)
        return Rejection(
            user,
            RejectionReason.UNPROFITABLE,
            f"best {best.collateral_asset}->{best.debt_asset}: net profit "
            f"{_usd(best.net_profit_usd)} < minimum {_usd(config.min_profit_base)}",
            best_net_profit_usd=best.net_profit_usd,
        )
    return _plan(user, market, quoter, best, gas_price, config)


def _rejection(user: str, failures: list[Failure]) -> Rejection:
    reasons = {f.reason for f in failures}
    reason = next((r for r in _PRIORITY if r in reasons), RejectionReason.NO_POSITION)
    return Rejection(user, reason, "; ".join(f.detail for f in failures))


def _swap(quoter: Quoter, best: Candidate) -> tuple[tuple[str, ...], tuple[SwapLeg, ...]]:
    """The plan's swap: a Uniswap V2 path as before, or the liquidator's legs for a route
    through V3 pools or a split (quoted again at the amount seized, which names its pools)."""
    route = best.route
    if route is None:
        return (), ()
    if route.venue == UNISWAP_V2:
        return route.path, ()
    quote = quoter.quote_route(route, best.outcome.quote.collateral_to_liquidator)
    return quote.path, quote.legs()


def _plan(
    user: str, market: Market, quoter: Quoter, best: Candidate, gas_price: GasPrice,
    config: PlannerConfig,
) -> Plan:
    o = best.outcome
    collateral_asset, debt_asset = best.collateral_asset, best.debt_asset
    # The contract reverts when its measured profit falls short of min_profit: allow the
    # configured tolerance below the plan, never less than one unit (a loss always reverts).
    # Kept collateral is measured in itself: the floor is the collateral received, less the
    # tolerance on the profit's share of it (a rival who took part of the debt first).
    if best.keep:
        margin = percent_mul(o.gross_profit, config.profit_tolerance_bps)
        share = margin * o.collateral_seized // max(o.swap_amount_out, 1)
        min_profit = max(o.collateral_seized - share, 1)
    else:
        min_profit = max(o.gross_profit - percent_mul(o.gross_profit,
                                                      config.profit_tolerance_bps), 1)
    path, legs = _swap(quoter, best)  # a kept collateral has no route: no path, no legs
    params = LiquidationParams(
        collateral_asset=collateral_asset,
        debt_asset=debt_asset,
        user=user,
        debt_to_cover=o.debt_to_send,
        swap_path=() if legs else path,
        swap_legs=legs,
        min_profit=min_profit,
        flash_loan=best.flash_loan,
        keep_collateral=best.keep,
    )
    decimals = market.reserve_of(debt_asset).configuration.decimals
    debt_price = market.price(debt_asset)
    return Plan(
        user=user,
        collateral_asset=collateral_asset,
        debt_asset=debt_asset,
        debt_to_cover=o.debt_to_cover,
        collateral_seized=o.collateral_seized,
        protocol_fee_collateral=o.protocol_fee_collateral,
        swap_path=path,
        swap_amount_out=o.swap_amount_out,
        min_amount_out=0 if best.keep else min_profit + o.debt_to_cover + o.flash_premium,
        use_flash_loan=best.flash_loan,
        flash_premium=o.flash_premium,
        gross_profit=o.gross_profit,
        min_profit=min_profit,
        gas_estimate=best.gas,
        gas_price=gas_price.per_gas,
        gas_cost=o.gas_cost,
        net_profit=o.net_profit,
        gross_profit_usd=asset_to_base(o.gross_profit, price=debt_price, decimals=decimals),
        net_profit_usd=best.net_profit_usd,
        health_factor=o.quote.health_factor,
        timestamp=market.timestamp,
        rules=config.rules,
        liquidator=config.liquidator,
        params=params,
    )


def _usd(base: int) -> str:
    """An amount in the oracle's base currency (USD, 8 decimals) as a person reads it."""
    return f"-${-base / 1e8:,.2f}" if base < 0 else f"${base / 1e8:,.2f}"
