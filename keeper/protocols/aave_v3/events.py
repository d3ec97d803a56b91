"""Aave V3 events as typed frozen dataclasses, decoded from ``keeper.chain.types.Log``.

``decode_log(log)`` dispatches on ``topics[0]`` and returns one of the classes below, or None
for a log the keeper does not follow. Addresses come out lower-case, amounts as ints.

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

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keeper.chain.abi import Event
from keeper.chain.types import Log
from keeper.domain.wadray import ray_div
from keeper.protocols.aave_v3 import abis


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


def _addr(value: Any) -> str:
    return str(value).lower()


_Builder = Callable[[Log, Mapping[str, Any]], AaveEvent]


def _head(log: Log) -> tuple[str, int, int]:
    return (log.address, log.block_number, log.log_index)


def _pool_builders() -> dict[str, tuple[Event, _Builder]]:
    p = abis.pool()
    return {
        "Supply": (p.event("Supply"), lambda lg, d: Supply(
            *_head(lg), _addr(d["reserve"]), _addr(d["user"]), _addr(d["onBehalfOf"]),
            int(d["amount"]))),
        "Withdraw": (p.event("Withdraw"), lambda lg, d: Withdraw(
            *_head(lg), _addr(d["reserve"]), _addr(d["user"]), _addr(d["to"]), int(d["amount"]))),
        "Borrow": (p.event("Borrow"), lambda lg, d: Borrow(
            *_head(lg), _addr(d["reserve"]), _addr(d["user"]), _addr(d["onBehalfOf"]),
            int(d["amount"]), int(d["interestRateMode"]), int(d["borrowRate"]))),
        "Repay": (p.event("Repay"), lambda lg, d: Repay(
            *_head(lg), _addr(d["reserve"]), _addr(d["user"]), _addr(d["repayer"]),
            int(d["amount"]), bool(d["useATokens"]))),
        "LiquidationCall": (p.event("LiquidationCall"), lambda lg, d: LiquidationCall(
            *_head(lg), _addr(d["collateralAsset"]), _addr(d["debtAsset"]), _addr(d["user"]),
            int(d["debtToCover"]), int(d["liquidatedCollateralAmount"]), _addr(d["liquidator"]),
            bool(d["receiveAToken"]))),
        "ReserveUsedAsCollateralEnabled": (
            p.event("ReserveUsedAsCollateralEnabled"),
            lambda lg, d: ReserveUsedAsCollateralEnabled(
                *_head(lg), _addr(d["reserve"]), _addr(d["user"]))),
        "ReserveUsedAsCollateralDisabled": (
            p.event("ReserveUsedAsCollateralDisabled"),
            lambda lg, d: ReserveUsedAsCollateralDisabled(
                *_head(lg), _addr(d["reserve"]), _addr(d["user"]))),
        "ReserveDataUpdated": (p.event("ReserveDataUpdated"), lambda lg, d: ReserveDataUpdated(
            *_head(lg), _addr(d["reserve"]), int(d["liquidityRate"]), int(d["stableBorrowRate"]),
            int(d["variableBorrowRate"]), int(d["liquidityIndex"]),
            int(d["variableBorrowIndex"]))),
        "UserEModeSet": (p.event("UserEModeSet"), lambda lg, d: UserEModeSet(
            *_head(lg), _addr(d["user"]), int(d["categoryId"]))),
        "SwapBorrowRateMode": (p.event("SwapBorrowRateMode"), lambda lg, d: SwapBorrowRateMode(
            *_head(lg), _addr(d["reserve"]), _addr(d["user"]), int(d["interestRateMode"]))),
    }


def _token_builders() -> dict[str, tuple[Event, _Builder]]:
    a, s = abis.a_token(), abis.stable_debt_token()
    return {
        "Mint": (a.event("Mint"), lambda lg, d: ScaledMint(
            *_head(lg), _addr(d["caller"]), _addr(d["onBehalfOf"]), int(d["value"]),
            int(d["balanceIncrease"]), int(d["index"]))),
        "Burn": (a.event("Burn"), lambda lg, d: ScaledBurn(
            *_head(lg), _addr(d["from"]), _addr(d["target"]), int(d["value"]),
            int(d["balanceIncrease"]), int(d["index"]))),
        "BalanceTransfer": (a.event("BalanceTransfer"), lambda lg, d: BalanceTransfer(
            *_head(lg), _addr(d["from"]), _addr(d["to"]), int(d["value"]), int(d["index"]))),
        "StableMint": (s.event("Mint"), lambda lg, d: StableDebtMint(
            *_head(lg), _addr(d["user"]), _addr(d["onBehalfOf"]), int(d["amount"]),
            int(d["currentBalance"]), int(d["balanceIncrease"]), int(d["newRate"]),
            int(d["avgStableRate"]), int(d["newTotalSupply"]))),
        "StableBurn": (s.event("Burn"), lambda lg, d: StableDebtBurn(
            *_head(lg), _addr(d["from"]), int(d["amount"]), int(d["currentBalance"]),
            int(d["balanceIncrease"]), int(d["avgStableRate"]), int(d["newTotalSupply"]))),
    }


# Configurator events that change a reserve's parameters without a dedicated class: the book
# only needs to know the configuration word must be read again (it is, every block).
_RESERVE_PARAM_EVENTS = (
    "ReserveActive", "ReserveFrozen", "ReservePaused", "ReserveBorrowing",
    "ReserveStableRateBorrowing", "ReserveFlashLoaning", "ReserveFactorChanged",
    "BorrowCapChanged", "SupplyCapChanged", "LiquidationProtocolFeeChanged",
    "UnbackedMintCapChanged", "DebtCeilingChanged", "SiloedBorrowingChanged",
    "BorrowableInIsolationChanged",
)


def _param_builder(name: str) -> _Builder:
    return lambda lg, d: ReserveParamsChanged(*_head(lg), name, _addr(d["asset"]))


def _configurator_builders() -> dict[str, tuple[Event, _Builder]]:
    c = abis.pool_configurator()
    out: dict[str, tuple[Event, _Builder]] = {
        "ReserveInitialized": (c.event("ReserveInitialized"), lambda lg, d: ReserveInitialized(
            *_head(lg), _addr(d["asset"]), _addr(d["aToken"]), _addr(d["stableDebtToken"]),
            _addr(d["variableDebtToken"]), _addr(d["interestRateStrategyAddress"]))),
        "ReserveDropped": (c.event("ReserveDropped"), lambda lg, d: ReserveDropped(
            *_head(lg), _addr(d["asset"]))),
        "CollateralConfigurationChanged": (
            c.event("CollateralConfigurationChanged"),
            lambda lg, d: CollateralConfigurationChanged(
                *_head(lg), _addr(d["asset"]), int(d["ltv"]), int(d["liquidationThreshold"]),
                int(d["liquidationBonus"]))),
        "EModeCategoryAdded": (c.event("EModeCategoryAdded"), lambda lg, d: EModeCategoryAdded(
            *_head(lg), int(d["categoryId"]), int(d["ltv"]), int(d["liquidationThreshold"]),
            int(d["liquidationBonus"]), _addr(d["oracle"]), str(d["label"]))),
        "EModeAssetCategoryChanged": (
            c.event("EModeAssetCategoryChanged"),
            lambda lg, d: EModeAssetCategoryChanged(
                *_head(lg), _addr(d["asset"]), int(d["oldCategoryId"]),
                int(d["newCategoryId"]))),
    }
    for name in _RESERVE_PARAM_EVENTS:
        out[name] = (c.event(name), _param_builder(name))
    return out


def _feed_builders() -> dict[str, tuple[Event, _Builder]]:
    o, f, p = abis.oracle(), abis.price_feed(), abis.feed_proxy()
    return {
        "AssetSourceUpdated": (o.event("AssetSourceUpdated"), lambda lg, d: AssetSourceUpdated(
            *_head(lg), _addr(d["asset"]), _addr(d["source"]))),
        "AnswerUpdated": (f.event("AnswerUpdated"), lambda lg, d: AnswerUpdated(
            *_head(lg), int(d["current"]), int(d["roundId"]), int(d["updatedAt"]))),
        "AggregatorConfirmed": (p.event("AggregatorConfirmed"), lambda lg, d: AggregatorConfirmed(
            *_head(lg), _addr(d["previous"]), _addr(d["latest"]))),
    }


@dataclass(frozen=True, slots=True)
class Topics:
    """topic0 of each group of events, for ``eth_getLogs`` filters."""

    pool: tuple[str, ...]
    tokens: tuple[str, ...]
    configurator: tuple[str, ...]
    oracle: tuple[str, ...]
    feeds: tuple[str, ...]

    @property
    def positions(self) -> tuple[str, ...]:
        """What changes positions and the market's shape (everything but price feeds)."""
        return self.pool + self.tokens + self.configurator + self.oracle

    @property
    def all(self) -> tuple[str, ...]:
        return self.positions + self.feeds


def _all_pool_builders() -> dict[str, tuple[Event, _Builder]]:
    # Imported here: events_later builds on this module's classes.
    from keeper.protocols.aave_v3 import events_later
    return {**_pool_builders(), **events_later.pool_builders()}


def _all_configurator_builders() -> dict[str, tuple[Event, _Builder]]:
    from keeper.protocols.aave_v3 import events_later
    return {**_configurator_builders(), **events_later.configurator_builders()}


@functools.cache
def _decoders() -> dict[str, tuple[Event, _Builder]]:
    table: dict[str, tuple[Event, _Builder]] = {}
    for group in (_all_pool_builders(), _token_builders(), _all_configurator_builders(),
                  _feed_builders()):
        for event, builder in group.values():
            table[event.topic0] = (event, builder)
    return table


@functools.cache
def topics() -> Topics:
    """The topic0 values of every event ``decode_log`` understands, by emitting contract."""

    def t0(group: dict[str, tuple[Event, _Builder]], skip: tuple[str, ...] = ()) -> tuple[str, ...]:
        return tuple(ev.topic0 for name, (ev, _) in group.items() if name not in skip)

    feeds = _feed_builders()
    return Topics(
        pool=t0(_all_pool_builders()),
        tokens=t0(_token_builders()),
        configurator=t0(_all_configurator_builders()),
        oracle=(feeds["AssetSourceUpdated"][0].topic0,),
        feeds=t0(feeds, skip=("AssetSourceUpdated",)),
    )


def decode_log(log: Log) -> AaveEvent | None:
    """The typed event of ``log``, or None if it is not one the keeper follows."""
    if not log.topics:
        return None
    entry = _decoders().get(log.topics[0])
    if entry is None:
        return None
    event, build = entry
    if len(log.topics) - 1 != sum(event.indexed):
        # Same name and types but other indexing (an ERC-20 Transfer vs an ERC-721 one):
        # not the event we mean.
        return None
    return build(log, event.decode(log.topics, log.data))
