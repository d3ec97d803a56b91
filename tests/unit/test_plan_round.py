"""One block's planning round and the plan cache: liquidations selling into the same pool are
planned in sequence (each on the pool the previous one leaves), reads are shared, and a
rejection is decided once per set of inputs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import pytest

from keeper.domain.amm import get_amount_out, sort_tokens
from keeper.domain.fees import FeePolicy
from keeper.domain.plan import GasPrice, Plan, Rejection, RejectionReason
from keeper.domain.quote import UniswapV2Quoter
from keeper.obs.metrics import Metrics
from keeper.pipeline import planning
from keeper.pipeline.gather import Gathered, NextBlock, Venue
from keeper.pipeline.plan_cache import PlanCache, gas_band, plan_key
from keeper.pipeline.plan_round import PlanRound
from keeper.pipeline.planner import Funding
from keeper.pipeline.planning import LiquidationPlanner
from tests.unit.test_account import USDC, WETH, account, usd
from tests.unit.test_planner import (
    CONFIG,
    DEEP_WETH_USDC,
    FLASH,
    GWEI,
    USDC_UNIT,
    WEI,
    devnet_user_plan,
    flash_market,
    reserves,
)

USER_B = "0x00000000000000000000000000000000000000bb"
POOL = sort_tokens(WETH, USDC)


def gathered(pools: dict[tuple[str, str], tuple[int, int]], funding: Funding = FLASH,
             base_fee: int = 20 * GWEI) -> Gathered:
    return Gathered(next_block=NextBlock(flash_market().timestamp, base_fee), reserves=pools,
                    funding=funding)


def planner() -> LiquidationPlanner:
    venue = Venue(pool="0x" + "01" * 20, liquidator=CONFIG.liquidator,
                  uniswap_v2_factory="0x" + "02" * 20, pair_init_code_hash=b"\0" * 32, hubs=(),
                  a_tokens={})
    policy = FeePolicy(priority_fee_share_ppm=0, max_priority_fee=GWEI, max_fee=500 * GWEI)
    return LiquidationPlanner(_NoRpc(), venue, CONFIG, policy, Metrics())  # type: ignore[arg-type]


class _NoRpc:
    """Planning in a round whose reads are in already must not read the chain."""

    async def batch(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("no read expected")


# ---- the round: same-pool sequencing -------------------------------------------------------

def test_an_accepted_plan_moves_the_pool_for_the_next_plan_of_the_block() -> None:
    pools = reserves(DEEP_WETH_USDC)
    first = devnet_user_plan(UniswapV2Quoter(pools))
    assert isinstance(first, Plan) and first.swap_path == (WETH, USDC)
    round_ = PlanRound(block=7)
    before = gathered(pools)
    round_.apply(first, before)
    after = round_.view(before, block_time=12)
    weth, usdc = pools[POOL] if POOL[0] == WETH else pools[POOL][::-1]
    out = get_amount_out(first.collateral_seized, weth, usdc)
    expected = (weth + first.collateral_seized, usdc - out)
    assert after.reserves[POOL] == (expected if POOL[0] == WETH else expected[::-1])
    assert out == first.swap_amount_out  # the pool's own math, as planned
    # The same liquidation planned on the moved pool gets less for the same collateral.
    second = devnet_user_plan(UniswapV2Quoter(after.reserves))
    assert isinstance(second, Plan) and second.gross_profit < first.gross_profit


def test_plans_spending_our_own_balance_leave_less_for_the_next() -> None:
    funded = Funding(flash_premium_bps=5, own_balances={USDC: 10_000 * USDC_UNIT})
    first = devnet_user_plan(UniswapV2Quoter(reserves(DEEP_WETH_USDC)), funding=funded)
    assert isinstance(first, Plan) and not first.use_flash_loan
    round_ = PlanRound(block=7)
    before = gathered(reserves(DEEP_WETH_USDC), funded)
    round_.apply(first, before)
    left = round_.view(before, block_time=12).funding.own_balances[USDC]
    assert left == 10_000 * USDC_UNIT - first.debt_to_cover


async def test_the_planner_plans_two_accounts_of_a_block_in_sequence_on_shared_reads() -> None:
    p = planner()
    round_ = PlanRound(block=7)
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    round_.remember(sorted(user.reserves), gathered(reserves(DEEP_WETH_USDC)))
    m = flash_market({WETH: usd(1800)})
    a = await p.plan(CONFIG.liquidator[:-2] + "aa", user, m, round_=round_)
    b = await p.plan(USER_B, user, m, round_=round_)
    assert isinstance(a, Plan) and isinstance(b, Plan)
    assert round_.plans == 2
    # The second sold into the pool the first left: same position, less profit.
    assert b.gross_profit < a.gross_profit


async def test_the_rounds_reads_prefetched_at_the_scan_serve_its_first_plan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[list[str]] = []

    async def gather(_rpc: Any, _venue: Any, assets: list[str], **_: Any) -> Gathered:
        reads.append(list(assets))
        await asyncio.sleep(0)
        return gathered(reserves(DEEP_WETH_USDC))

    monkeypatch.setattr(planning, "gather", gather)
    p = planner()
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    other = "0x00000000000000000000000000000000000000d1"
    p.prefetch("0xaa", [WETH, USDC, other])
    p.prefetch("0xaa", [WETH, USDC, other])  # the same block: one read
    plan = await p.plan(USER_B, user, m, round_=PlanRound(block=7, head="0xaa"))
    assert isinstance(plan, Plan)
    assert reads == [sorted([WETH, USDC, other])]  # the prefetch, and nothing more
    # The same plan as from its own read.
    alone = await planner().plan(USER_B, user, m, round_=PlanRound(block=7, head="0xbb"))
    assert alone == plan and reads[-1] == sorted(user.reserves)
    # A round of another block reads for itself; so does an account the prefetch misses.
    reads.clear()
    assert isinstance(await p.plan(USER_B, user, m, round_=PlanRound(block=8, head="0xcc")),
                      (Plan, Rejection))
    assert reads == [sorted(user.reserves)]


# ---- the plan cache ------------------------------------------------------------------------

def _unprofitable() -> tuple[Any, ...]:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    return user, m, reserves(DEEP_WETH_USDC), GasPrice(base_fee=20_000 * GWEI, priority_fee=GWEI)


def test_the_cache_answers_the_same_inputs_and_forgets_on_any_change() -> None:
    user, m, pools, gas = _unprofitable()
    cache = PlanCache()
    verdict = Rejection("0xaa", RejectionReason.UNPROFITABLE, "gas")
    key = plan_key(user, m, pools, gas, FLASH)
    assert cache.get("0xaa", key) is None
    cache.put("0xaa", key, verdict)
    assert cache.get("0xaa", plan_key(user, m, pools, gas, FLASH)) is verdict
    assert cache.hits == 1
    changed = {
        "account": plan_key(account({WETH: 11 * WEI}, {USDC: 15_000 * USDC_UNIT}), m, pools,
                            gas, FLASH),
        "price": plan_key(user, flash_market({WETH: usd(1700)}), pools, gas, FLASH),
        "pool": plan_key(user, m, {POOL: (pools[POOL][0] + 1, pools[POOL][1])}, gas, FLASH),
        "gas band": plan_key(user, m, pools, replace(gas, base_fee=gas.base_fee * 2), FLASH),
        "funding": plan_key(user, m, pools, gas, Funding(5, own_balances={USDC: 1})),
    }
    for what, other in changed.items():
        assert cache.get("0xaa", other) is None, what
    # A price of an asset the account does not hold is not an input.
    assert cache.get("0xaa", plan_key(user, replace(m, prices={**m.prices, "0x99": 1}), pools,
                                      gas, FLASH)) is verdict


def test_a_wobble_within_the_gas_band_keeps_the_verdict_a_doubling_does_not() -> None:
    base = GasPrice(base_fee=20 * GWEI, priority_fee=0)
    assert gas_band(base) == gas_band(replace(base, base_fee=20 * GWEI + GWEI // 2))
    assert gas_band(base) != gas_band(replace(base, base_fee=40 * GWEI))
    assert gas_band(GasPrice(0, 0)) == 0


def test_grace_periods_healthy_and_plans_are_not_cached() -> None:
    user, m, pools, gas = _unprofitable()
    key = plan_key(user, m, pools, gas, FLASH)
    cache = PlanCache()
    for reason in (RejectionReason.GRACE_PERIOD, RejectionReason.HEALTHY,
                   RejectionReason.MISSING_DATA):
        cache.put("0xaa", key, Rejection("0xaa", reason, ""))
        assert cache.get("0xaa", key) is None
    cache.put("0xaa", key, Rejection("0xaa", RejectionReason.UNPROFITABLE, ""))
    cache.put("0xaa", key, object())  # a plan: the account is about to change
    assert cache.get("0xaa", key) is None


def test_the_cache_is_bounded() -> None:
    user, m, pools, gas = _unprofitable()
    key = plan_key(user, m, pools, gas, FLASH)
    cache = PlanCache(max_entries=2)
    for u in ("a", "b", "c"):
        cache.put(u, key, Rejection(u, RejectionReason.DUST, ""))
    assert len(cache) == 2 and cache.get("a", key) is None and cache.get("c", key) is not None


async def test_an_unprofitable_account_is_decided_once_until_an_input_changes() -> None:
    p = planner()
    decided = 0
    real = p._decide

    def counting(*args: Any) -> Plan | Rejection:
        nonlocal decided
        decided += 1
        return real(*args)

    p._decide = counting  # type: ignore[method-assign,assignment]
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    dear = gathered(reserves(DEEP_WETH_USDC), base_fee=20_000 * GWEI)
    for block in (1, 2, 3):
        round_ = PlanRound(block)
        round_.remember(sorted(user.reserves), dear)
        verdict = await p.plan("0x" + "aa" * 20, user, m, round_=round_)
        assert isinstance(verdict, Rejection) and verdict.reason is RejectionReason.UNPROFITABLE
    assert decided == 1
    round_ = PlanRound(4)
    round_.remember(sorted(user.reserves), replace(dear, reserves=reserves(
        (WETH, 1_001 * WEI, USDC, 1_800_000 * USDC_UNIT))))
    await p.plan("0x" + "aa" * 20, user, m, round_=round_)
    assert decided == 2


# ---- gas priced at the tip paid ----------------------------------------------------------------

async def test_a_plan_is_priced_at_the_tip_the_sender_pays_not_at_the_cap() -> None:
    user = account({WETH: 10 * WEI}, {USDC: 15_000 * USDC_UNIT})
    m = flash_market({WETH: usd(1800)})
    pools = gathered(reserves(DEEP_WETH_USDC), base_fee=20 * GWEI)
    plans = []
    for share_ppm, cap in ((0, 500 * GWEI), (100_000, 500 * GWEI), (1_000_000, 2 * GWEI)):
        p = planner()
        p.fee_policy = FeePolicy(priority_fee_share_ppm=share_ppm, max_priority_fee=cap,
                                 max_fee=1_000 * GWEI)
        round_ = PlanRound(1)
        round_.remember(sorted(user.reserves), pools)
        plan = await p.plan("0x" + "aa" * 20, user, m, round_=round_)
        assert isinstance(plan, Plan)
        plans.append(plan)
    free, shared, capped = plans
    assert free.gas_price == 20 * GWEI  # no share: the base fee alone (not a 500 gwei cap)
    # 10% of the profit per gas as tip: the gas cost grows by exactly that bid.
    tip = free.gross_profit_usd * WEI // usd(1800) * 100_000 // 1_000_000 // free.gas_estimate
    assert shared.gas_price == 20 * GWEI + tip
    assert shared.net_profit_usd < free.net_profit_usd
    assert capped.gas_price == 22 * GWEI  # the share would be more: the cap holds
    # The trade itself does not depend on the tip.
    assert free.debt_to_cover == shared.debt_to_cover == capped.debt_to_cover


def test_plans_still_in_flight_from_an_earlier_block_move_the_pools_of_the_next_round() -> None:
    pools = reserves(DEEP_WETH_USDC)
    first = devnet_user_plan(UniswapV2Quoter(pools))
    assert isinstance(first, Plan)
    fresh = gathered(pools)
    earlier = PlanRound(block=7)
    earlier.apply(first, fresh)
    later = PlanRound(block=8, in_flight=[Flying(first, 5)])  # the reads do not show it yet
    assert later.view(fresh, block_time=12).reserves == earlier.view(fresh, block_time=12).reserves
    assert later.plans == 0
    # Read where our sender's nonce is 5: nonce 5 is not mined there yet, so it is applied.
    at_5 = replace(fresh, sender_nonce=5)
    pending = PlanRound(block=8, in_flight=[Flying(first, 5)])
    assert pending.view(at_5, block_time=12).reserves == earlier.view(fresh, block_time=12).reserves
    # Read where it is 6: the reads show it mined, and applying it again would count its
    # sale twice (the pool would look better than it is to a trade the other way).
    mined = PlanRound(block=8, in_flight=[Flying(first, 5), Flying(first, None)])
    shown = replace(fresh, sender_nonce=6)
    once = PlanRound(block=8, in_flight=[Flying(first, None)])
    assert mined.view(shown, block_time=12).reserves == once.view(shown, block_time=12).reserves
    assert mined.view(shown, block_time=12).reserves != fresh.reserves


@dataclass(frozen=True)
class Flying:
    plan: Plan
    nonce: int | None
