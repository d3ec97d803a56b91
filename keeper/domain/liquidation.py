"""What Pool.liquidationCall would do, computed off-chain: LiquidationLogic of Aave V3.

``quote_liquidation_call`` follows executeLiquidationCall of @aave/core-v3 1.19.3 (v3.0) step by
step: health factor, close factor, validation, liquidation bonus and price sources (eMode), the
collateral actually seized, the protocol's fee on the bonus, and the reverts on the way. With
``rules=AaveRules.V3_3`` the close-factor and dust rules of Aave v3.3 replace v3.0's:

* the close factor is 100% unless the reserve's collateral AND debt are each worth at least
  MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD (2000e8) and HF > 0.95; otherwise it caps the debt repaid
  at 50% of the user's *total* debt in base currency (when this reserve's debt exceeds that);
* a liquidation that neither repays the whole debt of the reserve nor seizes the whole
  collateral must leave at least MIN_LEFTOVER_BASE (1000e8) of each, else MUST_NOT_LEAVE_DUST;
* prices are the assets' own oracle prices (v3.2+ eMode has no price source).

Only the rules differ: the account data and the eMode bonus lookup stay those of our v3.0
data model. Not modelled: the L2 PriceOracleSentinel (``validateLiquidationCall`` passes when no
sentinel is set, as on mainnet and our devnet) and v3.3's bad-debt burning (it moves no funds to
or from the liquidator).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from keeper.domain.account import (
    AccountData,
    Market,
    ReserveState,
    UserAccount,
    a_token_balance,
    calculate_user_account_data,
    user_debt,
)
from keeper.domain.wadray import (
    WAD,
    ArithmeticRevert,
    asset_unit,
    check_uint256,
    percent_div,
    percent_mul,
    ray_div,
    ray_mul,
)
from keeper.errors import KeeperError

DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5000
MAX_LIQUIDATION_CLOSE_FACTOR = 10000
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = WAD
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000 * 10**8
MIN_LEFTOVER_BASE = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD // 2


class AaveRules(Enum):
    """Which Aave version's liquidation rules apply."""

    V3_0 = "v3.0"
    V3_3 = "v3.3"


class LiquidationRevert(KeeperError, ValueError):
    """Pool.liquidationCall would revert; ``reason`` is the name in Aave's Errors library."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CollateralToLiquidate:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate's three results."""

    collateral_amount: int
    """Collateral the liquidator receives (protocol fee already taken out)."""
    debt_amount_needed: int
    """Debt actually repaid; less than asked when the user's collateral runs out."""
    liquidation_protocol_fee: int
    """Collateral sent to the treasury: a share of the bonus part."""


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


def close_factor(health_factor: int) -> int:
    """The v3.0 close factor (bps): 50% above HF 0.95, 100% at or below it."""
    if health_factor > CLOSE_FACTOR_HF_THRESHOLD:
        return DEFAULT_LIQUIDATION_CLOSE_FACTOR
    return MAX_LIQUIDATION_CLOSE_FACTOR


def available_collateral_to_liquidate(
    *,
    debt_to_cover: int,
    user_collateral_balance: int,
    collateral_price: int,
    collateral_decimals: int,
    debt_price: int,
    debt_decimals: int,
    liquidation_bonus: int,
    liquidation_protocol_fee: int,
) -> CollateralToLiquidate:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate, same operations and order.

    Base collateral = ``debtPrice * debtToCover * collateralUnit // (collateralPrice * debtUnit)``;
    with the bonus ``percentMul(base, bonus)``, capped at the user's balance (then the debt
    needed is recomputed from the cap with ``percentDiv``). The protocol fee is
    ``percentMul(amount - percentDiv(amount, bonus), fee)``, taken out of the liquidator's share.
    """
    collateral_unit = asset_unit(collateral_decimals)
    debt_unit = asset_unit(debt_decimals)

    numerator = check_uint256(debt_price * debt_to_cover * collateral_unit, "base collateral")
    denominator = check_uint256(collateral_price * debt_unit, "base collateral")
    if denominator == 0:
        raise ArithmeticRevert("collateral price is zero")
    base_collateral = numerator // denominator
    max_collateral = percent_mul(base_collateral, liquidation_bonus)

    if max_collateral > user_collateral_balance:
        collateral_amount = user_collateral_balance
        value = check_uint256(collateral_price * collateral_amount * debt_unit, "debt needed")
        divisor = check_uint256(debt_price * collateral_unit, "debt needed")
        if divisor == 0:
            raise ArithmeticRevert("debt price is zero")
        debt_needed = percent_div(value // divisor, liquidation_bonus)
    else:
        collateral_amount = max_collateral
        debt_needed = debt_to_cover

    if liquidation_protocol_fee == 0:
        return CollateralToLiquidate(collateral_amount, debt_needed, 0)
    bonus_collateral = check_uint256(
        collateral_amount - percent_div(collateral_amount, liquidation_bonus), "bonus collateral"
    )
    fee = percent_mul(bonus_collateral, liquidation_protocol_fee)
    return CollateralToLiquidate(
        check_uint256(collateral_amount - fee, "collateral after fee"), debt_needed, fee
    )


def _validate(
    account: UserAccount,
    collateral: ReserveState,
    debt: ReserveState,
    health_factor: int,
    total_debt: int,
) -> None:
    # ValidationLogic.validateLiquidationCall, in its order (the sentinel check is not modelled).
    c_cfg, d_cfg = collateral.configuration, debt.configuration
    if not (c_cfg.active and d_cfg.active):
        raise LiquidationRevert("RESERVE_INACTIVE")
    if c_cfg.paused or d_cfg.paused:
        raise LiquidationRevert("RESERVE_PAUSED")
    if health_factor >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        raise LiquidationRevert(
            "HEALTH_FACTOR_NOT_BELOW_THRESHOLD", f"health factor {health_factor}"
        )
    if c_cfg.liquidation_threshold == 0 or not account.configuration.is_using_as_collateral(
        collateral.id
    ):
        raise LiquidationRevert("COLLATERAL_CANNOT_BE_LIQUIDATED", collateral.asset)
    if total_debt == 0:
        raise LiquidationRevert("SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER", debt.asset)


def _bonus_and_prices(
    account: UserAccount, market: Market, collateral: ReserveState, debt: ReserveState
) -> tuple[int, int, int]:
    # LiquidationLogic._getConfigurationData (v3.0): the eMode bonus applies when the collateral
    # is of the user's category; the category's price source, if any, prices the debt always and
    # the collateral when it is of the category. Unlike GenericLogic, no fallback on a zero price.
    bonus = collateral.configuration.liquidation_bonus
    collateral_source, debt_source = collateral.asset, debt.asset
    emode_id = account.emode_category
    if emode_id != 0:
        category = market.emode_category(emode_id)
        if collateral.configuration.emode_category == emode_id:
            bonus = category.liquidation_bonus
            if category.has_price_source:
                collateral_source = category.price_source
        if category.has_price_source:
            debt_source = category.price_source
    return bonus, market.price(collateral_source), market.price(debt_source)


def _v33_bonus(account: UserAccount, market: Market, collateral: ReserveState) -> int:
    emode_id = account.emode_category
    if emode_id != 0 and collateral.configuration.emode_category == emode_id:
        return market.emode_category(emode_id).liquidation_bonus
    return collateral.configuration.liquidation_bonus


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
) -> LiquidationQuote:
    """What ``Pool.liquidationCall(collateral, debt, user, debtToCover, receiveAToken)`` does.

    Pass ``debt_to_cover = UINT256_MAX`` for "as much as allowed". Raises LiquidationRevert
    (with Aave's error name) or ArithmeticRevert where the transaction would revert.
    ``account_data`` is ``calculate_user_account_data(account, market)`` when the caller has
    it already (a size search quotes the same account dozens of times).
    """
    now = market.timestamp
    collateral = market.reserve_of(collateral_asset)
    debt = market.reserve_of(debt_asset)
    if account_data is None:
        account_data = calculate_user_account_data(account, market)
    health_factor = account_data.health_factor
    current_debt = user_debt(debt, account.position(debt_asset), now)
    total_debt = current_debt.total

    _validate(account, collateral, debt, health_factor, total_debt)

    collateral_position = account.position(collateral_asset)
    collateral_balance = a_token_balance(collateral, collateral_position, now)
    terms = _liquidation_terms(
        rules,
        account,
        market,
        collateral,
        debt,
        health_factor,
        total_debt_base=account_data.total_debt_base,
        total_debt=total_debt,
        collateral_balance=collateral_balance,
    )

    actual_debt = min(debt_to_cover, terms.max_liquidatable)
    result = available_collateral_to_liquidate(
        debt_to_cover=actual_debt,
        user_collateral_balance=collateral_balance,
        collateral_price=terms.collateral_price,
        collateral_decimals=collateral.configuration.decimals,
        debt_price=terms.debt_price,
        debt_decimals=debt.configuration.decimals,
        liquidation_bonus=terms.bonus,
        liquidation_protocol_fee=collateral.configuration.liquidation_protocol_fee,
    )
    actual_debt = result.debt_amount_needed
    seized, fee = result.collateral_amount, result.liquidation_protocol_fee

    if rules is AaveRules.V3_3:
        _check_no_dust(
            collateral, debt, terms, total_debt - actual_debt, collateral_balance - seized - fee
        )
    _check_debt_burn(debt, current_debt.variable, actual_debt, now)

    fee = _protocol_fee_after_transfer(
        collateral, collateral_position.scaled_a_token_balance, seized, fee, now, receive_a_token
    )
    return LiquidationQuote(
        debt_to_cover_actual=actual_debt,
        collateral_to_liquidator=seized,
        protocol_fee_collateral=fee,
        health_factor=health_factor,
        max_liquidatable_debt=terms.max_liquidatable,
        user_debt=total_debt,
        user_collateral_balance=collateral_balance,
        liquidation_bonus=terms.bonus,
        collateral_price=terms.collateral_price,
        debt_price=terms.debt_price,
    )


@dataclass(frozen=True, slots=True)
class _Terms:
    """The cap on the debt repaid, the bonus and the two prices a liquidation uses."""

    max_liquidatable: int
    bonus: int
    collateral_price: int
    debt_price: int


def _liquidation_terms(
    rules: AaveRules,
    account: UserAccount,
    market: Market,
    collateral: ReserveState,
    debt: ReserveState,
    health_factor: int,
    *,
    total_debt_base: int,
    total_debt: int,
    collateral_balance: int,
) -> _Terms:
    if rules is AaveRules.V3_0:
        max_liquidatable = percent_mul(total_debt, close_factor(health_factor))
        bonus, collateral_price, debt_price = _bonus_and_prices(account, market, collateral, debt)
        return _Terms(max_liquidatable, bonus, collateral_price, debt_price)
    bonus = _v33_bonus(account, market, collateral)
    collateral_price, debt_price = market.price(collateral.asset), market.price(debt.asset)
    max_liquidatable = _v33_max_liquidatable_debt(
        health_factor=health_factor,
        total_debt_base=total_debt_base,
        reserve_debt=total_debt,
        debt_price=debt_price,
        debt_decimals=debt.configuration.decimals,
        collateral_balance=collateral_balance,
        collateral_price=collateral_price,
        collateral_decimals=collateral.configuration.decimals,
    )
    return _Terms(max_liquidatable, bonus, collateral_price, debt_price)


def _check_no_dust(
    collateral: ReserveState,
    debt: ReserveState,
    terms: _Terms,
    debt_left: int,
    collateral_left: int,
) -> None:
    # v3.3: a partial liquidation (debt and collateral both left) must not leave dust of either.
    if debt_left <= 0 or collateral_left <= 0:
        return
    debt_left_base = debt_left * terms.debt_price // asset_unit(debt.configuration.decimals)
    collateral_left_base = (
        collateral_left * terms.collateral_price // asset_unit(collateral.configuration.decimals)
    )
    if debt_left_base < MIN_LEFTOVER_BASE or collateral_left_base < MIN_LEFTOVER_BASE:
        raise LiquidationRevert(
            "MUST_NOT_LEAVE_DUST",
            f"leaves debt {debt_left_base}, collateral {collateral_left_base}",
        )


def _check_debt_burn(debt: ReserveState, variable_debt: int, actual_debt: int, now: int) -> None:
    # _burnDebtTokens: burning a variable amount that scales to zero reverts (INVALID_BURN_AMOUNT).
    if variable_debt >= actual_debt and ray_div(actual_debt, debt.normalized_debt(now)) == 0:
        raise LiquidationRevert("INVALID_BURN_AMOUNT", "debt to cover scales to zero")


def _v33_max_liquidatable_debt(
    *,
    health_factor: int,
    total_debt_base: int,
    reserve_debt: int,
    debt_price: int,
    debt_decimals: int,
    collateral_balance: int,
    collateral_price: int,
    collateral_decimals: int,
) -> int:
    # v3.3: the whole reserve debt is liquidatable unless the position is big and only mildly
    # unhealthy; then the cap is 50% of the user's total debt (all reserves) in base currency.
    debt_base = reserve_debt * debt_price // asset_unit(debt_decimals)
    collateral_base = collateral_balance * collateral_price // asset_unit(collateral_decimals)
    if (
        collateral_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        and debt_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        and health_factor > CLOSE_FACTOR_HF_THRESHOLD
    ):
        default_base = percent_mul(total_debt_base, DEFAULT_LIQUIDATION_CLOSE_FACTOR)
        if debt_base > default_base:
            return default_base * asset_unit(debt_decimals) // debt_price
    return reserve_debt


def _protocol_fee_after_transfer(
    collateral: ReserveState,
    scaled_balance: int,
    seized: int,
    fee: int,
    now: int,
    receive_a_token: bool,
) -> int:
    # After the liquidator's share leaves the user's balance, the Pool trims the fee to what is
    # left when rounding of scaled amounts would make it exceed the balance by a wei.
    index = collateral.normalized_income(now)
    seized_scaled = ray_div(seized, index)
    if not receive_a_token and seized_scaled == 0:
        raise LiquidationRevert("INVALID_BURN_AMOUNT", "collateral to liquidate scales to zero")
    if seized_scaled > scaled_balance:
        raise ArithmeticRevert("collateral burn exceeds the user's scaled balance")
    if fee == 0:
        return 0
    remaining_scaled = scaled_balance - seized_scaled
    if ray_div(fee, index) > remaining_scaled:
        return ray_mul(remaining_scaled, index)
    return fee
