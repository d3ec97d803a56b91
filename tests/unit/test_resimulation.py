"""After waiting its turn, a send is simulated again only if one of ours handed out meanwhile
may change what it does: one that trades in a pool it trades in, or one that says nothing of
what it touches."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keeper.domain.amm import sort_tokens
from keeper.domain.plan import Plan
from keeper.domain.quote import UniswapV2Quoter
from keeper.exec.executor import _pools_touched
from keeper.exec.sender import Sender
from keeper.exec.tx import TxRequest
from keeper.pipeline.planner import Funding
from tests.integration.test_sender import make_sender
from tests.unit.test_account import USDC, WETH
from tests.unit.test_planner import (
    CONFIG,
    DEEP_WETH_USDC,
    USDC_UNIT,
    devnet_user_plan,
    reserves,
)


def request(shares: frozenset[str] | None) -> TxRequest:
    return TxRequest(to="0x" + "11" * 20, data=b"", expected_profit_native=1, shares=shares)


def sender() -> Sender:
    return make_sender(_NoRpc())  # type: ignore[arg-type]


class _NoRpc:
    async def call(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("no read expected")


def handed(s: Sender, *shares: frozenset[str] | None) -> None:
    for touched in shares:
        s._handed_out += 1
        s._shares.append(touched)


def test_only_a_send_that_touches_the_same_pool_makes_a_simulation_stale() -> None:
    s = sender()
    weth_usdc, wbtc_usdc = frozenset({"weth/usdc"}), frozenset({"wbtc/usdc"})
    since = s._handed_out
    assert not s._overlaps(request(weth_usdc), since)  # nothing handed out meanwhile
    handed(s, wbtc_usdc, frozenset())  # another pool, and a liquidation that keeps
    assert not s._overlaps(request(weth_usdc), since)
    assert not s._overlaps(request(frozenset()), since)
    handed(s, weth_usdc)
    assert s._overlaps(request(weth_usdc), since)
    assert not s._overlaps(request(weth_usdc), s._handed_out)  # simulated after it: fresh


def test_a_send_that_says_nothing_of_what_it_touches_overlaps_everything() -> None:
    s = sender()
    since = s._handed_out
    handed(s, None)
    assert s._overlaps(request(frozenset()), since)
    s2 = sender()
    handed(s2, frozenset({"weth/usdc"}))
    assert s2._overlaps(request(None), 0)


def test_a_plan_touches_the_pairs_it_sells_through_and_a_kept_one_none() -> None:
    quoter = UniswapV2Quoter(reserves(DEEP_WETH_USDC))
    sold = devnet_user_plan(quoter)
    assert isinstance(sold, Plan)
    assert _pools_touched(sold) == {"/".join(sort_tokens(WETH, USDC))}
    own = Funding(flash_premium_bps=5, own_balances={USDC: 20_000 * USDC_UNIT})
    kept = devnet_user_plan(UniswapV2Quoter(reserves((WETH, 10**18, USDC, 1_800 * USDC_UNIT))),
                            funding=own, config=replace(CONFIG, keep_collateral=True))
    assert isinstance(kept, Plan) and kept.params.keep_collateral
    assert _pools_touched(kept) == frozenset()
