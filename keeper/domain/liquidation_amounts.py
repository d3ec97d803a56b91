"""The amounts of one Aave V3 liquidation: close factor, collateral for a debt, dust, rounding.

The pieces of LiquidationLogic.executeLiquidationCall that are arithmetic, for every revision
the keeper follows (``keeper.domain.liquidation.AaveRules`` says which apply):

* v3.0-3.2: the close factor is 50% of the reserve's debt above HF 0.95, 100% at or below it;
* v3.3+: 100% unless the reserve's collateral AND debt are each worth at least
  MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD ($2,000) and HF > 0.95; then the cap is 50% of the
  user's *total* debt in base currency (when this reserve's debt exceeds that), and a partial
  liquidation must leave at least MIN_LEFTOVER_BASE ($1,000) of each side (MUST_NOT_LEAVE_DUST);
* v3.5+: rounding toward the protocol: the aToken balance and collateral values round down,
  the debt balance and debt values up (``mulDivCeil``), the debt needed for a capped
  collateral up (``percentDivCeil``), aToken burns and transfers scale up, debt burns down.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.domain.wadray import (
    WAD,
    ArithmeticRevert,
    asset_unit,
    check_uint256,
    mul_div_ceil,
    percent_div,
    percent_div_ceil,
    percent_mul,
    ray_div,
    ray_div_ceil,
    ray_div_floor,
    ray_mul,
    ray_mul_ceil,
    ray_mul_floor,
)

DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5000
MAX_LIQUIDATION_CLOSE_FACTOR = 10000
CLOSE_FACTOR_HF_THRESHOLD = 95 * 10**16
HEALTH_FACTOR_LIQUIDATION_THRESHOLD = WAD
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000 * 10**8
MIN_LEFTOVER_BASE = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD // 2


@dataclass(frozen=True, slots=True)
class Rounding:
    """How a revision rounds the amounts of a liquidation (v3.5+ directed, else half up)."""

    directed: bool = False

    def a_token_balance(self, scaled: int, index: int) -> int:
        """TokenMath.getATokenBalance (rayMulFloor) or AToken.balanceOf (rayMul)."""
        return ray_mul_floor(scaled, index) if self.directed else ray_mul(scaled, index)

    def debt_balance(self, scaled: int, index: int) -> int:
        """TokenMath.getVTokenBalance (rayMulCeil) or the debt token's rayMul."""
        return ray_mul_ceil(scaled, index) if self.directed else ray_mul(scaled, index)

    def debt_base(self, amount: int, price: int, decimals: int) -> int:
        """A debt amount in base currency: ``mulDivCeil`` on v3.5+, floor before."""
        if self.directed:
            return mul_div_ceil(amount, price, asset_unit(decimals))
        return check_uint256(amount * price, "debt in base") // asset_unit(decimals)

    def debt_for_capped_collateral(self, value: int, bonus: int) -> int:
        """The debt a capped collateral needs: ``percentDivCeil`` on v3.5+, ``percentDiv``."""
        return percent_div_ceil(value, bonus) if self.directed else percent_div(value, bonus)

    def a_token_burn_scaled(self, amount: int, index: int) -> int:
        """getATokenBurnScaledAmount / getATokenTransferScaledAmount (ceil) or rayDiv."""
        return ray_div_ceil(amount, index) if self.directed else ray_div(amount, index)

    def debt_burn_scaled(self, amount: int, index: int) -> int:
        """getVTokenBurnScaledAmount (floor) or rayDiv."""
        return ray_div_floor(amount, index) if self.directed else ray_div(amount, index)


HALF_UP = Rounding(directed=False)
DIRECTED = Rounding(directed=True)


def collateral_base(amount: int, price: int, decimals: int) -> int:
    """A collateral amount in base currency, rounded down (every revision)."""
    return check_uint256(amount * price, "collateral in base") // asset_unit(decimals)


def close_factor(health_factor: int) -> int:
    """The v3.0 close factor (bps): 50% above HF 0.95, 100% at or below it."""
    if health_factor > CLOSE_FACTOR_HF_THRESHOLD:
        return DEFAULT_LIQUIDATION_CLOSE_FACTOR
    return MAX_LIQUIDATION_CLOSE_FACTOR


@dataclass(frozen=True, slots=True)
class ReserveSide:
    """One side of a liquidation: the user's balance in the asset, its price and decimals."""

    amount: int
    price: int
    decimals: int


def v33_max_liquidatable_debt(
    *,
    health_factor: int,
    total_debt_base: int,
    debt: ReserveSide,
    collateral: ReserveSide,
    rounding: Rounding = HALF_UP,
) -> int:
    """The v3.3+ cap on the debt repaid: the whole reserve debt, unless the position is big
    (both sides ≥ $2,000) and only mildly unhealthy (HF > 0.95); then 50% of the user's total
    debt in base currency, converted back to the debt asset (floor)."""
    debt_base = rounding.debt_base(debt.amount, debt.price, debt.decimals)
    coll_base = collateral_base(collateral.amount, collateral.price, collateral.decimals)
    if (
        coll_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        and debt_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        and health_factor > CLOSE_FACTOR_HF_THRESHOLD
    ):
        default_base = percent_mul(total_debt_base, DEFAULT_LIQUIDATION_CLOSE_FACTOR)
        if debt_base > default_base:
            return default_base * asset_unit(debt.decimals) // debt.price
    return debt.amount


def leaves_dust(
    debt_left: int,
    collateral_left: int,
    debt: ReserveSide,
    collateral: ReserveSide,
    rounding: Rounding = HALF_UP,
) -> tuple[int, int] | None:
    """v3.3+ MustNotLeaveDust: when both sides keep something, each must keep ≥ $1,000.

    Returns the two leftovers in base currency when they are dust, else None.
    """
    if debt_left <= 0 or collateral_left <= 0:
        return None
    debt_left_base = rounding.debt_base(debt_left, debt.price, debt.decimals)
    coll_left_base = collateral_base(collateral_left, collateral.price, collateral.decimals)
    if debt_left_base < MIN_LEFTOVER_BASE or coll_left_base < MIN_LEFTOVER_BASE:
        return debt_left_base, coll_left_base
    return None


@dataclass(frozen=True, slots=True)
class CollateralToLiquidate:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate's results."""

    collateral_amount: int
    """Collateral the liquidator receives (protocol fee already taken out)."""
    debt_amount_needed: int
    """Debt actually repaid; less than asked when the user's collateral runs out."""
    liquidation_protocol_fee: int
    """Collateral sent to the treasury: a share of the bonus part."""


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
    rounding: Rounding = HALF_UP,
) -> CollateralToLiquidate:
    """LiquidationLogic._calculateAvailableCollateralToLiquidate, same operations and order.

    Base collateral = ``debtPrice * debtToCover * collateralUnit // (collateralPrice * debtUnit)``;
    with the bonus ``percentMul(base, bonus)``, capped at the user's balance (then the debt
    needed is recomputed from the cap with ``percentDiv``, ``percentDivCeil`` on v3.5+). The
    protocol fee is ``percentMul(amount - percentDiv(amount, bonus), fee)``, taken out of the
    liquidator's share.
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
        debt_needed = rounding.debt_for_capped_collateral(value // divisor, liquidation_bonus)
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
        check_uint256(collateral_amount - fee, "collateral after fee"),
        debt_needed,
        fee,
    )
