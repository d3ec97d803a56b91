"""Aave V3 events as typed frozen dataclasses, decoded from ``keeper.chain.types.Log``.

``keeper.protocols.aave_v3.decoding.decode_log(log)`` turns a raw log into one of the classes
below. Addresses come out lower-case, amounts as ints.

The aToken and the variable debt token share ``Mint``/``Burn`` signatures (both come from
ScaledBalanceTokenBase): they decode to ``ScaledMint``/``ScaledBurn`` carrying the emitting
``token``; the book knows which token is which. Meaning of their fields, from
ScaledBalanceTokenBase.sol of @aave/core-v3 1.19.3:

* ``Mint(caller, onBehalfOf, value, balanceIncrease, index)`` is emitted by a mint with
  ``value = amount + balanceIncrease``, but also by a *burn* smaller than the interest accrued
  since the user's last action, with ``value = balanceIncrease - amount``, and by a transfer
  (interest only: ``value == balanceIncrease``). ``ScaledMint.scaled_delta`` resolves the three.
* ``Burn(from, target, value, balanceIncrease, index)``: ``value = amount - balanceIncrease``.
* aToken ``BalanceTransfer(from, to, value, index)``: ``value`` is already scaled
  (``amount.rayDiv(index)``, the exact figure the token moves).

The scaled change of a mint or burn of ``amount`` is ``amount.rayDiv(index)``, rounded half up
exactly as the token does it; 3.5+ tokens emit balance differences instead, which the book
turns into the stored scaled balance with ``keeper.domain.scaled_balance.scaled_after``.
Events added after v3.0 (deficits, the proxy's ``Upgraded``, liquid eMode) are in
``events_later``.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.domain.wadray import ray_div


@dataclass(frozen=True, slots=True)
class AaveEvent:
    """Where an event comes from: emitting contract and position in the chain."""

    address: str
    block_number: int
    log_index: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


# ---- Pool ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Supply(AaveEvent):
    reserve: str
    user: str
    on_behalf_of: str
    amount: int


@dataclass(frozen=True, slots=True)
class Withdraw(AaveEvent):
    reserve: str
    user: str
    to: str
    amount: int


@dataclass(frozen=True, slots=True)
class Borrow(AaveEvent):
    reserve: str
    user: str
    on_behalf_of: str
    amount: int
    interest_rate_mode: int
    borrow_rate: int


@dataclass(frozen=True, slots=True)
class Repay(AaveEvent):
    reserve: str
    user: str
    repayer: str
    amount: int
    use_a_tokens: bool


@dataclass(frozen=True, slots=True)
class LiquidationCall(AaveEvent):
    collateral_asset: str
    debt_asset: str
    user: str
    debt_to_cover: int
    liquidated_collateral_amount: int
    liquidator: str
    receive_a_token: bool


@dataclass(frozen=True, slots=True)
class ReserveUsedAsCollateralEnabled(AaveEvent):
    reserve: str
    user: str


@dataclass(frozen=True, slots=True)
class ReserveUsedAsCollateralDisabled(AaveEvent):
    reserve: str
    user: str


@dataclass(frozen=True, slots=True)
class ReserveDataUpdated(AaveEvent):
    reserve: str
    liquidity_rate: int
    stable_borrow_rate: int
    variable_borrow_rate: int
    liquidity_index: int
    variable_borrow_index: int


@dataclass(frozen=True, slots=True)
class UserEModeSet(AaveEvent):
    user: str
    category_id: int


@dataclass(frozen=True, slots=True)
class SwapBorrowRateMode(AaveEvent):
    reserve: str
    user: str
    interest_rate_mode: int


# ---- aToken / variable debt token (ScaledBalanceTokenBase) --------------------------------------
@dataclass(frozen=True, slots=True)
class ScaledMint(AaveEvent):
    """A scaled-balance token's ``Mint``; ``address`` is the token (aToken or variable debt)."""

    caller: str
    on_behalf_of: str
    value: int
    balance_increase: int
    index: int

    @property
    def scaled_delta(self) -> int:
        """The change of ``on_behalf_of``'s scaled balance: positive for a mint, negative when
        the event stands for a burn smaller than the accrued interest, 0 for interest only."""
        if self.value >= self.balance_increase:
            # A mint of ``amount`` (a transfer's interest-only Mint has amount 0).
            return ray_div(self.value - self.balance_increase, self.index)
        # A burn of ``amount`` reported as a mint of the interest left over.
        return -ray_div(self.balance_increase - self.value, self.index)


@dataclass(frozen=True, slots=True)
class ScaledBurn(AaveEvent):
    """A scaled-balance token's ``Burn``; ``address`` is the token."""

    from_: str
    target: str
    value: int
    balance_increase: int
    index: int

    @property
    def scaled_delta(self) -> int:
        """The (negative) change of ``from_``'s scaled balance."""
        return -ray_div(self.value + self.balance_increase, self.index)


@dataclass(frozen=True, slots=True)
class BalanceTransfer(AaveEvent):
    """aToken ``BalanceTransfer``: ``value`` scaled, moved from ``from_`` to ``to``."""

    from_: str
    to: str
    value: int
    index: int


# ---- stable debt token ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StableDebtMint(AaveEvent):
    """StableDebtToken ``Mint``: also emitted by a burn smaller than the accrued interest.

    Either way the stored principal becomes ``current_balance - balance_increase + amount``
    (the previous principal plus the minted ``amount``), at the user's rate ``new_rate``.
    """

    user: str
    on_behalf_of: str
    amount: int
    current_balance: int
    balance_increase: int
    new_rate: int
    avg_stable_rate: int
    new_total_supply: int

    @property
    def principal_after(self) -> int:
        return self.current_balance - self.balance_increase + self.amount


@dataclass(frozen=True, slots=True)
class StableDebtBurn(AaveEvent):
    """StableDebtToken ``Burn``: the principal becomes ``current_balance - balance_increase -
    amount``; when it reaches zero the token also clears the user's rate and timestamp."""

    from_: str
    amount: int
    current_balance: int
    balance_increase: int
    avg_stable_rate: int
    new_total_supply: int

    @property
    def principal_after(self) -> int:
        return self.current_balance - self.balance_increase - self.amount


# ---- PoolConfigurator -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReserveInitialized(AaveEvent):
    asset: str
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    interest_rate_strategy: str


@dataclass(frozen=True, slots=True)
class ReserveDropped(AaveEvent):
    asset: str


@dataclass(frozen=True, slots=True)
class CollateralConfigurationChanged(AaveEvent):
    asset: str
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int


@dataclass(frozen=True, slots=True)
class EModeCategoryAdded(AaveEvent):
    category_id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    oracle: str
    label: str


@dataclass(frozen=True, slots=True)
class EModeAssetCategoryChanged(AaveEvent):
    asset: str
    old_category_id: int
    new_category_id: int


@dataclass(frozen=True, slots=True)
class ReserveParamsChanged(AaveEvent):
    """Any other configurator event about one reserve (active, frozen, paused, caps, ...):
    the reserve's configuration word is re-read; ``name`` says which event it was."""

    name: str
    asset: str


# ---- oracle and feeds -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AssetSourceUpdated(AaveEvent):
    asset: str
    source: str


@dataclass(frozen=True, slots=True)
class AnswerUpdated(AaveEvent):
    """A Chainlink-style aggregator published a new answer; ``address`` is the aggregator."""

    current: int
    round_id: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class AggregatorConfirmed(AaveEvent):
    """A feed proxy switched to another aggregator; ``address`` is the proxy."""

    previous: str
    latest: str
