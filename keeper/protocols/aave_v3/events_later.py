"""Events the Pool, its proxy and the configurator emit from 3.1 on (not in the v3.0 ABIs).

Written out by hand, like Multicall3's interface: the keeper reads every revision with the
ABIs of none in particular. The unit tests check each signature against the 3.6 build.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keeper.chain.abi import Event
from keeper.chain.types import Log
from keeper.protocols.aave_v3.events import AaveEvent, ReserveParamsChanged


@dataclass(frozen=True, slots=True)
class DeficitCreated(AaveEvent):
    """3.3+: a liquidation took the user's last collateral; the rest of ``debt_asset`` debt was
    burned (the debt token's ``Burn`` in the same transaction) into the reserve's deficit."""

    user: str
    debt_asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class DeficitCovered(AaveEvent):
    """3.3+: the Umbrella (or anyone allowed) paid down a reserve's deficit."""

    reserve: str
    caller: str
    amount: int


@dataclass(frozen=True, slots=True)
class Upgraded(AaveEvent):
    """A proxy (the Pool's, for the keeper) now runs ``implementation``: re-read the revision."""

    implementation: str


@dataclass(frozen=True, slots=True)
class EModeAssetChanged(AaveEvent):
    """3.2+: an asset entered or left an eMode category's collateral, borrowable or ltv-zero
    bitmap (``name`` says which)."""

    name: str
    asset: str
    category_id: int
    enabled: bool


def _ev(name: str, inputs: tuple[str, ...], indexed: tuple[bool, ...],
        names: tuple[str, ...]) -> Event:
    return Event(name, inputs, indexed, names)


DEFICIT_CREATED = _ev("DeficitCreated", ("address", "address", "uint256"), (True, True, False),
                      ("user", "debtAsset", "amountCreated"))
DEFICIT_COVERED = _ev("DeficitCovered", ("address", "address", "uint256"), (True, False, False),
                      ("reserve", "caller", "amountCovered"))
UPGRADED = _ev("Upgraded", ("address",), (True,), ("implementation",))
_EMODE_ASSET = {
    name: _ev(name, ("address", "uint8", "bool"), (True, False, False),
              ("asset", "categoryId", field))
    for name, field in (("AssetCollateralInEModeChanged", "collateral"),
                        ("AssetBorrowableInEModeChanged", "borrowable"),
                        ("AssetLtvzeroInEModeChanged", "ltvzero"))
}
_GRACE = {
    "LiquidationGracePeriodChanged": _ev("LiquidationGracePeriodChanged", ("address", "uint40"),
                                         (True, False), ("asset", "gracePeriodUntil")),
    "LiquidationGracePeriodDisabled": _ev("LiquidationGracePeriodDisabled", ("address",),
                                          (True,), ("asset",)),
}

_Builder = Callable[[Log, Mapping[str, Any]], AaveEvent]


def _head(log: Log) -> tuple[str, int, int]:
    return (log.address, log.block_number, log.log_index)


def _a(value: Any) -> str:
    return str(value).lower()


def _emode_builder(name: str, field: str) -> _Builder:
    return lambda lg, d: EModeAssetChanged(*_head(lg), name, _a(d["asset"]),
                                           int(d["categoryId"]), bool(d[field]))


def _grace_builder(name: str) -> _Builder:
    return lambda lg, d: ReserveParamsChanged(*_head(lg), name, _a(d["asset"]))


def pool_builders() -> dict[str, tuple[Event, _Builder]]:
    """The Pool's (and its proxy's) post-3.0 events."""
    return {
        "DeficitCreated": (DEFICIT_CREATED, lambda lg, d: DeficitCreated(
            *_head(lg), _a(d["user"]), _a(d["debtAsset"]), int(d["amountCreated"]))),
        "DeficitCovered": (DEFICIT_COVERED, lambda lg, d: DeficitCovered(
            *_head(lg), _a(d["reserve"]), _a(d["caller"]), int(d["amountCovered"]))),
        "Upgraded": (UPGRADED, lambda lg, d: Upgraded(*_head(lg), _a(d["implementation"]))),
    }


def configurator_builders() -> dict[str, tuple[Event, _Builder]]:
    """The configurator's post-3.0 events that change what positions are worth."""
    out: dict[str, tuple[Event, _Builder]] = {}
    for name, event in _EMODE_ASSET.items():
        out[name] = (event, _emode_builder(name, event.names[2]))
    for name, event in _GRACE.items():
        out[name] = (event, _grace_builder(name))
    return out
