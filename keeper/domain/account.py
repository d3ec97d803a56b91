"""A user's account data exactly as Aave V3's Pool.getUserAccountData returns it, 3.0 to 3.6.

This is GenericLogic.calculateUserAccountData (plus calculateAvailableBorrows) of
@aave/core-v3 1.19.3, operation for operation, so the health factor agrees with the chain to the
wei. The inputs are a ``Market`` (reserves, eMode categories, oracle prices, block timestamp) and
a ``UserAccount`` (configuration bits, eMode category, scaled balances).

Points the Solidity settles and we follow:
* collateral value per asset is ``rayMul(scaled, normalizedIncome) * price // 10**decimals``;
  debt value is ``(rayMul(scaledVariable, normalizedDebt) + stableBalance) * price // unit``.
  Both round DOWN in v3.0 (later versions round debt up; not this one).
* eMode: when the user's category has a price source, that source's oracle price replaces the
  price of every asset *of that category* (collateral and debt alike); the category's ltv and
  liquidation threshold replace those of collateral assets of that category.
* A collateral counts only if the reserve's own liquidation threshold is non-zero (even when
  the eMode threshold would be used) and the user's collateral bit is set.
* Isolation mode, siloed borrowing, frozen or paused reserves do not enter this computation.

What later revisions change (``Market.revision``, see ``keeper.domain.revision``):
* 3.2+: an asset is in the user's eMode only if it is in the category's collateral bitmap
  (the reserve configuration's eMode bits are stale); an asset in the category's ltv-zero
  bitmap counts with LTV 0; no eMode price source; a collateral counts whatever its own
  liquidation threshold.
* 3.5+: balances round toward the protocol: aToken balance ``rayMulFloor``, debt ``rayMulCeil``
  and debt value ``mulDivCeil``; the health factor is
  ``wadDiv(sum(value * threshold), debt) / 1e4`` and available borrows use ``percentMulFloor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from keeper.domain.interest import normalized_debt, normalized_income, stable_debt_balance
from keeper.domain.reserve_config import ReserveConfiguration, UserConfiguration
from keeper.domain.revision import AaveRevision
from keeper.domain.wadray import (
    PERCENTAGE_FACTOR,
    RAY,
    UINT256_MAX,
    asset_unit,
    check_uint256,
    mul_div_ceil,
    percent_mul,
    percent_mul_floor,
    ray_mul,
    ray_mul_ceil,
    ray_mul_floor,
    wad_div,
)
from keeper.errors import KeeperError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class MissingMarketData(KeeperError, LookupError):
    """The market snapshot lacks a reserve, eMode category or price the account needs."""


@dataclass(frozen=True, slots=True)
class ReserveState:
    """One reserve as the Pool stores it (Pool.getReserveData), for the math that needs it.

    Indexes and rates are rays as of ``last_update_timestamp``; they are brought to the block
    timestamp by ``normalized_income`` / ``normalized_debt`` exactly as the contract does.
    """

    asset: str
    id: int
    configuration: ReserveConfiguration
    liquidity_index: int = RAY
    current_liquidity_rate: int = 0
    variable_borrow_index: int = RAY
    current_variable_borrow_rate: int = 0
    last_update_timestamp: int = 0

    def normalized_income(self, now: int) -> int:
        """The liquidity index at ``now`` (Pool.getReserveNormalizedIncome)."""
        return normalized_income(
            self.liquidity_index, self.current_liquidity_rate, self.last_update_timestamp, now
        )

    def normalized_debt(self, now: int, revision: AaveRevision = AaveRevision.V3_0) -> int:
        """The variable borrow index at ``now`` (Pool.getReserveNormalizedVariableDebt)."""
        return normalized_debt(
            self.variable_borrow_index,
            self.current_variable_borrow_rate,
            self.last_update_timestamp,
            now,
            revision,
        )


@dataclass(frozen=True, slots=True)
class EModeCategory:
    """An efficiency-mode category (Pool.getEModeCategoryData); percentages in basis points."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    price_source: str = ZERO_ADDRESS
    label: str = ""
    # 3.2+ (liquid eMode): reserve-id bitmaps; None on v3.0, where membership is the reserve
    # configuration's eMode category.
    collateral_bitmap: int | None = None
    borrowable_bitmap: int | None = None
    ltvzero_bitmap: int = 0

    @property
    def has_price_source(self) -> bool:
        """Whether the category overrides the oracle price of its assets."""
        return int(self.price_source, 16) != 0

    def counts_as_collateral(self, reserve: ReserveState, category_id: int) -> bool:
        """Whether ``reserve`` takes this category's LTV and threshold as collateral."""
        if self.collateral_bitmap is None:
            return reserve.configuration.emode_category == category_id
        return bool(self.collateral_bitmap >> reserve.id & 1)

    def ltv_is_zero(self, reserve: ReserveState) -> bool:
        """Whether ``reserve`` counts with LTV 0 in this category (3.6 ltv-zero bitmap)."""
        return bool(self.ltvzero_bitmap >> reserve.id & 1)


@dataclass(frozen=True, slots=True)
class UserReserve:
    """A user's balances in one reserve, as the tokens store them.

    ``scaled_a_token_balance`` and ``scaled_variable_debt`` are the scaledBalanceOf values;
    stable debt is the StableDebtToken's stored principal with the user's own rate and timestamp.
    """

    scaled_a_token_balance: int = 0
    scaled_variable_debt: int = 0
    stable_debt_principal: int = 0
    stable_borrow_rate: int = 0
    stable_last_update_timestamp: int = 0


_NO_POSITION = UserReserve()


@dataclass(frozen=True, slots=True)
class UserAccount:
    """What the Pool knows about one user: configuration bits, eMode category and balances.

    ``reserves`` is keyed by asset address spelled as in ``ReserveState.asset``; an asset missing
    from it is read as zero balances (as the tokens would answer).
    """

    configuration: UserConfiguration
    emode_category: int = 0
    reserves: Mapping[str, UserReserve] = field(default_factory=dict)

    def position(self, asset: str) -> UserReserve:
        """The user's balances in ``asset`` (zeros if the user never touched it)."""
        return self.reserves.get(asset, _NO_POSITION)


@dataclass(frozen=True, slots=True)
class Market:
    """The protocol state an account is evaluated against, at one block.

    ``reserves`` is keyed by reserve id (the index in Pool.getReservesList); ``prices`` holds
    AaveOracle.getAssetPrice for every asset and every eMode price source, in base-currency
    units (8 decimals for USD markets); ``timestamp`` is the block timestamp.
    """

    reserves: Mapping[int, ReserveState]
    prices: Mapping[str, int]
    timestamp: int
    emode_categories: Mapping[int, EModeCategory] = field(default_factory=dict)
    revision: AaveRevision = AaveRevision.V3_0

    def reserve(self, reserve_id: int) -> ReserveState:
        """The reserve with id ``reserve_id``; raises MissingMarketData if unknown."""
        try:
            return self.reserves[reserve_id]
        except KeyError:
            raise MissingMarketData(f"no reserve with id {reserve_id}") from None

    def reserve_of(self, asset: str) -> ReserveState:
        """The reserve whose underlying is ``asset``; raises MissingMarketData if unknown."""
        for reserve in self.reserves.values():
            if reserve.asset == asset:
                return reserve
        raise MissingMarketData(f"no reserve for asset {asset}")

    def price(self, asset: str) -> int:
        """The oracle price of ``asset``; raises MissingMarketData if unknown."""
        try:
            return self.prices[asset]
        except KeyError:
            raise MissingMarketData(f"no price for {asset}") from None

    def value_in(self, amount: int, asset: str, unit_asset: str) -> int:
        """``amount`` of ``asset`` in units of ``unit_asset`` at the oracle's prices, floored
        (what the Pool values a kept collateral at)."""
        units = 10 ** self.reserve_of(unit_asset).configuration.decimals
        worth: int = amount * self.price(asset) * units // (
            self.price(unit_asset) * 10 ** self.reserve_of(asset).configuration.decimals)
        return worth

    def emode_category(self, category_id: int) -> EModeCategory:
        """The eMode category ``category_id``; raises MissingMarketData if unknown."""
        try:
            return self.emode_categories[category_id]
        except KeyError:
            raise MissingMarketData(f"no eMode category {category_id}") from None


@dataclass(frozen=True, slots=True)
class AccountData:
    """Pool.getUserAccountData's answer, plus GenericLogic's ``hasZeroLtvCollateral``.

    Values in base currency (oracle units); ``ltv`` and ``current_liquidation_threshold`` are the
    collateral-weighted averages in basis points; ``health_factor`` is a wad and equals
    ``UINT256_MAX`` when the account has no debt.
    """

    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    current_liquidation_threshold: int
    ltv: int
    health_factor: int
    has_zero_ltv_collateral: bool


@dataclass(frozen=True, slots=True)
class UserDebt:
    """A user's current debt in one reserve, in the asset's units (Helpers.getUserCurrentDebt)."""

    stable: int
    variable: int

    @property
    def total(self) -> int:
        """Stable plus variable debt."""
        return self.stable + self.variable


def a_token_balance_of(scaled: int, index: int, revision: AaveRevision) -> int:
    """An aToken balance from a scaled one: half up on v3.0 to 3.4, down on 3.5+."""
    return ray_mul_floor(scaled, index) if revision.has_directed_rounding else ray_mul(scaled, index)


def debt_balance_of(scaled: int, index: int, revision: AaveRevision) -> int:
    """A variable debt balance from a scaled one: half up on v3.0 to 3.4, up on 3.5+."""
    return ray_mul_ceil(scaled, index) if revision.has_directed_rounding else ray_mul(scaled, index)


def a_token_balance(
    reserve: ReserveState, position: UserReserve, now: int,
    revision: AaveRevision = AaveRevision.V3_0,
) -> int:
    """AToken.balanceOf: the scaled balance times the liquidity index at ``now``."""
    return a_token_balance_of(
        position.scaled_a_token_balance, reserve.normalized_income(now), revision)


def user_debt(
    reserve: ReserveState, position: UserReserve, now: int,
    revision: AaveRevision = AaveRevision.V3_0,
) -> UserDebt:
    """The user's stable and variable debt in ``reserve`` at ``now``, as the debt tokens report."""
    variable = 0
    if position.scaled_variable_debt != 0:
        variable = debt_balance_of(
            position.scaled_variable_debt, reserve.normalized_debt(now, revision), revision)
    stable = stable_debt_balance(
        position.stable_debt_principal,
        position.stable_borrow_rate,
        position.stable_last_update_timestamp,
        now,
    )
    return UserDebt(stable=stable, variable=variable)


def asset_price(market: Market, account: UserAccount, reserve: ReserveState) -> int:
    """The price GenericLogic uses for ``reserve``: the eMode price source's when it applies."""
    if account.emode_category != 0 and not market.revision.has_liquid_emode:
        category = market.emode_category(account.emode_category)
        if (
            category.has_price_source
            and reserve.configuration.emode_category == account.emode_category
        ):
            emode_price = market.price(category.price_source)
            # GenericLogic tests the *price* for zero, not the source: a zero price from the
            # source falls back to the asset's own price.
            if emode_price != 0:
                return emode_price
    return market.price(reserve.asset)


def calculate_user_account_data(account: UserAccount, market: Market) -> AccountData:
    """Pool.getUserAccountData for ``account`` against ``market``, exact to the wei.

    Raises MissingMarketData if a reserve the user is flagged in, its price, or the user's
    eMode category is absent from ``market``; ArithmeticRevert where the contract would revert.
    """
    config = account.configuration
    if config.is_empty():
        return AccountData(0, 0, 0, 0, 0, UINT256_MAX, False)

    rev = market.revision
    emode_id = account.emode_category
    category = market.emode_category(emode_id) if emode_id != 0 else None

    now = market.timestamp
    total_collateral = total_debt = 0
    weighted_ltv = weighted_threshold = 0
    has_zero_ltv_collateral = False
    # Read once, not per reserve: the scan evaluates ~2,000 accounts of a crash on a core it
    # shares (15.3 -> 13.0 us an account with the flags read from the bitmap directly).
    liquid_emode, directed = rev.has_liquid_emode, rev.has_directed_rounding
    flags = config.data

    for reserve_id in config.active_reserve_ids():
        reserve = market.reserve(reserve_id)
        cfg = reserve.configuration
        unit = asset_unit(cfg.decimals)
        price = asset_price(market, account, reserve)
        position = account.position(reserve.asset)
        bits = flags >> (reserve_id << 1)  # bit 0: borrowing, bit 1: collateral

        if bits & 2 and (liquid_emode or cfg.liquidation_threshold != 0):
            balance = a_token_balance(reserve, position, now, rev)
            balance_base = check_uint256(balance * price, "collateral") // unit
            total_collateral = check_uint256(total_collateral + balance_base, "total collateral")
            in_emode = category is not None and category.counts_as_collateral(reserve, emode_id)
            ltv = _collateral_ltv(cfg, category if in_emode else None, reserve, rev)
            # v3.0 flags the reserve's own LTV of 0; 3.2+ the LTV the user gets.
            if (ltv if liquid_emode else cfg.ltv) != 0:
                weighted_ltv = check_uint256(weighted_ltv + balance_base * ltv, "avg ltv")
            else:
                has_zero_ltv_collateral = True
            threshold = (category.liquidation_threshold if in_emode and category is not None
                         else cfg.liquidation_threshold)
            weighted_threshold = check_uint256(
                weighted_threshold + balance_base * threshold, "avg liquidation threshold"
            )

        if bits & 1:
            debt = user_debt(reserve, position, now, rev).total
            if directed:
                debt_base = mul_div_ceil(debt, price, unit)
            else:
                debt_base = check_uint256(price * debt, "debt") // unit
            total_debt = check_uint256(total_debt + debt_base, "total debt")

    avg_ltv = weighted_ltv // total_collateral if total_collateral else 0
    avg_threshold = weighted_threshold // total_collateral if total_collateral else 0

    if total_debt == 0:
        health_factor = UINT256_MAX
    elif directed:
        health_factor = wad_div(weighted_threshold, total_debt) // PERCENTAGE_FACTOR
    else:
        health_factor = wad_div(percent_mul(total_collateral, avg_threshold), total_debt)

    return AccountData(
        total_collateral_base=total_collateral,
        total_debt_base=total_debt,
        available_borrows_base=available_borrows(total_collateral, total_debt, avg_ltv, rev),
        current_liquidation_threshold=avg_threshold,
        ltv=avg_ltv,
        health_factor=health_factor,
        has_zero_ltv_collateral=has_zero_ltv_collateral,
    )


def _collateral_ltv(
    cfg: ReserveConfiguration, category: EModeCategory | None, reserve: ReserveState,
    rev: AaveRevision,
) -> int:
    """The LTV a collateral counts with (``category``: the user's eMode, when it applies).

    v3.0: a reserve LTV of 0 stays 0 even in eMode; 3.2+ (ValidationLogic.getUserReserveLtv):
    the category's LTV, or 0 where the category's ltv-zero bitmap says so.
    """
    if category is None:
        return cfg.ltv
    if rev.has_liquid_emode:
        return 0 if category.ltv_is_zero(reserve) else category.ltv
    return category.ltv if cfg.ltv != 0 else 0


def is_bad_debt(data: AccountData) -> bool:
    """Debt and no collateral at all: nothing to liquidate; the protocol (3.3+) burns such
    debt into the reserve's deficit, a liquidator cannot."""
    return data.total_debt_base != 0 and data.total_collateral_base == 0


def available_borrows(
    total_collateral_base: int, total_debt_base: int, ltv: int,
    revision: AaveRevision = AaveRevision.V3_0,
) -> int:
    """GenericLogic.calculateAvailableBorrows: ``percentMul(collateral, ltv) - debt``, floor 0
    (``percentMulFloor`` on 3.5+)."""
    mul = percent_mul_floor if revision.has_directed_rounding else percent_mul
    capacity = mul(total_collateral_base, ltv)
    return capacity - total_debt_base if capacity >= total_debt_base else 0
