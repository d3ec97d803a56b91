"""The oracle guard's pure decision (keeper.domain.oracle_guard)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.domain.oracle_guard import (
    AssetGuard,
    GuardParams,
    HaltReason,
    Reading,
    breach,
    deviation_bps,
    dex_price,
    median_price,
    observe,
    reset,
)

P = GuardParams(max_deviation_bps=1_500, window_blocks=10, heartbeat=3_600, resume_after=3)
ETH = 2_000 * 10**8


def _run(readings: list[Reading], params: GuardParams = P,
         state: AssetGuard | None = None) -> list[AssetGuard]:
    out = []
    s = state or AssetGuard()
    for r in readings:
        s = observe(s, r, params)
        out.append(s)
    return out


def test_deviation_bps_exact() -> None:
    assert deviation_bps(ETH // 2, ETH) == 5_000
    assert deviation_bps(ETH, ETH) == 0
    assert deviation_bps(ETH + 1, ETH) == 1  # rounded up: never misses a breach
    assert deviation_bps(1, 0) > 10_000


def test_aggregator_alone_minus_50_percent_is_halted() -> None:
    states = _run([Reading(1, 100, ETH, ETH), Reading(2, 101, ETH // 2, ETH)])
    assert states[0].halted is None
    assert states[1].halted is HaltReason.DEX and states[1].halted_at == 2


def test_a_crash_the_dex_agrees_with_goes_through() -> None:
    # −50% in one block, the pools with it (within the threshold): a real crash.
    states = _run([Reading(1, 100, ETH, ETH), Reading(2, 101, ETH // 2, ETH // 2 + ETH // 50)])
    assert all(s.halted is None for s in states)


def test_a_jump_without_a_dex_price_is_halted_then_resumes() -> None:
    readings = [Reading(b, 100 + b, ETH) for b in range(1, 4)]
    readings += [Reading(b, 100 + b, ETH // 2) for b in range(4, 20)]
    states = _run(readings)
    assert states[3].halted is HaltReason.JUMP
    # Breaches until the pre-jump prices leave the window (block 3 + 10), then 3 calm blocks.
    halted_blocks = [r.block for r, s in zip(readings, states, strict=True) if s.is_halted]
    assert halted_blocks == list(range(4, 16))


def test_stale_feed_is_halted() -> None:
    s = observe(AssetGuard(), Reading(5, 10_000, ETH, ETH, updated_at=10_000 - 3_601), P)
    assert s.halted is HaltReason.STALE
    ok = observe(AssetGuard(), Reading(5, 10_000, ETH, ETH, updated_at=10_000 - 3_600), P)
    assert ok.halted is None


def test_resume_after_blocks_of_agreement_and_a_breach_restarts_the_count() -> None:
    bad, good = ETH // 2, ETH
    readings = [Reading(1, 1, bad, ETH), Reading(2, 2, good, ETH), Reading(3, 3, good, ETH),
                Reading(4, 4, bad, ETH), Reading(5, 5, good, ETH), Reading(6, 6, good, ETH),
                Reading(7, 7, good, ETH)]
    halted = [s.is_halted for s in _run(readings)]
    assert halted == [True, True, True, True, True, True, False]


def test_reset_resumes_and_waives_the_present_breach_until_it_clears() -> None:
    s = observe(AssetGuard(), Reading(1, 1, ETH // 2, ETH), P)
    s = reset(s)
    assert not s.is_halted and s.waived
    s = observe(s, Reading(2, 2, ETH // 2, ETH), P)
    assert not s.is_halted and s.waived
    s = observe(s, Reading(3, 3, ETH, ETH), P)
    assert not s.waived
    s = observe(s, Reading(4, 4, ETH // 2, ETH), P)
    assert s.halted is HaltReason.DEX
    assert reset(AssetGuard()) == AssetGuard()


def test_dex_price_and_median() -> None:
    # 1,000 WETH against 2,000,000 USDC (6 decimals) at $1: WETH at $2,000.
    assert dex_price(1_000 * 10**18, 2_000_000 * 10**6, 18, 6, 10**8) == ETH
    assert dex_price(0, 1, 18, 6, 10**8) is None
    assert median_price([]) is None
    assert median_price([3, 1, 2]) == 2
    assert median_price([1, 3, 5, 100]) == 4


def test_params_are_checked() -> None:
    with pytest.raises(ValueError):
        GuardParams(max_deviation_bps=0, window_blocks=1, heartbeat=0, resume_after=1)


prices = st.integers(min_value=1, max_value=10**30)
params = st.builds(GuardParams, max_deviation_bps=st.integers(1, 10_000),
                   window_blocks=st.integers(0, 50), heartbeat=st.integers(0, 10**6),
                   resume_after=st.integers(1, 20))


@given(params, prices, st.integers(0, 10**6), st.integers(0, 10**6))
def test_an_oracle_that_matches_its_market_is_never_halted(
        p: GuardParams, price: int, block: int, ts: int) -> None:
    reading = Reading(block, ts, price, price, updated_at=ts)
    assert breach([(block - 1, 1)], reading, p) is None


@given(params, st.lists(st.tuples(prices, prices), min_size=1, max_size=40))
def test_halted_exactly_while_breaching_or_within_resume_after(
        p: GuardParams, seq: list[tuple[int, int]]) -> None:
    s = AssetGuard()
    calm = 0
    was_halted = False
    for i, (price, dex) in enumerate(seq):
        reading = Reading(i, i, price, dex)
        bad = breach(s.history, reading, p) is not None
        s = observe(s, reading, p)
        calm = 0 if bad else calm + 1
        if bad:
            assert s.is_halted
        elif was_halted:
            assert s.is_halted == (calm < p.resume_after)
        else:
            assert not s.is_halted
        was_halted = s.is_halted
        assert all(i - p.window_blocks <= b <= i for b, _ in s.history)


@given(prices, prices, st.integers(0, 30), st.integers(0, 30), prices)
def test_dex_price_round_trips_a_pool_at_the_oracle_ratio(
        pa: int, pb: int, da: int, db: int, amount: int) -> None:
    # A pool holding `amount` units of value on each side prices a at pa (floor rounding).
    ra = amount * 10**da
    rb = amount * pa * 10**db // pb
    if rb == 0:
        return
    implied = dex_price(ra, rb, da, db, pb)
    assert implied is not None
    assert implied <= pa
    assert pa - implied <= pb // (amount) + 1
