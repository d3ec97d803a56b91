"""Aave 3.1-3.6 in the pure math: the revision map, directed rounding, the shorter compounding,
the 3.5+ token math of Mint/Burn events, eMode from the collateral bitmap and the 3.5+ health
factor, with exact expected values."""

from __future__ import annotations

import pytest

from keeper.domain.account import (
    AccountData,
    EModeCategory,
    Market,
    ReserveState,
    UserAccount,
    UserReserve,
    calculate_user_account_data,
    is_bad_debt,
    user_debt,
)
from keeper.domain.interest import calculate_compounded_interest, compounded_interest_short
from keeper.domain.reserve_config import ReserveConfiguration, UserConfiguration
from keeper.domain.revision import AaveRevision, UnknownRevision, from_pool_revision
from keeper.domain.scaled_balance import scaled_after
from keeper.domain.wadray import (
    RAY,
    ArithmeticRevert,
    mul_div_ceil,
    percent_mul_floor,
    ray_div_ceil,
    ray_div_floor,
    ray_mul_ceil,
    ray_mul_floor,
)

R = AaveRevision


def test_pool_revision_map() -> None:
    assert [from_pool_revision(n) for n in (1, 4, 5, 7, 8, 9, 10)] == [
        R.V3_0, R.V3_1, R.V3_2, R.V3_3, R.V3_4, R.V3_5, R.V3_6]
    assert from_pool_revision(11) is R.V3_6  # newer than known: the newest rules
    with pytest.raises(UnknownRevision):
        from_pool_revision(0)
    assert R.V3_6.label == "3.6" and R.V3_0.has_stable_debt and not R.V3_2.has_stable_debt
    assert not R.V3_4.has_directed_rounding and R.V3_5.has_directed_rounding


def test_directed_rounding_exact() -> None:
    i = 1_000_000_000_000_000_000_000_000_001  # one ray and one wei
    assert ray_mul_floor(3, i) == 3 and ray_mul_ceil(3, i) == 4
    assert ray_div_floor(10, 3 * RAY) == 3 and ray_div_ceil(10, 3 * RAY) == 4
    assert mul_div_ceil(7, 3, 2) == 11 and mul_div_ceil(6, 3, 2) == 9
    assert percent_mul_floor(19_999, 5_000) == 9_999  # percentMul would round to 10,000
    with pytest.raises(ArithmeticRevert):
        ray_div_ceil(1, 0)


def test_short_compounding_exact() -> None:
    rate, year = 5 * RAY // 100, 365 * 86_400
    # x = 0.05; RAY + x + x*(x/2 + x*x/6): 1.0512708333... ray
    assert compounded_interest_short(rate, 0, year) == 1_051_270_833_333_333_333_333_333_333
    assert calculate_compounded_interest(rate, 0, year) == 1_051_265_681_539_063_650_421_944_000
    assert compounded_interest_short(rate, 10, 10) == RAY


def test_scaled_after_v36_a_token_and_debt() -> None:
    i = 1_100_000_000_000_000_000_000_000_000  # 1.1 ray
    # aToken: 100 scaled → floor(110); a supply minting 10 scaled → floor(121) = 121: +11.
    assert scaled_after(100, 11, i, debt=False, revision=R.V3_6) == 110
    # debt: 7 scaled → ceil(7.7) = 8; a borrow of 3 scaled → ceil(11) = 11: +3 in balance.
    assert scaled_after(7, 3, i, debt=True, revision=R.V3_6) == 10
    # A burn of the whole balance.
    assert scaled_after(7, -8, i, debt=True, revision=R.V3_6) == 0
    # v3.0: the event's amount scaled half up.
    assert scaled_after(100, 11, i, debt=False, revision=R.V3_0) == 110
    with pytest.raises(ArithmeticRevert):
        scaled_after(7, -9, i, debt=True, revision=R.V3_6)


def _cfg(ltv: int, lt: int, decimals: int, emode: int = 0) -> ReserveConfiguration:
    return ReserveConfiguration(ltv=ltv, liquidation_threshold=lt, liquidation_bonus=10_500,
                                decimals=decimals, active=True, emode_category=emode)


def _market(revision: AaveRevision, category: EModeCategory, *, t: int = 1_000) -> Market:
    index = RAY + RAY // 3  # 1.333... ray: rounding shows
    weth = ReserveState("weth", 0, _cfg(8_000, 8_250, 18, emode=1), liquidity_index=index,
                        last_update_timestamp=t)
    steth = ReserveState("steth", 1, _cfg(7_000, 7_500, 18), liquidity_index=index,
                         last_update_timestamp=t)
    usdc = ReserveState("usdc", 2, _cfg(7_500, 7_800, 6), variable_borrow_index=index,
                        last_update_timestamp=t)
    return Market({0: weth, 1: steth, 2: usdc},
                  {"weth": 2_000 * 10**8, "steth": 2_100 * 10**8, "usdc": 10**8}, t, {1: category},
                  revision)


def _account() -> UserAccount:
    cfg = UserConfiguration((1 << 1) | (1 << 3) | (1 << 4))  # collateral 0 and 1, borrowing 2
    return UserAccount(cfg, 1, {"weth": UserReserve(10**18 + 1), "steth": UserReserve(10**18),
                                "usdc": UserReserve(0, 1_500 * 10**6 + 1)})


def test_v36_emode_from_the_collateral_bitmap_and_directed_rounding() -> None:
    # Category 1 lists steth (id 1) as collateral, not weth, whatever weth's stale eMode bits say.
    liquid = EModeCategory(9_000, 9_300, 10_100, collateral_bitmap=0b10, borrowable_bitmap=0b100)
    data = calculate_user_account_data(_account(), _market(R.V3_6, liquid))
    # weth: floor((1e18+1) * 4/3) = 1333333333333333334 wei * $2,000 → floor, 2666.67 base;
    # steth: floor(1e18 * 4/3) * $2,100; debt: ceil((1.5e9+1) * 4/3) = 2000000002 → $2000.000002.
    assert data == AccountData(
        total_collateral_base=266_666_666_666 + 279_999_999_999,
        total_debt_base=200_000_000_200,
        available_borrows_base=percent_mul_floor(266_666_666_666 + 279_999_999_999,
                                                 (266_666_666_666 * 8_000 + 279_999_999_999 * 9_000)
                                                 // 546_666_666_665) - 200_000_000_200,
        current_liquidation_threshold=(266_666_666_666 * 8_250 + 279_999_999_999 * 9_300)
        // 546_666_666_665,
        ltv=(266_666_666_666 * 8_000 + 279_999_999_999 * 9_000) // 546_666_666_665,
        health_factor=((266_666_666_666 * 8_250 + 279_999_999_999 * 9_300) * 10**18
                       + 200_000_000_200 // 2) // 200_000_000_200 // 10_000,
        has_zero_ltv_collateral=False,
    )
    assert data.health_factor == 2_401_999_997_590_600_002
    # v3.0 reads the same account with weth in the eMode (its configuration bits), half-up math.
    v30 = calculate_user_account_data(
        _account(), _market(R.V3_0, EModeCategory(9_000, 9_300, 10_100)))
    assert v30.total_debt_base == 200_000_000_100 and v30.current_liquidation_threshold == 8_378


def test_v36_ltvzero_bitmap_and_bad_debt() -> None:
    liquid = EModeCategory(9_000, 9_300, 10_100, collateral_bitmap=0b11, borrowable_bitmap=0b100,
                           ltvzero_bitmap=0b1)
    data = calculate_user_account_data(_account(), _market(R.V3_6, liquid))
    assert data.has_zero_ltv_collateral and data.ltv == 279_999_999_999 * 9_000 // 546_666_666_665
    assert not is_bad_debt(data)
    debt_only = UserAccount(UserConfiguration(1 << 4), 0, {"usdc": UserReserve(0, 10**6)})
    bad = calculate_user_account_data(debt_only, _market(R.V3_6, liquid))
    assert is_bad_debt(bad) and bad.health_factor == 0


def test_user_debt_rounds_up_on_v36() -> None:
    m = _market(R.V3_6, EModeCategory(0, 0, 0))
    pos = UserReserve(0, 1_500 * 10**6 + 1)
    assert user_debt(m.reserve(2), pos, 1_000, R.V3_6).variable == 2_000_000_002
    assert user_debt(m.reserve(2), pos, 1_000).variable == 2_000_000_001
