"""Aave 3.4+ custom errors (the Pool's Errors library), by selector, for revert reasons in words.

Up to 3.3 the Pool reverts with ``Error(string)`` holding a numeric code; from 3.4 with custom
errors such as ``MustNotLeaveDust()``. ``decode_pool_error`` names one from revert data, with
its arguments; ``keeper.domain.liquidation.error_name`` maps a name to the old UPPER_SNAKE form.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

# The signatures of the Errors library of @aave-dao/aave-v3-origin 3.6.0.
SIGNATURES: tuple[str, ...] = (
    "CallerNotPoolAdmin()", "CallerNotPoolOrEmergencyAdmin()", "CallerNotRiskOrPoolAdmin()",
    "CallerNotAssetListingOrPoolAdmin()", "AddressesProviderNotRegistered()",
    "InvalidAddressesProviderId()", "NotContract()", "CallerNotPoolConfigurator()",
    "CallerNotAToken()", "InvalidAddressesProvider()", "InvalidFlashloanExecutorReturn()",
    "ReserveAlreadyAdded()", "NoMoreReservesAllowed()", "EModeCategoryReserved()",
    "ReserveLiquidityNotZero()", "FlashloanPremiumInvalid()", "InvalidReserveParams()",
    "InvalidEmodeCategoryParams()", "CallerMustBePool()", "InvalidMintAmount()",
    "InvalidBurnAmount()", "InvalidAmount()", "ReserveInactive()", "ReserveFrozen()",
    "ReservePaused()", "BorrowingNotEnabled()", "NotEnoughAvailableUserBalance()",
    "InvalidInterestRateModeSelected()", "HealthFactorLowerThanLiquidationThreshold()",
    "CollateralCannotCoverNewBorrow()", "NoDebtOfSelectedType()",
    "NoExplicitAmountToRepayOnBehalf()", "UnderlyingBalanceZero()",
    "HealthFactorNotBelowThreshold()", "CollateralCannotBeLiquidated()",
    "SpecifiedCurrencyNotBorrowedByUser()", "InconsistentFlashloanParams()",
    "BorrowCapExceeded()", "SupplyCapExceeded()", "DebtCeilingExceeded()",
    "UnderlyingClaimableRightsNotZero()", "VariableDebtSupplyNotZero()", "LtvValidationFailed()",
    "InconsistentEModeCategory()", "PriceOracleSentinelCheckFailed()",
    "AssetNotBorrowableInIsolation()", "ReserveAlreadyInitialized()",
    "UserInIsolationModeOrLtvZero()", "InvalidLtv()", "InvalidLiquidationThreshold()",
    "InvalidLiquidationBonus()", "InvalidDecimals()", "InvalidReserveFactor()",
    "InvalidBorrowCap()", "InvalidSupplyCap()", "InvalidLiquidationProtocolFee()",
    "InvalidDebtCeiling()", "InvalidReserveIndex()", "AclAdminCannotBeZero()",
    "InconsistentParamsLength()", "ZeroAddressNotValid()", "InvalidExpiration()",
    "InvalidSignature()", "OperationNotSupported()", "DebtCeilingNotZero()", "AssetNotListed()",
    "InvalidOptimalUsageRatio()", "UnderlyingCannotBeRescued()",
    "AddressesProviderAlreadyAdded()", "PoolAddressesDoNotMatch()", "SiloedBorrowingViolation()",
    "ReserveDebtNotZero()", "FlashloanDisabled()", "InvalidMaxRate()", "WithdrawToAToken()",
    "SupplyToAToken()", "Slope2MustBeGteSlope1()", "CallerNotRiskOrPoolOrEmergencyAdmin()",
    "LiquidationGraceSentinelCheckFailed()", "InvalidGracePeriod()", "InvalidFreezeState()",
    "InvalidLtvzeroState()", "NotBorrowableInEMode()", "CallerNotUmbrella()",
    "ReserveNotInDeficit()", "MustNotLeaveDust()", "UserCannotHaveDebt()", "SelfLiquidation()",
    "CallerNotPositionManager()", "InvalidCollateralInEmode(address,uint256)",
    "InvalidDebtInEmode(address,uint256)", "MustBeEmodeCollateral(address,uint256)",
)


@functools.cache
def _by_selector() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    out: dict[bytes, tuple[str, tuple[str, ...]]] = {}
    for signature in SIGNATURES:
        name, _, rest = signature.partition("(")
        types = tuple(t for t in rest.rstrip(")").split(",") if t)
        out[keccak(text=signature)[:4]] = (name, types)
    return out


def decode_pool_error(data: bytes) -> str | None:
    """``MustNotLeaveDust`` or ``InvalidDebtInEmode(0x…, 1)`` from revert data; None when the
    data is no Aave custom error."""
    found = _by_selector().get(data[:4])
    if found is None:
        return None
    name, types = found
    if not types:
        return name
    try:
        args: Sequence[Any] = abi_decode(list(types), data[4:])
    except Exception:  # malformed data behind a known selector: the name is still right
        return name
    return f"{name}({', '.join(str(a) for a in args)})"
