"""Decide how to liquidate one account: a ``Plan`` (unsent) or a ``Rejection`` with its reason.

For every pair of the user's collateral and debt assets, every route the quoter knows from the
collateral to the debt asset, and each way to fund the repayment (a flash loan of the debt
asset, or the liquidator contract's own balance), the profit model (keeper.domain.profit)
finds the ``debtToCover`` with the largest profit; gas is valued in the debt asset through the
oracle. The best of those, compared in USD, becomes the plan, with the calldata for our
FlashLiquidator and a ``minProfit`` that makes the chain revert a trade that turns out worse
than planned by more than the configured tolerance.

``plan_liquidation`` is pure given its inputs: the account and market snapshot at the block
timestamp the transaction is meant for, a quoter over a reserves snapshot, the gas price and
the funding facts. Those are read once per block by keeper.pipeline.gather; the value types it
returns (``Plan``, ``Rejection``) live in keeper.domain.plan, where the executor reads them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keeper.domain.account import (
    Market,
    MissingMarketData,
    UserAccount,
    a_token_balance,
    calculate_user_account_data,
)
from keeper.domain.amm import SwapRevert
from keeper.domain.liquidation import (
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD,
    AaveRules,
    LiquidationRevert,
)
from keeper.domain.plan import GasPrice, LiquidationParams, Plan, Rejection, RejectionReason
from keeper.domain.profit import (
    Outcome,
    PairQuotes,
    SwapOut,
    asset_to_base,
    native_to_asset,
    optimise_liquidation,
)
from keeper.domain.quote import Quoter, Route
from keeper.domain.wadray import PERCENTAGE_FACTOR, ArithmeticRevert, percent_mul
from keeper.protocols.aave_v3.liquidator import encode_liquidate

# When several pairs fail for different reasons, report the one closest to a trade.
_PRIORITY = (
    RejectionReason.UNPROFITABLE,
    RejectionReason.DUST,
    RejectionReason.NO_ROUTE,
    RejectionReason.NO_FUNDS,
    RejectionReason.PAUSED_RESERVE,
    RejectionReason.INACTIVE_RESERVE,
    RejectionReason.WOULD_REVERT,
    RejectionReason.NO_POSITION,
)

_REVERT_REASONS = {
    "HEALTH_FACTOR_NOT_BELOW_THRESHOLD": RejectionReason.HEALTHY,
    "RESERVE_PAUSED": RejectionReason.PAUSED_RESERVE,
    "RESERVE_INACTIVE": RejectionReason.INACTIVE_RESERVE,
    "COLLATERAL_CANNOT_BE_LIQUIDATED": RejectionReason.NO_POSITION,
    "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER": RejectionReason.NO_POSITION,
    "MUST_NOT_LEAVE_DUST": RejectionReason.DUST,
    "INVALID_BURN_AMOUNT": RejectionReason.DUST,
    "INVALID_AMOUNT": RejectionReason.NO_FUNDS,
}


@dataclass(frozen=True, slots=True)
class GasModel:
    """Gas of one ``FlashLiquidator.liquidate`` call, by shape.

    Measured on the devnet (tests/integration/test_planner.py checks every shape against its
    receipt): a first liquidation by a fresh contract used 555-568k gas with a flash loan and
    one swap, 649k with two swaps, 500k from its own balance with one swap. The defaults add
    about 8% on top; Aave's health-factor loop costs more for users with many reserves, and
    the executor's simulation (eth_estimateGas) has the last word on the gas limit.
    """

    base: int = 440_000
    flash_loan: int = 75_000
    per_hop: int = 95_000

    def estimate(self, *, hops: int, flash_loan: bool) -> int:
        """Gas for a call with ``hops`` swaps (0 for a same-asset liquidation)."""
        return self.base + (self.flash_loan if flash_loan else 0) + self.per_hop * hops


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """Settings of the planner (from ``[aave]`` and ``[executor]`` of the keeper's config).

    ``native_asset`` is the reserve whose oracle price prices the chain's native coin (WETH on
    Ethereum; WMATIC, WAVAX... elsewhere). ``min_profit_base`` is the least net profit worth a
    transaction, in the oracle's base currency (USD, 8 decimals). ``profit_tolerance_bps`` is
    how much worse than planned the on-chain profit may come out before the contract reverts.
    """

    liquidator: str
    native_asset: str
    rules: AaveRules = AaveRules.V3_0
    min_profit_base: int = 10**8
    profit_tolerance_bps: int = 100
    gas: GasModel = GasModel()
    native_decimals: int = 18

    def __post_init__(self) -> None:
        if not 0 <= self.profit_tolerance_bps <= PERCENTAGE_FACTOR:
            raise ValueError("profit_tolerance_bps must be within 0..10000")


@dataclass(frozen=True, slots=True)
class Funding:
    """How the liquidator can pay for a repayment.

    ``flash_premium_bps`` is the Pool's FLASHLOAN_PREMIUM_TOTAL; ``own_balances`` the liquidator
    contract's balances by asset; ``flash_liquidity`` what each reserve can lend now (its
    aToken's underlying balance), or None to leave it unchecked.
    """

    flash_premium_bps: int
    own_balances: Mapping[str, int] = field(default_factory=dict)
    flash_liquidity: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class _Candidate:
    collateral_asset: str
    debt_asset: str
    outcome: Outcome
    route: Route | None
    flash_loan: bool
    gas: int
    net_profit_usd: int


def plan_liquidation(
    user: str,
    account: UserAccount,
    market: Market,
    quoter: Quoter,
    gas_price: GasPrice,
    funding: Funding,
    config: PlannerConfig,
) -> Plan | Rejection:
    """The most profitable liquidation of ``user``, or why there is none.

    ``market`` must be the state at the timestamp the transaction is meant to be mined at
    (``market.timestamp``); the plan is exact for that timestamp and those reserves.
    """
    try:
        health_factor = calculate_user_account_data(account, market).health_factor
        native_price = market.price(config.native_asset)
    except MissingMarketData as exc:
        return Rejection(user, RejectionReason.MISSING_DATA, str(exc))
    if health_factor >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        return Rejection(user, RejectionReason.HEALTHY, f"health factor {health_factor}")

    collaterals, debts = _positions(account, market)
    if not collaterals or not debts:
        return Rejection(user, RejectionReason.NO_POSITION, "no seizable collateral or no debt")

    failures: list[tuple[RejectionReason, str]] = []
    best: _Candidate | None = None
    for debt_asset in debts:
        debt_reserve = market.reserve_of(debt_asset)
        debt_price = market.price(debt_asset)
        debt_decimals = debt_reserve.configuration.decimals
        ways = _funding_options(debt_asset, debt_reserve.configuration.flashloan_enabled, funding)
        if not ways:
            failures.append((RejectionReason.NO_FUNDS, f"nothing to repay {debt_asset} with"))
            continue
        for collateral_asset in collaterals:
            pair = f"{collateral_asset}->{debt_asset}"
            quotes = PairQuotes(account, market, collateral_asset, debt_asset, config.rules)
            routes: Sequence[Route | None]
            if collateral_asset == debt_asset:
                routes = [None]
            else:
                routes = quoter.routes(collateral_asset, debt_asset)
                if not routes:
                    failures.append((RejectionReason.NO_ROUTE, f"{pair}: no pool"))
                    continue
            for route in routes:
                for flash_loan, cap in ways:
                    gas = config.gas.estimate(hops=route.hops if route else 0, flash_loan=flash_loan)
                    try:
                        gas_cost = native_to_asset(
                            gas * gas_price.per_gas,
                            native_price=native_price,
                            asset_price=debt_price,
                            asset_decimals=debt_decimals,
                            native_decimals=config.native_decimals,
                        )
                        outcome = optimise_liquidation(
                            account,
                            market,
                            collateral_asset,
                            debt_asset,
                            swap=_swap_fn(quoter, route),
                            flash_premium_bps=funding.flash_premium_bps if flash_loan else 0,
                            gas_cost=gas_cost,
                            rules=config.rules,
                            max_debt_to_cover=cap,
                            quotes=quotes,
                        )
                    except LiquidationRevert as exc:
                        reason = _REVERT_REASONS.get(exc.reason, RejectionReason.WOULD_REVERT)
                        if reason is RejectionReason.HEALTHY:
                            return Rejection(user, reason, str(exc))
                        failures.append((reason, f"{pair}: {exc}"))
                        continue
                    except SwapRevert as exc:
                        failures.append((RejectionReason.NO_ROUTE, f"{pair}: {exc}"))
                        continue
                    except (ArithmeticRevert, MissingMarketData) as exc:
                        failures.append((RejectionReason.WOULD_REVERT, f"{pair}: {exc}"))
                        continue
                    usd = asset_to_base(outcome.net_profit, price=debt_price, decimals=debt_decimals)
                    candidate = _Candidate(
                        collateral_asset, debt_asset, outcome, route, flash_loan, gas, usd
                    )
                    if best is None or _better(candidate, best):
                        best = candidate

    if best is None:
        return _rejection(user, failures)
    if best.outcome.gross_profit <= 0 or best.net_profit_usd < config.min_profit_base:
        return Rejection(
            user,
            RejectionReason.UNPROFITABLE,
            f"best {best.collateral_asset}->{best.debt_asset}: net profit "
            f"{best.net_profit_usd} < minimum {config.min_profit_base} (USD, 8 decimals)",
            best_net_profit_usd=best.net_profit_usd,
        )
    return _plan(user, market, best, gas_price, config)


def _better(a: _Candidate, b: _Candidate) -> bool:
    # More USD first; on a tie the cheaper shape (own funds, fewer hops, smaller size).
    def key(c: _Candidate) -> tuple[int, int, int, int]:
        hops = c.route.hops if c.route else 0
        return (c.net_profit_usd, -int(c.flash_loan), -hops, -c.outcome.debt_to_cover)

    return key(a) > key(b)


def _positions(account: UserAccount, market: Market) -> tuple[list[str], list[str]]:
    """Assets the user could lose as collateral (non-zero balance) and assets they owe."""
    collaterals: list[str] = []
    debts: list[str] = []
    config = account.configuration
    for reserve_id in config.active_reserve_ids():
        reserve = market.reserve(reserve_id)
        position = account.position(reserve.asset)
        if (
            config.is_using_as_collateral(reserve_id)
            and reserve.configuration.liquidation_threshold != 0
            and a_token_balance(reserve, position, market.timestamp) > 0
        ):
            collaterals.append(reserve.asset)
        if config.is_borrowing(reserve_id):
            debts.append(reserve.asset)
    return collaterals, debts


def _funding_options(
    debt_asset: str, flashloan_enabled: bool, funding: Funding
) -> list[tuple[bool, int]]:
    """(flash_loan, largest debt it can repay) for each way to pay the debt asset."""
    ways: list[tuple[bool, int]] = []
    own = funding.own_balances.get(debt_asset, 0)
    if own > 0:
        ways.append((False, own))
    if flashloan_enabled:
        liquidity = (
            None if funding.flash_liquidity is None else funding.flash_liquidity.get(debt_asset, 0)
        )
        if liquidity is None:
            ways.append((True, 2**256 - 1))
        elif liquidity > 0:
            ways.append((True, liquidity))
    return ways


def _swap_fn(quoter: Quoter, route: Route | None) -> SwapOut | None:
    if route is None:
        return None

    def sell(amount_in: int) -> int:
        return quoter.quote_route(route, amount_in).amount_out

    return sell


def _rejection(user: str, failures: list[tuple[RejectionReason, str]]) -> Rejection:
    reasons = {r for r, _ in failures}
    reason = next((r for r in _PRIORITY if r in reasons), RejectionReason.NO_POSITION)
    return Rejection(user, reason, "; ".join(detail for _, detail in failures))


def _plan(
    user: str, market: Market, best: _Candidate, gas_price: GasPrice, config: PlannerConfig
) -> Plan:
    o = best.outcome
    collateral_asset, debt_asset = best.collateral_asset, best.debt_asset
    # The contract reverts when its measured profit falls short of min_profit: allow the
    # configured tolerance below the plan, never less than one unit (a loss always reverts).
    min_profit = max(o.gross_profit - percent_mul(o.gross_profit, config.profit_tolerance_bps), 1)
    path = best.route.path if best.route else ()
    params = LiquidationParams(
        collateral_asset=collateral_asset,
        debt_asset=debt_asset,
        user=user,
        debt_to_cover=o.debt_to_cover,
        swap_path=path,
        min_profit=min_profit,
        flash_loan=best.flash_loan,
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
        min_amount_out=min_profit + o.debt_to_cover + o.flash_premium,
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
        calldata=encode_liquidate(params),
    )
