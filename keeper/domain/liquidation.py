"""What Pool.liquidationCall would do, computed off-chain: LiquidationLogic of Aave V3, 3.0 to 3.6.

``quote_liquidation_call`` follows executeLiquidationCall step by step: validation, health
factor, close factor, liquidation bonus and price sources (eMode), the collateral actually
seized, the protocol's fee on the bonus, and the reverts on the way. ``AaveRules`` names the
revision whose rules apply; what each changes:

* 3.0 (``@aave/core-v3`` 1.19.3): close factor 50% above HF 0.95; eMode price sources.
* 3.1: a liquidation grace period per reserve (LIQUIDATION_GRACE_SENTINEL_CHECK_FAILED until
  it has passed for both assets); virtual accounting: a liquidation that sends the underlying
  (``receiveAToken = false``) takes it from the collateral reserve's virtual balance, and
  reverts (checked uint128 arithmetic) when that balance is short.
* 3.2: liquid eMode (the category's collateral bitmap decides the bonus); no eMode price source.
* 3.3: the close factor and dust rules of ``keeper.domain.liquidation_amounts``; when the
  liquidation takes all the user's collateral value, the rest of the debt is burned (a deficit).
* 3.4: custom errors (the names here are the Errors library's, in the old UPPER_SNAKE form;
  ``error_name`` converts) and no self-liquidation (checked by the planner, which knows who
  sends).
* 3.5: rounding toward the protocol (collateral down, debt up).
* 3.6: seized aTokens (``receiveAToken = true``) are not enabled as the liquidator's
  collateral: no effect on what the call moves.

Not modelled: the L2 PriceOracleSentinel (no sentinel on mainnet or our devnet). The market
data model is that of ``keeper.domain.account``; per-reserve facts it lacks (grace periods and
virtual balances) come in a ``PoolLimits``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from keeper.domain.account import (
    AccountData,
    Market,
    ReserveState,
    UserAccount,
    calculate_user_account_data,
    user_debt,
)
from keeper.domain.liquidation_amounts import (
    CLOSE_FACTOR_HF_THRESHOLD,
    DEFAULT_LIQUIDATION_CLOSE_FACTOR,
    DIRECTED,
    HALF_UP,
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD,
    MAX_LIQUIDATION_CLOSE_FACTOR,
    MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD,
    MIN_LEFTOVER_BASE,
    CollateralToLiquidate,
    ReserveSide,
    Rounding,
    available_collateral_to_liquidate,
    close_factor,
    collateral_base,
    leaves_dust,
    v33_max_liquidatable_debt,
)
from keeper.domain.revision import AaveRevision, from_pool_revision
from keeper.domain.wadray import ArithmeticRevert, percent_mul
from keeper.errors import KeeperError

__all__ = [
    "CLOSE_FACTOR_HF_THRESHOLD",
    "DEFAULT_LIQUIDATION_CLOSE_FACTOR",
    "HEALTH_FACTOR_LIQUIDATION_THRESHOLD",
    "MAX_LIQUIDATION_CLOSE_FACTOR",
    "MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD",
    "MIN_LEFTOVER_BASE",
    "AaveRules",
    "CollateralToLiquidate",
    "LiquidationQuote",
    "LiquidationRevert",
    "PoolLimits",
    "available_collateral_to_liquidate",
    "close_factor",
    "error_name",
    "quote_liquidation_call",
    "rules_for_pool_revision",
]

GRACE_PERIOD = "LIQUIDATION_GRACE_SENTINEL_CHECK_FAILED"
SELF_LIQUIDATION = "SELF_LIQUIDATION"
VIRTUAL_BALANCE_SHORT = "VIRTUAL_BALANCE_SHORT"
"""Not an Aave error: the Pool's uint128 subtraction panics (0x11). Named so a size search can
stay within the balance."""


class AaveRules(Enum):
    """Which Aave revision's liquidation rules apply (the releases that changed them)."""

    V3_0 = "v3.0"
    V3_1 = "v3.1"
    V3_2 = "v3.2"
    V3_3 = "v3.3"
    V3_4 = "v3.4"
    V3_5 = "v3.5"
    V3_6 = "v3.6"

    @property
    def _minor(self) -> int:
        return _MINOR[self.value]  # asked ~10 times a quote: not parsed each time

    @property
    def has_grace_period(self) -> bool:
        """Per-reserve liquidation grace periods and virtual balances (3.1+)."""
        return self._minor >= 1

    @property
    def has_liquid_emode(self) -> bool:
        """eMode membership from the category's bitmaps, no eMode price source (3.2+)."""
        return self._minor >= 2

    @property
    def has_v33_close_factor(self) -> bool:
        """The $2,000 close-factor rule, the dust rule and bad-debt burning (3.3+)."""
        return self._minor >= 3

    @property
    def forbids_self_liquidation(self) -> bool:
        """SelfLiquidation and custom errors (3.4+)."""
        return self._minor >= 4

    @property
    def revision(self) -> AaveRevision:
        """The release these rules are from (its interest accrual: the 3.5+ Pools compound
        with the shorter series, so a debt balance differs in the last digits)."""
        return AaveRevision(300 + 10 * self._minor)

    @property
    def rounding(self) -> Rounding:
        """Directed rounding from 3.5 on, half up before."""
        return DIRECTED if self._minor >= 5 else HALF_UP


_MINOR = {rules.value: int(rules.value.split(".")[1]) for rules in AaveRules}


def rules_for_pool_revision(revision: int) -> AaveRules:
    """The liquidation rules of the Pool that reports ``POOL_REVISION() == revision``."""
    return rules_of(from_pool_revision(revision))


def rules_of(revision: AaveRevision) -> AaveRules:
    """The liquidation rules of an Aave release."""
    return AaveRules(f"v{revision.label}")


def error_name(custom_error: str) -> str:
    """A 3.4+ custom error's name in the pre-3.4 form: ``MustNotLeaveDust`` → ``MUST_NOT_LEAVE_DUST``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", custom_error).upper()


class LiquidationRevert(KeeperError, ValueError):
    """Pool.liquidationCall would revert; ``reason`` is the name in Aave's Errors library.

    ``not_before`` (a grace period) is the first block timestamp the call can pass at;
    ``quote`` (dust, or a virtual balance too short) is what the call would have done.
    """

    def __init__(self, reason: str, detail: str = "", *, not_before: int | None = None,
                 quote: LiquidationQuote | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.not_before = not_before
        self.quote = quote


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Per-reserve facts of 3.1+ that gate a liquidation, by asset (the Pool's spelling).

    ``grace_period_until``: Pool.getLiquidationGracePeriod (0 or absent: none).
    ``virtual_balances``: Pool.getVirtualUnderlyingBalance; None leaves it unchecked.
    """

    grace_period_until: Mapping[str, int] = field(default_factory=dict)
    virtual_balances: Mapping[str, int] | None = None


NO_LIMITS = PoolLimits()


@dataclass(frozen=True, slots=True)
class LiquidationQuote:
    """The outcome of a liquidationCall that would succeed, in the assets' own units."""

    debt_to_cover_actual: int
    collateral_to_liquidator: int
    protocol_fee_collateral: int
    health_factor: int
    """The user's health factor before the liquidation (wad)."""
    max_liquidatable_debt: int
    """The close-factor cap on the debt repaid, before the collateral cap."""
    user_debt: int
    """The user's whole debt in the debt asset (stable + variable)."""
    user_collateral_balance: int
    """The user's aToken balance of the collateral asset."""
    liquidation_bonus: int
    collateral_price: int
    debt_price: int
    bad_debt_burned: bool = False
    """3.3+: the call takes all the user's collateral value; the rest of the debt is burned."""
    takes_whole_collateral: bool = False
    """The Pool sized the seizure by the user's whole balance of the collateral. The fee may
    still come out a wei short of it: the Pool trims it when the scaled amounts round over."""

    @property
    def repays_whole_debt(self) -> bool:
        """The call repays all the user's debt in the debt asset."""
        return self.debt_to_cover_actual == self.user_debt


def _validate(rules: AaveRules, account: UserAccount, market: Market, collateral: ReserveState,
              debt: ReserveState, health_factor: int, total_debt: int,
              limits: PoolLimits) -> None:
    # ValidationLogic.validateLiquidationCall, in its order (sentinel not modelled; the
    # self-liquidation check needs the sender: see the planner).
    c_cfg, d_cfg = collateral.configuration, debt.configuration
    if not (c_cfg.active and d_cfg.active):
        raise LiquidationRevert("RESERVE_INACTIVE")
    if c_cfg.paused or d_cfg.paused:
        raise LiquidationRevert("RESERVE_PAUSED")
    if rules.has_grace_period:
        until = max(limits.grace_period_until.get(collateral.asset, 0),
                    limits.grace_period_until.get(debt.asset, 0))
        if until >= market.timestamp:
            raise LiquidationRevert(GRACE_PERIOD, f"grace period until {until}",
                                    not_before=until + 1)
    if health_factor >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        raise LiquidationRevert(
            "HEALTH_FACTOR_NOT_BELOW_THRESHOLD", f"health factor {health_factor}"
        )
    # v3.0 also refuses a collateral whose own liquidation threshold is zero.
    zero_threshold = c_cfg.liquidation_threshold == 0 and not rules.has_liquid_emode
    if zero_threshold or not account.configuration.is_using_as_collateral(collateral.id):
        raise LiquidationRevert("COLLATERAL_CANNOT_BE_LIQUIDATED", collateral.asset)
    if total_debt == 0:
        raise LiquidationRevert("SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER", debt.asset)


def _in_emode_category(market: Market, emode_id: int, collateral: ReserveState,
                       rules: AaveRules) -> bool:
    category = market.emode_category(emode_id)
    # 3.2+: membership is the category's collateral bitmap (the reserve configuration's eMode
    # bits are no longer maintained); before, those bits.
    if rules.has_liquid_emode:
        return category.counts_as_collateral(collateral, emode_id)
    return collateral.configuration.emode_category == emode_id


def _bonus_and_prices(rules: AaveRules, account: UserAccount, market: Market,
                      collateral: ReserveState, debt: ReserveState) -> tuple[int, int, int]:
    # LiquidationLogic: the eMode bonus applies when the collateral is of the user's category.
    # Before 3.2 the category's price source, if any, prices the debt always and the collateral
    # when it is of the category (unlike GenericLogic, no fallback on a zero price).
    bonus = collateral.configuration.liquidation_bonus
    collateral_source, debt_source = collateral.asset, debt.asset
    emode_id = account.emode_category
    if emode_id != 0:
        category = market.emode_category(emode_id)
        in_category = _in_emode_category(market, emode_id, collateral, rules)
        if in_category:
            bonus = category.liquidation_bonus
        if not rules.has_liquid_emode and category.has_price_source:
            debt_source = category.price_source
            if in_category:
                collateral_source = category.price_source
    return bonus, market.price(collateral_source), market.price(debt_source)


def quote_liquidation_call(
    account: UserAccount,
    market: Market,
    collateral_asset: str,
    debt_asset: str,
    debt_to_cover: int,
    *,
    rules: AaveRules = AaveRules.V3_0,
    receive_a_token: bool = False,
    account_data: AccountData | None = None,
    limits: PoolLimits = NO_LIMITS,
) -> LiquidationQuote:
    """What ``Pool.liquidationCall(collateral, debt, user, debtToCover, receiveAToken)`` does.

    Pass ``debt_to_cover = UINT256_MAX`` for "as much as allowed". Raises LiquidationRevert
    (with Aave's error name) or ArithmeticRevert where the transaction would revert.
    ``account_data`` is ``calculate_user_account_data(account, market)`` when the caller has
    it already (a size search quotes the same account dozens of times).
    """
    now, rounding, revision = market.timestamp, rules.rounding, rules.revision
    collateral = market.reserve_of(collateral_asset)
    debt = market.reserve_of(debt_asset)
    if account_data is None:
        account_data = calculate_user_account_data(account, market)
    health_factor = account_data.health_factor
    debt_position = account.position(debt_asset)
    # The debt as the Pool accrues it in this revision: a model a few wei short of the chain
    # plans a "whole debt" repayment that leaves those wei, and the dust rule refuses it.
    current_debt = user_debt(debt, debt_position, now, revision)
    variable_debt = rounding.debt_balance(debt_position.scaled_variable_debt,
                                          debt.normalized_debt(now, revision))
    total_debt = current_debt.stable + variable_debt

    _validate(rules, account, market, collateral, debt, health_factor, total_debt, limits)

    collateral_position = account.position(collateral_asset)
    collateral_balance = rounding.a_token_balance(collateral_position.scaled_a_token_balance,
                                                  collateral.normalized_income(now))
    bonus, collateral_price, debt_price = _bonus_and_prices(rules, account, market, collateral, debt)
    debt_side = ReserveSide(total_debt, debt_price, debt.configuration.decimals)
    collateral_side = ReserveSide(collateral_balance, collateral_price,
                                  collateral.configuration.decimals)
    max_liquidatable = _max_liquidatable_debt(rules, health_factor, account_data, debt_side,
                                              collateral_side)
    result = available_collateral_to_liquidate(
        debt_to_cover=min(debt_to_cover, max_liquidatable),
        user_collateral_balance=collateral_balance, collateral_price=collateral_price,
        collateral_decimals=collateral_side.decimals, debt_price=debt_price,
        debt_decimals=debt_side.decimals, liquidation_bonus=bonus,
        liquidation_protocol_fee=collateral.configuration.liquidation_protocol_fee,
        rounding=rounding)
    actual_debt = result.debt_amount_needed
    seized, fee = result.collateral_amount, result.liquidation_protocol_fee
    takes_whole = seized + fee >= collateral_balance

    dust, bad_debt = _v33_leftovers(rules, account_data, debt_side, collateral_side,
                                    actual_debt, seized, fee)
    burned = total_debt if bad_debt else actual_debt
    _check_debt_burn(rules, debt, variable_debt, burned, now)

    fee = _protocol_fee_after_transfer(
        rules, collateral, collateral_position.scaled_a_token_balance, seized, fee, now,
        receive_a_token)
    quote = LiquidationQuote(
        debt_to_cover_actual=actual_debt, collateral_to_liquidator=seized,
        protocol_fee_collateral=fee, health_factor=health_factor,
        max_liquidatable_debt=max_liquidatable, user_debt=total_debt,
        user_collateral_balance=collateral_balance, liquidation_bonus=bonus,
        collateral_price=collateral_price, debt_price=debt_price, bad_debt_burned=bad_debt,
        takes_whole_collateral=takes_whole)
    if dust is not None:
        raise LiquidationRevert("MUST_NOT_LEAVE_DUST",
                                f"leaves debt {dust[0]}, collateral {dust[1]}", quote=quote)
    if rules.has_grace_period and not receive_a_token:
        _check_virtual_balance(limits, collateral_asset, debt_asset, quote)
    return quote


def _max_liquidatable_debt(rules: AaveRules, health_factor: int, account_data: AccountData,
                           debt: ReserveSide, collateral: ReserveSide) -> int:
    if rules.has_v33_close_factor:
        return v33_max_liquidatable_debt(
            health_factor=health_factor, total_debt_base=account_data.total_debt_base,
            debt=debt, collateral=collateral, rounding=rules.rounding)
    return percent_mul(debt.amount, close_factor(health_factor))


def _v33_leftovers(rules: AaveRules, account_data: AccountData, debt: ReserveSide,
                   collateral: ReserveSide, actual_debt: int, seized: int,
                   fee: int) -> tuple[tuple[int, int] | None, bool]:
    # 3.3+: the leftovers if they are dust (the call reverts), and whether the call takes all
    # the user's collateral value (fee included): then the Pool burns the rest of the user's
    # debt into a deficit.
    if not rules.has_v33_close_factor:
        return None, False
    dust = leaves_dust(debt.amount - actual_debt, collateral.amount - seized - fee,
                       debt, collateral, rules.rounding)
    taken_base = collateral_base(seized + fee, collateral.price, collateral.decimals)
    return dust, account_data.total_collateral_base == taken_base


def _check_virtual_balance(limits: PoolLimits, collateral_asset: str, debt_asset: str,
                           quote: LiquidationQuote) -> None:
    # _burnCollateralATokens takes the liquidator's collateral out of the reserve's virtual
    # balance; for one asset the repayment has been added to it just before.
    if limits.virtual_balances is None:
        return
    available = limits.virtual_balances.get(collateral_asset, 0)
    if collateral_asset == debt_asset:
        available += quote.debt_to_cover_actual
    if quote.collateral_to_liquidator > available:
        raise LiquidationRevert(
            VIRTUAL_BALANCE_SHORT,
            f"collateral {quote.collateral_to_liquidator} > virtual balance {available}",
            quote=quote)


def _check_debt_burn(rules: AaveRules, debt: ReserveState, variable_debt: int, burned: int,
                     now: int) -> None:
    # _burnDebtTokens: a variable burn that scales to zero reverts (INVALID_BURN_AMOUNT). Before
    # 3.2 stable debt may pay part of it (then the variable side is burned whole, or not at all).
    if not rules.has_liquid_emode and variable_debt < burned:
        return
    if rules.rounding.debt_burn_scaled(burned, debt.normalized_debt(now, rules.revision)) == 0:
        raise LiquidationRevert("INVALID_BURN_AMOUNT", "debt to cover scales to zero")


def _protocol_fee_after_transfer(rules: AaveRules, collateral: ReserveState, scaled_balance: int,
                                 seized: int, fee: int, now: int, receive_a_token: bool) -> int:
    # After the liquidator's share leaves the user's balance, the Pool trims the fee to what is
    # left when rounding of scaled amounts would make it exceed the balance by a wei.
    index = collateral.normalized_income(now)
    rounding = rules.rounding
    seized_scaled = rounding.a_token_burn_scaled(seized, index)
    if not receive_a_token and seized_scaled == 0:
        raise LiquidationRevert("INVALID_BURN_AMOUNT", "collateral to liquidate scales to zero")
    if seized_scaled > scaled_balance:
        raise ArithmeticRevert("collateral burn exceeds the user's scaled balance")
    if fee == 0:
        return 0
    remaining_scaled = scaled_balance - seized_scaled
    if rounding.a_token_burn_scaled(fee, index) > remaining_scaled:
        return rounding.a_token_balance(remaining_scaled, index)
    return fee
