"""ReserveConfigurationMap / UserConfigurationMap decoding against the Solidity bit layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.domain.reserve_config import (
    MAX_RESERVES_COUNT,
    ReserveConfiguration,
    UserConfiguration,
    decode_reserve_configuration,
    encode_reserve_configuration,
)
from keeper.domain.wadray import UINT256_MAX, ArithmeticRevert

# Masks copied from ReserveConfiguration.sol (1.19.3): the field is where the mask has zeros.
SOLIDITY_MASKS = {
    "ltv": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0000,
    "liquidation_threshold": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0000FFFF,
    "liquidation_bonus": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0000FFFFFFFF,
    "decimals": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00FFFFFFFFFFFF,
    "active": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFFFFFFFF,
    "frozen": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFDFFFFFFFFFFFFFF,
    "borrowing_enabled": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFBFFFFFFFFFFFFFF,
    "stable_borrowing_enabled": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF7FFFFFFFFFFFFFF,
    "paused": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFFFFFFFFF,
    "borrowable_in_isolation": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFDFFFFFFFFFFFFFFF,
    "siloed_borrowing": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFBFFFFFFFFFFFFFFF,
    "flashloan_enabled": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF7FFFFFFFFFFFFFFF,
    "reserve_factor": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0000FFFFFFFFFFFFFFFF,
    "borrow_cap": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF000000000FFFFFFFFFFFFFFFFFFFF,
    "supply_cap": 0xFFFFFFFFFFFFFFFFFFFFFFFFFF000000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
    "liquidation_protocol_fee": 0xFFFFFFFFFFFFFFFFFFFFFF0000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
    "emode_category": 0xFFFFFFFFFFFFFFFFFFFF00FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
    "unbacked_mint_cap": 0xFFFFFFFFFFF000000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
    "debt_ceiling": 0xF0000000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
}


def solidity_get(data: int, name: str) -> int:
    """The contract's getter: (data & ~MASK) >> start_bit."""
    field_bits = ~SOLIDITY_MASKS[name] & UINT256_MAX
    start = (field_bits & -field_bits).bit_length() - 1
    return (data & field_bits) >> start


def test_weth_like_configuration_worked_example() -> None:
    # ltv 8000 = 0x1F40 (bits 0-15), threshold 8250 = 0x203A (16-31), bonus 10500 = 0x2904
    # (32-47), decimals 18 = 0x12 (48-55), active (56) + borrowing (58) + flashloan (63),
    # reserve factor 1500 = 0x5DC (64-79), protocol fee 1000 = 0x3E8 (152-167), eMode 2 (168-).
    data = (
        0x1F40
        | 0x203A << 16
        | 0x2904 << 32
        | 0x12 << 48
        | 1 << 56
        | 1 << 58
        | 1 << 63
        | 0x5DC << 64
        | 0x3E8 << 152
        | 2 << 168
    )
    cfg = decode_reserve_configuration(data)
    assert cfg == ReserveConfiguration(
        ltv=8000,
        liquidation_threshold=8250,
        liquidation_bonus=10500,
        decimals=18,
        active=True,
        borrowing_enabled=True,
        flashloan_enabled=True,
        reserve_factor=1500,
        liquidation_protocol_fee=1000,
        emode_category=2,
    )
    assert encode_reserve_configuration(cfg) == data


@given(st.integers(min_value=0, max_value=UINT256_MAX))
def test_decode_matches_solidity_getters(data: int) -> None:
    cfg = decode_reserve_configuration(data)
    for name in SOLIDITY_MASKS:
        assert int(getattr(cfg, name)) == solidity_get(data, name), name


@given(st.integers(min_value=0, max_value=(1 << 252) - 1))
def test_encode_inverts_decode(data: int) -> None:
    # Bits 252-255 are unused by v3.0, so every word below 2**252 round-trips.
    assert encode_reserve_configuration(decode_reserve_configuration(data)) == data


def test_encode_rejects_fields_too_wide() -> None:
    with pytest.raises(ValueError):
        encode_reserve_configuration(ReserveConfiguration(ltv=1 << 16))
    with pytest.raises(ValueError):
        decode_reserve_configuration(-1)


def test_user_configuration_bits() -> None:
    # Reserve 0: borrowing (bit 0). Reserve 1: collateral (bit 3). Reserve 2: both (bits 4, 5).
    cfg = UserConfiguration(0b11_10_01)
    assert cfg.is_borrowing(0) and not cfg.is_using_as_collateral(0)
    assert not cfg.is_borrowing(1) and cfg.is_using_as_collateral(1)
    assert cfg.is_borrowing(2) and cfg.is_using_as_collateral(2)
    assert not cfg.is_using_as_collateral_or_borrowing(3)
    assert cfg.is_using_as_collateral(3) is False
    assert cfg.active_reserve_ids() == (0, 1, 2)
    assert UserConfiguration().is_empty()
    built = UserConfiguration().with_borrowing(0, True).with_collateral(1, True)
    built = built.with_borrowing(2, True).with_collateral(2, True)
    assert built == cfg
    assert built.with_collateral(2, False).with_borrowing(2, False) == UserConfiguration(0b1001)
    with pytest.raises(ArithmeticRevert):
        cfg.is_borrowing(MAX_RESERVES_COUNT)


@given(st.integers(min_value=0, max_value=UINT256_MAX))
def test_user_configuration_matches_solidity(data: int) -> None:
    cfg = UserConfiguration(data)
    ids = []
    for i in range(MAX_RESERVES_COUNT):
        assert cfg.is_borrowing(i) == bool((data >> (i << 1)) & 1)
        assert cfg.is_using_as_collateral(i) == bool((data >> ((i << 1) + 1)) & 1)
        if (data >> (i << 1)) & 3:
            ids.append(i)
    assert cfg.active_reserve_ids() == tuple(ids)
