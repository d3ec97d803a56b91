"""EIP-1559 fee policy and geth's 10% replacement rule: worked examples and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.domain.fees import (
    GWEI,
    FeePolicy,
    Fees,
    bump,
    gas_cost,
    gwei_to_wei,
    initial_fees,
    is_profitable,
    is_valid_replacement,
    outbid_fees,
    priority_fee,
    replacement_fees,
)

POLICY = FeePolicy.from_config(priority_fee_share=0.1, max_priority_fee_gwei=50,
                               max_fee_gwei=500)
fee_values = st.integers(min_value=0, max_value=10**15)


def test_config_floats_become_exact_integers() -> None:
    assert gwei_to_wei(1.1) == 1_100_000_000
    assert gwei_to_wei(0.000000001) == 1
    assert FeePolicy(priority_fee_share_ppm=100_000, max_priority_fee=50 * GWEI,
                               max_fee=500 * GWEI) == POLICY


def test_priority_fee_is_a_share_of_profit_per_gas() -> None:
    # 0.01 ETH profit over 500k gas: 10% of 20 gwei per gas = 2 gwei
    assert priority_fee(POLICY, 10**16, 500_000) == 2 * GWEI
    # a huge profit is capped at max_priority_fee
    assert priority_fee(POLICY, 10**21, 500_000) == 50 * GWEI
    assert priority_fee(POLICY, 0, 500_000) == 0
    assert priority_fee(POLICY, -5, 500_000) == 0
    with pytest.raises(ValueError):
        priority_fee(POLICY, 1, 0)


def test_initial_fees_two_base_fees_plus_tip_within_cap() -> None:
    fees = initial_fees(POLICY, base_fee=30 * GWEI, expected_profit=10**16, gas=500_000)
    assert fees == Fees(max_fee_per_gas=62 * GWEI, max_priority_fee_per_gas=2 * GWEI)
    capped = initial_fees(POLICY, base_fee=400 * GWEI, expected_profit=10**16, gas=500_000)
    assert capped.max_fee_per_gas == 500 * GWEI
    tiny_cap = FeePolicy(100_000, 50 * GWEI, max_fee=GWEI)
    squeezed = initial_fees(tiny_cap, base_fee=0, expected_profit=10**18, gas=21_000)
    assert squeezed.max_priority_fee_per_gas == squeezed.max_fee_per_gas == GWEI


def test_bump_raises_both_fields_by_ten_percent_rounding_up() -> None:
    assert bump(Fees(100, 10)) == Fees(110, 11)
    assert bump(Fees(101, 11)) == Fees(112, 13)  # 111.1 → 112, 12.1 → 13
    assert bump(Fees(5, 0)) == Fees(6, 1)  # at least 1 wei, even from a zero tip
    assert is_valid_replacement(Fees(100, 10), Fees(110, 11))
    assert not is_valid_replacement(Fees(100, 10), Fees(110, 10))
    assert not is_valid_replacement(Fees(100, 10), Fees(109, 20))


@given(cap=fee_values, tip=fee_values)
def test_bump_is_always_a_valid_replacement(cap: int, tip: int) -> None:
    old = Fees(max(cap, tip), min(cap, tip))
    new = bump(old)
    assert is_valid_replacement(old, new)
    assert new.max_fee_per_gas > old.max_fee_per_gas
    assert new.max_priority_fee_per_gas > old.max_priority_fee_per_gas


@given(cap=fee_values, tip=fee_values, base=fee_values,
       profit=st.integers(0, 10**22), gas=st.integers(21_000, 30_000_000))
def test_replacement_fees_beat_the_bump_and_the_market(
    cap: int, tip: int, base: int, profit: int, gas: int
) -> None:
    old = Fees(max(cap, tip), min(cap, tip))
    new = replacement_fees(POLICY, old, base, profit, gas)
    assert is_valid_replacement(old, new)
    fresh = initial_fees(POLICY, base, profit, gas)
    assert new.max_fee_per_gas >= fresh.max_fee_per_gas
    assert new.max_priority_fee_per_gas <= new.max_fee_per_gas


def test_replacement_follows_a_runaway_base_fee() -> None:
    old = Fees(2 * GWEI + 100, 100)
    new = replacement_fees(POLICY, old, base_fee=100 * GWEI, expected_profit=0, gas=21_000)
    assert new.max_fee_per_gas == 200 * GWEI + 110
    assert new.max_priority_fee_per_gas == 110
    assert not POLICY.allows(Fees(501 * GWEI, 1))
    assert not POLICY.allows(Fees(100 * GWEI, 51 * GWEI))
    assert POLICY.allows(new)


def test_effective_price_cost_and_profitability() -> None:
    fees = Fees(62 * GWEI, 2 * GWEI)
    assert fees.effective_price(30 * GWEI) == 32 * GWEI
    assert fees.effective_price(61 * GWEI) == 62 * GWEI
    assert gas_cost(500_000, fees, 30 * GWEI) == 16 * 10**15
    assert is_profitable(16 * 10**15 + 1, 500_000, fees, 30 * GWEI)
    assert not is_profitable(16 * 10**15, 500_000, fees, 30 * GWEI)


def test_invalid_fees_rejected() -> None:
    with pytest.raises(ValueError):
        Fees(1, 2)
    with pytest.raises(ValueError):
        Fees(-1, 0)
    with pytest.raises(ValueError):
        FeePolicy(priority_fee_share_ppm=2_000_000, max_priority_fee=1, max_fee=1)


def test_a_tip_floor_lifts_small_tips_and_stays_under_the_cap() -> None:
    floor = FeePolicy.from_config(priority_fee_share=0.1, max_priority_fee_gwei=5,
                                  max_fee_gwei=500, min_priority_fee_gwei=3)
    assert floor.min_priority_fee == 3 * 10**9
    # A small profit's share is below the floor: it pays the floor, never less.
    assert priority_fee(floor, expected_profit=10**15, gas=600_000) == 3 * 10**9
    assert priority_fee(floor, expected_profit=10**18, gas=600_000) == 5 * 10**9
    # A floor above the cap is the cap.
    high = FeePolicy.from_config(priority_fee_share=0.1, max_priority_fee_gwei=2,
                                 max_fee_gwei=500, min_priority_fee_gwei=3)
    assert high.min_priority_fee == 2 * 10**9


def test_outbid_fees_replace_what_the_node_holds_within_the_caps_and_the_profit() -> None:
    held = Fees(max_fee_per_gas=40 * GWEI, max_priority_fee_per_gas=3 * GWEI)
    ours = Fees(max_fee_per_gas=30 * GWEI, max_priority_fee_per_gas=4 * GWEI)
    raised = outbid_fees(POLICY, held, ours, 10 * GWEI, 10**17, 500_000)
    assert raised is not None and is_valid_replacement(held, raised)
    assert raised.max_fee_per_gas >= ours.max_fee_per_gas
    assert raised.max_priority_fee_per_gas >= ours.max_priority_fee_per_gas
    at_cap = Fees(max_fee_per_gas=500 * GWEI, max_priority_fee_per_gas=3 * GWEI)
    assert outbid_fees(POLICY, at_cap, ours, 10 * GWEI, 10**17, 500_000) is None
    assert outbid_fees(POLICY, held, ours, 10 * GWEI, 10**12, 500_000) is None  # does not pay
