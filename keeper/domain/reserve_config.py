"""Decoding of Aave V3's packed configuration words.

``ReserveConfigurationMap`` (one uint256 per reserve) and ``UserConfigurationMap`` (one uint256 per
user, two bits per reserve id). Bit positions are those of ReserveConfiguration.sol and
UserConfiguration.sol in @aave/core-v3 1.19.3.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.domain.wadray import UINT256_MAX, ArithmeticRevert

MAX_RESERVES_COUNT = 128

# (first bit, width) of every field of ReserveConfigurationMap.
_LTV = (0, 16)
_LIQUIDATION_THRESHOLD = (16, 16)
_LIQUIDATION_BONUS = (32, 16)
_DECIMALS = (48, 8)
_ACTIVE = (56, 1)
_FROZEN = (57, 1)
_BORROWING_ENABLED = (58, 1)
_STABLE_BORROWING_ENABLED = (59, 1)
_PAUSED = (60, 1)
_BORROWABLE_IN_ISOLATION = (61, 1)
_SILOED_BORROWING = (62, 1)
_FLASHLOAN_ENABLED = (63, 1)
_RESERVE_FACTOR = (64, 16)
_BORROW_CAP = (80, 36)
_SUPPLY_CAP = (116, 36)
_LIQUIDATION_PROTOCOL_FEE = (152, 16)
_EMODE_CATEGORY = (168, 8)
_UNBACKED_MINT_CAP = (176, 36)
_DEBT_CEILING = (212, 40)


def _get(data: int, field: tuple[int, int]) -> int:
    start, width = field
    return (data >> start) & ((1 << width) - 1)


def _put(value: int, field: tuple[int, int], name: str) -> int:
    start, width = field
    if value < 0 or value >= 1 << width:
        raise ValueError(f"{name}={value} does not fit {width} bits")
    return value << start


@dataclass(frozen=True, slots=True)
class ReserveConfiguration:
    """The decoded ReserveConfigurationMap of one reserve.

    Percentages are basis points (ltv 8000 = 80.00%; liquidation_bonus 10500 = +5%). Caps are in
    whole tokens (0 = no cap); debt_ceiling has 2 decimals (DEBT_CEILING_DECIMALS).
    """

    ltv: int = 0
    liquidation_threshold: int = 0
    liquidation_bonus: int = 0
    decimals: int = 0
    active: bool = False
    frozen: bool = False
    borrowing_enabled: bool = False
    stable_borrowing_enabled: bool = False
    paused: bool = False
    borrowable_in_isolation: bool = False
    siloed_borrowing: bool = False
    flashloan_enabled: bool = False
    reserve_factor: int = 0
    borrow_cap: int = 0
    supply_cap: int = 0
    liquidation_protocol_fee: int = 0
    emode_category: int = 0
    unbacked_mint_cap: int = 0
    debt_ceiling: int = 0


def decode_reserve_configuration(data: int) -> ReserveConfiguration:
    """Decode the ``data`` word of a ReserveConfigurationMap (Pool.getConfiguration)."""
    if data < 0 or data > UINT256_MAX:
        raise ValueError(f"configuration word out of uint256 range: {data}")
    return ReserveConfiguration(
        ltv=_get(data, _LTV),
        liquidation_threshold=_get(data, _LIQUIDATION_THRESHOLD),
        liquidation_bonus=_get(data, _LIQUIDATION_BONUS),
        decimals=_get(data, _DECIMALS),
        active=bool(_get(data, _ACTIVE)),
        frozen=bool(_get(data, _FROZEN)),
        borrowing_enabled=bool(_get(data, _BORROWING_ENABLED)),
        stable_borrowing_enabled=bool(_get(data, _STABLE_BORROWING_ENABLED)),
        paused=bool(_get(data, _PAUSED)),
        borrowable_in_isolation=bool(_get(data, _BORROWABLE_IN_ISOLATION)),
        siloed_borrowing=bool(_get(data, _SILOED_BORROWING)),
        flashloan_enabled=bool(_get(data, _FLASHLOAN_ENABLED)),
        reserve_factor=_get(data, _RESERVE_FACTOR),
        borrow_cap=_get(data, _BORROW_CAP),
        supply_cap=_get(data, _SUPPLY_CAP),
        liquidation_protocol_fee=_get(data, _LIQUIDATION_PROTOCOL_FEE),
        emode_category=_get(data, _EMODE_CATEGORY),
        unbacked_mint_cap=_get(data, _UNBACKED_MINT_CAP),
        debt_ceiling=_get(data, _DEBT_CEILING),
    )


def encode_reserve_configuration(config: ReserveConfiguration) -> int:
    """Pack a ReserveConfiguration back into its uint256 word (the inverse of decoding).

    Useful to build fixtures; raises ValueError if a field does not fit its bit width.
    """
    return (
        _put(config.ltv, _LTV, "ltv")
        | _put(config.liquidation_threshold, _LIQUIDATION_THRESHOLD, "liquidation_threshold")
        | _put(config.liquidation_bonus, _LIQUIDATION_BONUS, "liquidation_bonus")
        | _put(config.decimals, _DECIMALS, "decimals")
        | _put(int(config.active), _ACTIVE, "active")
        | _put(int(config.frozen), _FROZEN, "frozen")
        | _put(int(config.borrowing_enabled), _BORROWING_ENABLED, "borrowing_enabled")
        | _put(
            int(config.stable_borrowing_enabled),
            _STABLE_BORROWING_ENABLED,
            "stable_borrowing_enabled",
        )
        | _put(int(config.paused), _PAUSED, "paused")
        | _put(
            int(config.borrowable_in_isolation), _BORROWABLE_IN_ISOLATION, "borrowable_in_isolation"
        )
        | _put(int(config.siloed_borrowing), _SILOED_BORROWING, "siloed_borrowing")
        | _put(int(config.flashloan_enabled), _FLASHLOAN_ENABLED, "flashloan_enabled")
        | _put(config.reserve_factor, _RESERVE_FACTOR, "reserve_factor")
        | _put(config.borrow_cap, _BORROW_CAP, "borrow_cap")
        | _put(config.supply_cap, _SUPPLY_CAP, "supply_cap")
        | _put(
            config.liquidation_protocol_fee, _LIQUIDATION_PROTOCOL_FEE, "liquidation_protocol_fee"
        )
        | _put(config.emode_category, _EMODE_CATEGORY, "emode_category")
        | _put(config.unbacked_mint_cap, _UNBACKED_MINT_CAP, "unbacked_mint_cap")
        | _put(config.debt_ceiling, _DEBT_CEILING, "debt_ceiling")
    )


def _check_reserve_index(reserve_index: int) -> None:
    # UserConfiguration requires reserveIndex < MAX_RESERVES_COUNT (INVALID_RESERVE_INDEX).
    if not 0 <= reserve_index < MAX_RESERVES_COUNT:
        raise ArithmeticRevert(f"invalid reserve index {reserve_index}")


@dataclass(frozen=True, slots=True)
class UserConfiguration:
    """A user's UserConfigurationMap: bit 2*i = borrowing reserve i, bit 2*i+1 = collateral."""

    data: int = 0

    def is_borrowing(self, reserve_index: int) -> bool:
        """Whether the user has the borrowing flag set for reserve id ``reserve_index``."""
        _check_reserve_index(reserve_index)
        return (self.data >> (reserve_index << 1)) & 1 != 0

    def is_using_as_collateral(self, reserve_index: int) -> bool:
        """Whether the user has enabled reserve id ``reserve_index`` as collateral."""
        _check_reserve_index(reserve_index)
        return (self.data >> ((reserve_index << 1) + 1)) & 1 != 0

    def is_using_as_collateral_or_borrowing(self, reserve_index: int) -> bool:
        """Whether either flag is set for reserve id ``reserve_index``."""
        _check_reserve_index(reserve_index)
        return (self.data >> (reserve_index << 1)) & 3 != 0

    def is_empty(self) -> bool:
        """No flag set at all: the account has nothing to evaluate."""
        return self.data == 0

    def active_reserve_ids(self) -> tuple[int, ...]:
        """Reserve ids with any flag set, ascending (the order GenericLogic visits them)."""
        ids: list[int] = []
        data, i = self.data, 0
        while data and i < MAX_RESERVES_COUNT:
            if data & 3:
                ids.append(i)
            data >>= 2
            i += 1
        return tuple(ids)

    def with_borrowing(self, reserve_index: int, borrowing: bool) -> UserConfiguration:
        """A copy with the borrowing flag of ``reserve_index`` set or cleared."""
        _check_reserve_index(reserve_index)
        bit = 1 << (reserve_index << 1)
        return UserConfiguration(self.data | bit if borrowing else self.data & ~bit)

    def with_collateral(self, reserve_index: int, using_as_collateral: bool) -> UserConfiguration:
        """A copy with the collateral flag of ``reserve_index`` set or cleared."""
        _check_reserve_index(reserve_index)
        bit = 1 << ((reserve_index << 1) + 1)
        return UserConfiguration(self.data | bit if using_as_collateral else self.data & ~bit)
