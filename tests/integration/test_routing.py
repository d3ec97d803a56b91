"""Routing across Uniswap V2 and V3 on the devnet: the combined quoter picks V3 for one pair, V2
for another and a split for a third, and each quote's legs, swapped on chain (through the V2
router and the V3 SwapRouter, in a snapshot), pay exactly what the quote says."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.uniswap_v3 import DEADLINE, MAX_UINT
from keeper.domain.quote import SPLIT, UNISWAP_V2, UNISWAP_V3, Quote, needed_pairs
from keeper.domain.routing import RoutingQuoter
from keeper.domain.swap_route import SwapLeg, Venue
from keeper.pipeline.gather import Venue as ReadVenue
from keeper.pipeline.gather import gather
from keeper.protocols.uniswap_v2.pair import (
    UNISWAP_V2_PAIR_INIT_CODE_HASH,
    load_pair_reserves,
    pair_address,
)
from keeper.protocols.uniswap_v3.pool_address import UniswapV3Venue
from keeper.protocols.uniswap_v3.pool_state import V3PoolReader
from tests.conftest import running_devnet

pytestmark = pytest.mark.integration

_ERC20 = artifacts.aave("MintableERC20").abi
_V2_ROUTER = artifacts.uniswap("UniswapV2Router02").abi
_V3_ROUTER = artifacts.uniswap_v3("SwapRouter").abi
MIN_SPLIT_GAIN_BPS = 5  # a second leg costs gas: split only for a gain worth it


async def _quoter(devnet: Devnet) -> RoutingQuoter:
    m = devnet.m
    assert m.uniswap_v3 is not None
    tokens = [r.address for r in m.reserves]
    hubs = [m.reserve("WETH").address, m.reserve("USDC").address]
    v2 = await load_pair_reserves(devnet.rpc, m.uniswap_factory,
                                  needed_pairs(tokens, tokens, hubs))
    v3 = await V3PoolReader(devnet.rpc).read(m.uniswap_v3.pools.values())
    return RoutingQuoter(v2, v3, hubs, pair_address=functools.partial(
        pair_address, m.uniswap_factory), min_split_gain_bps=MIN_SPLIT_GAIN_BPS)


async def _swap_leg(devnet: Devnet, leg: SwapLeg) -> int:
    """Sell the leg hop by hop from the deployer; returns what the last hop paid."""
    m, v3 = devnet.m, devnet.m.uniswap_v3
    assert v3 is not None
    me = m.deployer
    await devnet.tx.transact(leg.token_in, _ERC20["mint(address,uint256)"], me, leg.amount_in)
    amount = leg.amount_in
    for hop in leg.hops:
        (before,) = await devnet.tx.call(hop.token_out, _ERC20["balanceOf"], me)
        if hop.venue == Venue.UNISWAP_V2:
            await devnet.tx.transact(hop.token_in, _ERC20["approve"], m.uniswap_router, MAX_UINT)
            await devnet.tx.transact(m.uniswap_router, _V2_ROUTER["swapExactTokensForTokens"],
                                     amount, 0, [hop.token_in, hop.token_out], me, DEADLINE)
        else:
            await devnet.tx.transact(hop.token_in, _ERC20["approve"], v3.router, MAX_UINT)
            await devnet.tx.transact(v3.router, _V3_ROUTER["exactInputSingle"], (
                hop.token_in, hop.token_out, hop.fee, me, DEADLINE, amount, 0, 0))
        (after,) = await devnet.tx.call(hop.token_out, _ERC20["balanceOf"], me)
        amount = int(after) - int(before)
    return amount


async def _executed(devnet: Devnet, quote: Quote) -> int:
    """What the quote's legs pay on chain (the chain reverted to where it was afterwards)."""
    snapshot = await devnet.rpc.call("evm_snapshot")
    try:
        paid: list[int] = [await _swap_leg(devnet, leg) for leg in quote.legs()]
        return sum(paid)
    finally:
        await devnet.rpc.call("evm_revert", [snapshot])


def _amount(devnet: Devnet, prices: dict[str, int], symbol: str, usd: int) -> int:
    return int(usd * 10**devnet.m.reserve(symbol).decimals * 10**8 // prices[symbol])


@pytest.mark.parametrize("aave", ["3.0", "3.6"])
async def test_quoter_picks_v3_v2_or_a_split_as_the_chain_pays(aave: str) -> None:
    async with running_devnet(aave) as devnet:
        quoter = await _quoter(devnet)
        prices = await devnet.prices()
        m = devnet.m

        def quote(a: str, b: str, usd: int) -> Quote:
            return quoter.quote_exact_in(m.reserve(a).address, m.reserve(b).address,
                                         _amount(devnet, prices, a, usd))

        # WETH/USDC: millions within ±1% in the 0.05% pool: V3 alone.
        v3 = quote("WETH", "USDC", 100_000)
        assert v3.route.venue == UNISWAP_V3 and len(v3.legs()) == 1
        assert [(h.venue, h.fee) for h in v3.legs()[0].hops] == [(Venue.UNISWAP_V3, 500)]
        # LINK/WETH: V3 has thin 0.3% and 1% pools only: V2's $20M pair wins.
        v2 = quote("LINK", "WETH", 10_000)
        assert v2.route.venue == UNISWAP_V2 and len(v2.legs()) == 1
        assert v2.legs()[0].hops[0].pool == m.pair("LINK", "WETH")
        # LINK -> USDC, $200k: half through the direct V2 pair, half through WETH (V2, then
        # the deep V3 pool) pays well over what either route alone does.
        split = quote("LINK", "USDC", 200_000)
        assert split.route.venue == SPLIT and len(split.legs()) == 2
        venues = {h.venue for leg in split.legs() for h in leg.hops}
        assert venues == {Venue.UNISWAP_V2, Venue.UNISWAP_V3}
        assert sum(leg.amount_in for leg in split.legs()) == split.amount_in
        singles = [quoter.quote_route(r, split.amount_in).amount_out
                   for r in quoter.routes(m.reserve("LINK").address, m.reserve("USDC").address)
                   if r.venue != SPLIT]
        assert split.amount_out * 10_000 > max(singles) * (10_000 + MIN_SPLIT_GAIN_BPS)

        for q in (v3, v2, split):
            assert await _executed(devnet, q) == q.amount_out


async def test_gather_reads_the_v3_pools_of_the_users_pairs() -> None:
    async with running_devnet("3.0") as devnet:
        m = devnet.m
        assert m.uniswap_v3 is not None
        weth, usdc, link = (m.reserve(s).address for s in ("WETH", "USDC", "LINK"))
        venue = ReadVenue(pool=m.pool, liquidator=m.liquidator, uniswap_v2_factory=m.uniswap_factory,
                      pair_init_code_hash=UNISWAP_V2_PAIR_INIT_CODE_HASH, hubs=(weth,),
                      a_tokens={r.address: r.a_token for r in m.reserves},
                      uniswap_v3=UniswapV3Venue(m.uniswap_v3.factory))
        reader = V3PoolReader(devnet.rpc)
        got = await gather(devnet.rpc, venue, sorted((usdc, link)), block_time=1,
                           v3_reader=reader)
        # LINK/USDC, LINK/WETH and USDC/WETH, each in the tiers the devnet has.
        want = {m.uniswap_v3.pools[k] for k in m.uniswap_v3.pools
                if k.rsplit("/", 1)[0] in ("LINK/USDC", "LINK/WETH", "USDC/WETH")}
        assert {s.address for s in got.v3_pools} == want
        assert got.reserves  # the V2 pairs still come in the same call
        without = await gather(devnet.rpc, replace(venue, uniswap_v3=None), [usdc, link],
                               block_time=1)
        assert without.v3_pools == ()
