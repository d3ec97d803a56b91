"""Decode raw logs into the typed events of ``events`` and ``events_later``.

``decode_log(log)`` dispatches on ``topics[0]`` and returns the event, or None for a log the
keeper does not follow; ``topics()`` gives the topic0 of every followed event by emitting
contract, for ``eth_getLogs`` filters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keeper.chain.abi import Event
from keeper.chain.types import Log
from keeper.protocols.aave_v3 import abis, events_later
from keeper.protocols.aave_v3.events import (
    AaveEvent,
    AggregatorConfirmed,
    AnswerUpdated,
    AssetSourceUpdated,
    BalanceTransfer,
    Borrow,
    CollateralConfigurationChanged,
    EModeAssetCategoryChanged,
    EModeCategoryAdded,
    LiquidationCall,
    Repay,
    ReserveDataUpdated,
    ReserveDropped,
    ReserveInitialized,
    ReserveParamsChanged,
    ReserveUsedAsCollateralDisabled,
    ReserveUsedAsCollateralEnabled,
    ScaledBurn,
    ScaledMint,
    StableDebtBurn,
    StableDebtMint,
    Supply,
    SwapBorrowRateMode,
    UserEModeSet,
    Withdraw,
)


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
    return {**_pool_builders(), **events_later.pool_builders()}


def _all_configurator_builders() -> dict[str, tuple[Event, _Builder]]:
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
