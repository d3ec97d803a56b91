"""``keeper run --once`` sells where the liquidity is (issue 14): after a crash on the devnet,
with Uniswap V3 routing on, the keeper picks V3, V2 or a split as the exact quotes say,
liquidates every profitable account with no revert, and its predicted profit equals what the
owner's balances show, within 0.1%, over 20 or more liquidations that use V3."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.plan import RejectionReason
from keeper.domain.swap_route import Venue
from keeper.exec.executor import Execution
from tests.e2e.test_run_once import (
    MAX_RELATIVE_ERROR,
    assert_keeper_never_reverted,
    liquidated_users,
    measure,
    mined,
    run_keeper,
)

pytestmark = pytest.mark.integration

V3_ON = {"KEEPER_DEX__ROUTE_UNISWAP_V3": "true"}


def venues(r: Execution) -> set[Venue]:
    assert r.plan is not None
    legs = r.plan.params.swap_legs
    if not legs:
        return {Venue.UNISWAP_V2} if r.plan.swap_path else set()
    return {h.venue for leg in legs for h in leg.hops}


async def test_v3_routes_and_splits_liquidate_as_predicted(devnet: Devnet, tmp_path: Path) -> None:
    plans = plan_population(2, 300, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    await crash(devnet, {"WETH": 0.72, "WBTC": 0.85}, blocks=5)

    run = await run_keeper(devnet, tmp_path, dry_run=False, env=V3_ON)

    receipts = {r["transactionHash"]: r for r in await assert_keeper_never_reverted(devnet, run)}
    done = mined(run)
    with_v3 = [r for r in done if Venue.UNISWAP_V3 in venues(r)]
    assert len(with_v3) >= 20, run.table
    # The quotes decide: some plans sell on V2 alone, some on V3 alone, some split across both.
    splits = [r for r in done if r.plan is not None and len(r.plan.params.swap_legs) > 1]
    # (Which single venue wins depends on the pools each plan of the block leaves to the next.)
    singles = [r for r in done if r.plan is not None and len(r.plan.params.swap_legs) <= 1]
    assert singles and splits, run.table
    measured = [await measure(devnet, r, receipts[str(r.outcome.tx_hash)])  # type: ignore[union-attr]
                for r in with_v3]
    worst = max(measured, key=lambda x: x.relative_error)
    print(f"\n{len(done)} liquidations, {len(with_v3)} through V3 ({len(splits)} splits); "
          f"max |predicted - realised| / realised = {float(worst.relative_error):.6%}")
    assert worst.relative_error <= MAX_RELATIVE_ERROR, worst
    # Every account that was not liquidated was declined for a reason about money, not a route.
    for r in run.results:
        if r.plan is None:
            assert r.rejection is not None
            assert r.rejection.reason in (RejectionReason.UNPROFITABLE, RejectionReason.DUST,
                                          RejectionReason.BAD_DEBT), r.skipped_reason
    events = await liquidated_users(devnet, run.before_block)
    assert set(events) == {r.user for r in done} and set(events.values()) == {1}
