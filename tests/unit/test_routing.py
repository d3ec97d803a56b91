"""RoutingQuoter over hand-made V2 reserves and V3 snapshots: shapes, best pools, splits, legs."""

from __future__ import annotations

import pytest

from keeper.domain.amm import SwapRevert
from keeper.domain.quote import BEST, SPLIT, UNISWAP_V2, UNISWAP_V3, Route, UniswapV2Quoter
from keeper.domain.routing import RoutingQuoter, UniswapV3Quoter
from keeper.domain.swap_route import SwapHop, Venue
from keeper.domain.uniswap_v3.pool import PoolSnapshot, quote_exact_input
from keeper.domain.uniswap_v3.tick_math import sqrt_ratio_at_tick

A, B, HUB = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20


def _pair(a: str, b: str) -> str:
    return "0x" + (a[2:4] + b[2:4]) * 10


def _v3(address: str, fee: int, liquidity: int, token0: str = A, token1: str = B) -> PoolSnapshot:
    """A pool at price 1 with one position on [-6000, 6000) (spacing 60)."""
    words = {w: 0 for w in range(-2, 2)}
    for tick in (-6000, 6000):
        c = tick // 60
        words[c >> 8] |= 1 << (c & 0xFF)
    return PoolSnapshot(address, token0, token1, fee, 60, sqrt_ratio_at_tick(0), 0, liquidity,
                        words, {-6000: liquidity, 6000: -liquidity})


def test_shapes_and_the_best_direct_pool() -> None:
    deep = _v3("0x" + "aa" * 20, 500, 10**24)
    thin = _v3("0x" + "bb" * 20, 3000, 10**20)
    q = RoutingQuoter({(A, B): (10**22, 10**22)}, [deep, thin], pair_address=_pair)
    assert q.routes(A, B) == [Route((A, B), BEST), Route((A, B), SPLIT)]
    best = q.quote_route(Route((A, B), BEST), 10**18)
    assert best.route.venue == UNISWAP_V3
    assert best.route.swap_hops == (SwapHop(Venue.UNISWAP_V3, deep.address, A, B, 500),)
    assert best.amount_out == quote_exact_input(deep, A, 10**18)
    (leg,) = best.legs()
    assert leg.amount_in == 10**18 and leg.hops == best.route.swap_hops
    # The concrete route quotes the same again; only V2 when the shape says so.
    assert q.quote_route(best.route, 10**18) == best
    v2 = q.quote_route(Route((A, B)), 10**18)
    assert v2.route.venue == UNISWAP_V2 and v2.legs()[0].hops[0].pool == _pair(A, B)


def test_a_split_beats_both_routes_when_they_are_alike() -> None:
    # V2 and a V3 pool of about the same depth at the same fee: selling a lot in both pays.
    v3 = _v3("0x" + "aa" * 20, 3000, 10**22)
    q = RoutingQuoter({(A, B): (10**22, 10**22)}, [v3], pair_address=_pair)
    amount = 10**21
    split = q.quote_route(Route((A, B), SPLIT), amount)
    assert split.route.venue == SPLIT and len(split.parts) == 2 and split.hops == 2
    singles = [q.quote_route(r, amount).amount_out for r in
               (Route((A, B)), Route((A, B), UNISWAP_V3))]
    assert split.amount_out > max(singles)
    legs = split.legs()
    assert sum(leg.amount_in for leg in legs) == amount
    assert legs[0].amount_in <= legs[1].amount_in  # the larger leg last
    assert split.amount_out == sum(p.amount_out for p in split.parts)
    # A tiny sale gains nothing worth a second leg: the quote is the single best route.
    assert not q.quote_route(Route((A, B), SPLIT), 10**6).parts
    picky = RoutingQuoter({(A, B): (10**22, 10**22)}, [v3], pair_address=_pair,
                          min_split_gain_bps=10_000)
    assert not picky.quote_route(Route((A, B), SPLIT), amount).parts


def test_two_hops_pick_the_best_pool_of_each_hop() -> None:
    a_hub = _v3("0x" + "aa" * 20, 500, 10**24, A, HUB)
    q = RoutingQuoter({(B, HUB): (10**22, 10**22)}, [a_hub], hubs=[HUB], pair_address=_pair)
    assert q.routes(A, B) == [Route((A, HUB, B), BEST)]
    quote = q.quote_exact_in(A, B, 10**18)
    assert quote.route.venue == "mixed"
    assert [h.venue for h in quote.route.swap_hops] == [Venue.UNISWAP_V3, Venue.UNISWAP_V2]
    assert quote.amounts[1] == quote_exact_input(a_hub, A, 10**18)


def test_no_pools_no_routes_and_unknown_pools_no_legs() -> None:
    q = UniswapV3Quoter([])
    assert q.routes(A, B) == []
    with pytest.raises(SwapRevert):
        q.quote_exact_in(A, B, 10**18)
    v2 = UniswapV2Quoter({(A, B): (10**22, 10**22)})
    with pytest.raises(ValueError, match="names no pools"):
        v2.quote_exact_in(A, B, 10**18).legs()
    named = UniswapV2Quoter({(A, B): (10**22, 10**22)}, pair_address=_pair)
    assert named.quote_exact_in(A, B, 10**18).legs()[0].hops[0].pool == _pair(A, B)



def test_a_split_of_a_few_units_is_the_single_route() -> None:
    """The golden-section search has nothing to probe below 3 units: the best single route,
    not an error (a dust position's seized collateral can be that small)."""
    v3 = _v3("0x" + "aa" * 20, 3000, 10**22)
    q = RoutingQuoter({(A, B): (10**22, 10**22)}, [v3], pair_address=_pair)
    first, second = Route((A, B)), Route((A, B), UNISWAP_V3)
    concrete = [q.quote_route(r, 10**18).route for r in (first, second)]
    for total in (0, 1, 2):
        assert q._search_split(concrete[0], concrete[1], total) is None
