"""The search behind a plan: every (collateral, debt) pair, route and funding, optimised.

For each pair of the user's collateral and debt assets, every route the quoter knows from the
collateral to the debt asset, and each way to fund the repayment (a flash loan of the debt
asset, or the liquidator contract's own balance), the profit model (keeper.domain.profit)
finds the ``debtToCover`` with the largest profit; gas is valued in the debt asset through the
oracle. The best candidate, compared in USD, and why the others failed, go back to the planner.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keeper.domain.account import Market, MissingMarketData, UserAccount, a_token_balance
from keeper.domain.amm import SwapRevert
from keeper.domain.liquidation import (
    GRACE_PERIOD,
    NO_LIMITS,
    SELF_LIQUIDATION,
    AaveRules,
    LiquidationRevert,
    PoolLimits,
    error_name,
)
from keeper.domain.plan import GasPrice, RejectionReason
from keeper.domain.profit import (
    Outcome,
    PairQuotes,
    SwapOut,
    asset_to_base,
    native_to_asset,
    optimise_liquidation,
)
from keeper.domain.profit_ceiling import profit_ceiling
from keeper.domain.quote import Quoter, Route
from keeper.domain.wadray import UINT256_MAX, ArithmeticRevert

# Aave's revert names (pre-3.4 UPPER_SNAKE; a 3.4+ custom error name maps through error_name).
REVERT_REASONS = {
    "HEALTH_FACTOR_NOT_BELOW_THRESHOLD": RejectionReason.HEALTHY,
    "RESERVE_PAUSED": RejectionReason.PAUSED_RESERVE,
    "RESERVE_INACTIVE": RejectionReason.INACTIVE_RESERVE,
    "COLLATERAL_CANNOT_BE_LIQUIDATED": RejectionReason.NO_POSITION,
    "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER": RejectionReason.NO_POSITION,
    "MUST_NOT_LEAVE_DUST": RejectionReason.DUST,
    "INVALID_BURN_AMOUNT": RejectionReason.DUST,
    "INVALID_AMOUNT": RejectionReason.NO_FUNDS,
    GRACE_PERIOD: RejectionReason.GRACE_PERIOD,
    SELF_LIQUIDATION: RejectionReason.SELF_LIQUIDATION,
}


def rejection_reason(revert: str) -> RejectionReason:
    """The planner's reason for an Aave revert name, old (``MUST_NOT_LEAVE_DUST``) or 3.4+
    (``MustNotLeaveDust``); WOULD_REVERT for any other."""
    return REVERT_REASONS.get(error_name(revert), RejectionReason.WOULD_REVERT)


@dataclass(frozen=True, slots=True)
class GasModel:
    """Gas of one ``FlashLiquidator.liquidate`` call, by shape.

    Measured on the devnet (tests/integration/test_planner.py checks every shape against its
    receipt): a first liquidation by a fresh contract used 555-568k gas with a flash loan and
    one swap, 649k with two swaps, 500k from its own balance with one swap. The defaults add
    about 8% on top; Aave's health-factor loop costs more for users with many reserves, and
    the executor's simulation (eth_estimateGas) has the last word on the gas limit. A
    liquidation that takes the user's last collateral or repays the last debt of a reserve
    clears its bit in the user's configuration: ~6k more (616k measured for isolated LINK
    against USDC on a freshly deployed devnet, where the base of 440k left 610k).
    """

    base: int = 450_000
    flash_loan: int = 75_000
    per_hop: int = 95_000
    kept_in_batch: int | None = None
    """Gas of one order that keeps its collateral inside a ``liquidateBatch`` (None: such
    orders go alone): its share of the batch, no transaction base cost of its own and the
    reserves warm (``batched_keep_gas``)."""

    def estimate(self, *, hops: int, flash_loan: bool, keep: bool = False) -> int:
        """Gas for a call with ``hops`` swaps (0 for a same-asset liquidation, or one that
        ``keep``s its collateral)."""
        if keep and self.kept_in_batch is not None:
            return self.kept_in_batch
        return self.base + (self.flash_loan if flash_loan else 0) + self.per_hop * hops


def batched_keep_gas(batch_size: int) -> int:
    """A kept order's share of a full batch of ``batch_size``: ~172k of its own and 480k
    shared by the batch (the transaction, the first touch of the reserves), ~8% on top as
    ``GasModel``'s other figures. Measured a batch in the 10,000-borrower race: 202k an order
    in batches of 16, 213k of 12, 232k of 8."""
    return (172_000 + 480_000 // max(batch_size, 1)) * 108 // 100


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
class Candidate:
    """One executable liquidation: its pair, outcome, route, funding and gas."""

    collateral_asset: str
    debt_asset: str
    outcome: Outcome
    route: Route | None
    flash_loan: bool
    gas: int
    net_profit_usd: int
    keep: bool = False  # the collateral is kept, not sold (``route`` is None)

    def better_than(self, other: Candidate) -> bool:
        """More USD first; on a tie the cheaper shape (own funds, fewer hops, smaller size)."""
        def key(c: Candidate) -> tuple[int, int, int, int]:
            hops = c.route.hops if c.route else 0
            return (c.net_profit_usd, -int(c.flash_loan), -hops, -c.outcome.debt_to_cover)

        return key(self) > key(other)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one pair (or route, or funding) gave no candidate."""

    reason: RejectionReason
    detail: str
    not_before: int | None = None


@dataclass(frozen=True, slots=True)
class SearchInputs:
    """What the search reads besides the account: market, AMM, gas, funding and rules."""

    market: Market
    quoter: Quoter
    gas_price: GasPrice
    funding: Funding
    rules: AaveRules
    gas: GasModel
    native_price: int
    native_decimals: int = 18
    limits: PoolLimits = NO_LIMITS
    # Also weigh keeping the collateral (repaid from our own balance, nothing sold), valued
    # at the oracle's price as the Pool values it.
    keep_collateral: bool = False


@dataclass
class SearchResult:
    best: Candidate | None = None
    failures: list[Failure] = field(default_factory=list)

    def offer(self, candidate: Candidate) -> None:
        if self.best is None or candidate.better_than(self.best):
            self.best = candidate


def search(account: UserAccount, collaterals: Sequence[str], debts: Sequence[str],
           inputs: SearchInputs) -> SearchResult:
    """The best candidate over every pair, route and funding, and the failures met on the way.

    Each option is bounded first (keeper.domain.profit_ceiling: one quote of the largest
    liquidation, one small sale), then optimised in the order of its bound, until the best
    found beats the bound of every option left: the same answer as optimising them all. A
    revert that says the account is healthy ends the search (it holds for every pair)."""
    result = SearchResult()
    options: list[_Option] = []
    for debt_asset in debts:
        reserve = inputs.market.reserve_of(debt_asset)
        ways = funding_options(debt_asset, reserve.configuration.flashloan_enabled,
                               inputs.funding)
        if not ways:
            result.failures.append(Failure(RejectionReason.NO_FUNDS,
                                           f"nothing to repay {debt_asset} with"))
            continue
        for collateral_asset in collaterals:
            options += _pair_options(account, collateral_asset, debt_asset, ways, inputs, result)
            if any(f.reason is RejectionReason.HEALTHY for f in result.failures):
                return result
    options.sort(key=_Option.order)
    for option in options:
        if result.best is not None and option.ceiling_usd is not None \
                and option.ceiling_usd < result.best.net_profit_usd:
            break  # sorted by bound: no option left can beat the best
        _optimise(option, inputs, result)
    return result


@dataclass(frozen=True, slots=True)
class _Option:
    """One way to liquidate a pair (a route and a funding), with a bound on its net profit."""

    quotes: PairQuotes
    route: Route | None
    flash_loan: bool
    cap: int
    gas: int
    gas_cost: int
    ceiling_usd: int | None  # None: no bound (optimised whatever the best)
    keep: bool = False

    def order(self) -> tuple[int, int]:
        return (0, 0) if self.ceiling_usd is None else (1, -self.ceiling_usd)


def _pair_options(account: UserAccount, collateral_asset: str, debt_asset: str,
                  ways: list[tuple[bool, int]], inputs: SearchInputs,
                  result: SearchResult) -> list[_Option]:
    pair = f"{collateral_asset}->{debt_asset}"
    market = inputs.market
    quotes = PairQuotes(account, market, collateral_asset, debt_asset, inputs.rules, inputs.limits)
    routes: Sequence[Route | None]
    keeps = inputs.keep_collateral and collateral_asset != debt_asset \
        and any(not flash_loan for flash_loan, _ in ways)
    if collateral_asset == debt_asset:
        routes = [None]
    else:
        routes = inputs.quoter.routes(collateral_asset, debt_asset)
        if not routes and not keeps:
            result.failures.append(Failure(RejectionReason.NO_ROUTE, f"{pair}: no pool"))
            return []
    debt_price = market.price(debt_asset)
    debt_decimals = market.reserve_of(debt_asset).configuration.decimals
    shapes: list[tuple[Route | None, bool, int, bool]] = [
        (route, flash_loan, cap, False) for route in routes for flash_loan, cap in ways]
    if keeps:
        shapes += [(None, False, cap, True) for flash_loan, cap in ways if not flash_loan]
    options: list[_Option] = []
    for route, flash_loan, cap, keep in shapes:
        gas = inputs.gas.estimate(hops=route.hops if route else 0, flash_loan=flash_loan,
                                  keep=keep)
        try:
            gas_cost = native_to_asset(
                gas * inputs.gas_price.per_gas, native_price=inputs.native_price,
                asset_price=debt_price, asset_decimals=debt_decimals,
                native_decimals=inputs.native_decimals)
            ceiling = profit_ceiling(quotes, _sale(inputs, quotes, route, keep), cap)
        except LiquidationRevert as exc:
            result.failures.append(
                Failure(rejection_reason(exc.reason), f"{pair}: {exc}", exc.not_before))
            if exc.reason == GRACE_PERIOD or rejection_reason(exc.reason) is \
                    RejectionReason.HEALTHY:
                return []  # the same for every route and funding of the pair
            continue
        except (ArithmeticRevert, MissingMarketData) as exc:
            result.failures.append(Failure(RejectionReason.WOULD_REVERT, f"{pair}: {exc}"))
            continue
        ceiling_usd = None if ceiling is None else asset_to_base(
            ceiling - gas_cost, price=debt_price, decimals=debt_decimals)
        options.append(_Option(quotes, route, flash_loan, cap, gas, gas_cost, ceiling_usd,
                               keep))
    return options


def _optimise(option: _Option, inputs: SearchInputs, result: SearchResult) -> None:
    quotes, route = option.quotes, option.route
    collateral_asset, debt_asset = quotes.collateral_asset, quotes.debt_asset
    pair = f"{collateral_asset}->{debt_asset}"
    market = inputs.market
    try:
        outcome = optimise_liquidation(
            quotes.account, market, collateral_asset, debt_asset,
            swap=_sale(inputs, quotes, route, option.keep),
            flash_premium_bps=inputs.funding.flash_premium_bps if option.flash_loan else 0,
            gas_cost=option.gas_cost, rules=inputs.rules, max_debt_to_cover=option.cap,
            quotes=quotes)
    except LiquidationRevert as exc:
        result.failures.append(
            Failure(rejection_reason(exc.reason), f"{pair}: {exc}", exc.not_before))
        return
    except SwapRevert as exc:
        result.failures.append(Failure(RejectionReason.NO_ROUTE, f"{pair}: {exc}"))
        return
    except (ArithmeticRevert, MissingMarketData) as exc:
        result.failures.append(Failure(RejectionReason.WOULD_REVERT, f"{pair}: {exc}"))
        return
    debt_reserve = market.reserve_of(debt_asset).configuration
    usd = asset_to_base(outcome.net_profit, price=market.price(debt_asset),
                        decimals=debt_reserve.decimals)
    result.offer(Candidate(collateral_asset, debt_asset, outcome, route, option.flash_loan,
                           option.gas, usd, option.keep))


def positions(account: UserAccount, market: Market) -> tuple[list[str], list[str]]:
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


def funding_options(debt_asset: str, flashloan_enabled: bool,
                    funding: Funding) -> list[tuple[bool, int]]:
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
            ways.append((True, UINT256_MAX))
        elif liquidity > 0:
            ways.append((True, liquidity))
    return ways


def _sale(inputs: SearchInputs, quotes: PairQuotes, route: Route | None,
          keep: bool) -> SwapOut | None:
    """What the seized collateral is worth in the debt asset: sold along ``route``, or (kept)
    at the oracle's prices, floored, as the Pool's own conversion is."""
    if not keep:
        return _swap_fn(inputs.quoter, route)
    return functools.partial(inputs.market.value_in, asset=quotes.collateral_asset,
                             unit_asset=quotes.debt_asset)


def _swap_fn(quoter: Quoter, route: Route | None) -> SwapOut | None:
    if route is None:
        return None

    def sell(amount_in: int) -> int:
        return quoter.quote_route(route, amount_in).amount_out

    return sell
