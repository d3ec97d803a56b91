"""Swap quotes for selling seized collateral: one small interface, Uniswap V2 behind it.

``Quoter`` is what the planner needs: the routes from one token to another, and the exact
output of selling an amount along one route. ``UniswapV2Quoter`` answers from a snapshot of pair
reserves with UniswapV2Library's integer math (0.3% fee), so its quote equals what the
liquidator contract's swap will get from the same reserves. Routes are the direct pair and,
when both legs exist, a hop through each hub token (WETH by default): a thin or missing
direct pool is then beaten by a deep two-hop one. A Uniswap V3 or aggregator quoter is another
class with the same two methods: keeper.domain.routing's ``RoutingQuoter`` adds Uniswap V3 pools
(each fee tier), best-pool-per-hop two-hop routes and splits across two venues.

A quote names the pools it sells into (``Route.swap_hops``) when the quoter knows them, so
``Quote.legs()`` gives the liquidator's swap instructions (keeper.domain.swap_route).

The snapshot is read elsewhere (keeper.protocols.uniswap_v2.pair, in the pipeline's per-block
gather): everything here is a function of its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations, pairwise
from typing import Protocol

from keeper.domain.amm import PairReserves, SwapRevert, get_reserves, sort_tokens
from keeper.domain.swap_route import SwapHop, SwapLeg, Venue

UINT112_MAX = (1 << 112) - 1
UNISWAP_V2 = "uniswap_v2"
UNISWAP_V3 = "uniswap_v3"
MIXED = "mixed"
"""A concrete route whose hops trade on different venues."""
BEST = "best"
"""A route shape: the quote picks the best pool of every hop for the amount sold."""
SPLIT = "split"
"""A route shape: the quote sells along two routes at once, in the best proportion."""

PairAddress = Callable[[str, str], str]
"""The Uniswap V2 pair of two tokens (e.g. keeper.protocols.uniswap_v2.pair.pair_address with
the factory and init-code hash bound)."""


@dataclass(frozen=True, slots=True)
class Route:
    """A path of tokens; every adjacent pair is a pool.

    A concrete route names its pools in ``swap_hops`` (one per hop). A route without them is
    a shape the quoter resolves for each amount: ``venue`` UNISWAP_V2 (the V2 pairs, as this
    module has always quoted), BEST (the best pool of each hop) or SPLIT (two routes at once).
    """

    path: tuple[str, ...]
    venue: str = UNISWAP_V2
    swap_hops: tuple[SwapHop, ...] = ()

    @property
    def hops(self) -> int:
        """Hops the swap makes (a split makes those of both its legs)."""
        return (len(self.path) - 1) * (2 if self.venue == SPLIT else 1)


@dataclass(frozen=True, slots=True)
class Quote:
    """The exact result of selling ``amount_in`` along ``route``."""

    amount_in: int
    amount_out: int
    route: Route
    amounts: tuple[int, ...]
    """The amount after each hop (first = ``amount_in``, last = ``amount_out``); for a split,
    ``(amount_in, amount_out)``."""
    parts: tuple[Quote, ...] = ()
    """A split's quotes, one per leg (the larger last); empty for a single route."""

    @property
    def path(self) -> tuple[str, ...]:
        return self.route.path

    @property
    def hops(self) -> int:
        """Hops the swap makes, over all its legs."""
        return sum(len(q.route.path) - 1 for q in self.parts) if self.parts else self.route.hops

    def legs(self) -> tuple[SwapLeg, ...]:
        """The swap as the liquidator's legs: one per route sold along, each with its amount.

        Raises ValueError when a pool of the route is not known (a shape, or a V2 quoter made
        without ``pair_address``).
        """
        return tuple(SwapLeg(_concrete_hops(q.route), q.amount_in) for q in self.parts or (self,))


def _concrete_hops(route: Route) -> tuple[SwapHop, ...]:
    if len(route.swap_hops) != len(route.path) - 1 or any(not h.pool for h in route.swap_hops):
        raise ValueError(f"route {route.path} on {route.venue} names no pools: no swap legs")
    return route.swap_hops


def v2_amount_out(reserves: PairReserves, token_in: str, token_out: str, amount_in: int) -> int:
    """One Uniswap V2 hop: UniswapV2Library.getAmountOut plus the pair's own checks.

    UniswapV2Pair.swap reverts on a zero output (INSUFFICIENT_OUTPUT_AMOUNT) and when a
    balance would overflow uint112 (OVERFLOW); the router's math alone does not see either.
    """
    reserve_in, reserve_out = get_reserves(reserves, token_in, token_out)
    if reserve_in + amount_in > UINT112_MAX:
        raise SwapRevert("UniswapV2: OVERFLOW")
    # Same integers as amm.get_amount_out; inlined because this runs on every evaluation of
    # the optimiser.
    with_fee = amount_in * 997
    out = with_fee * reserve_out // (reserve_in * 1000 + with_fee)
    if out == 0:
        raise SwapRevert("UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT")
    return out


class Quoter(Protocol):
    """Quotes for exact-input sells. Raises SwapRevert where the swap would revert."""

    def routes(self, token_in: str, token_out: str) -> Sequence[Route]:
        """Every route worth trying from ``token_in`` to ``token_out`` (may be empty)."""
        ...

    def quote_route(self, route: Route, amount_in: int) -> Quote:
        """The output of selling exactly ``amount_in`` along ``route``."""
        ...

    def quote_exact_in(self, token_in: str, token_out: str, amount_in: int) -> Quote:
        """The best quote over ``routes(token_in, token_out)``."""
        ...


class UniswapV2Quoter:
    """Uniswap V2 quotes over a snapshot of pair reserves (keyed ``(token0, token1)``)."""

    def __init__(self, reserves: PairReserves, hubs: Sequence[str] = (),
                 pair_address: PairAddress | None = None) -> None:
        self.reserves: Mapping[tuple[str, str], tuple[int, int]] = {
            (a.lower(), b.lower()): r for (a, b), r in reserves.items()
        }
        self.hubs = tuple(h.lower() for h in hubs)
        self.pair_address = pair_address

    def _has_pair(self, a: str, b: str) -> bool:
        if a == b:
            return False
        reserve = self.reserves.get(sort_tokens(a, b))
        return reserve is not None and reserve[0] > 0 and reserve[1] > 0

    def routes(self, token_in: str, token_out: str) -> list[Route]:
        """The direct pair, then one hop through each hub, where the pools exist."""
        a, b = token_in.lower(), token_out.lower()
        if a == b:
            return []
        found = [self._route((a, b))] if self._has_pair(a, b) else []
        for hub in self.hubs:
            if hub not in (a, b) and self._has_pair(a, hub) and self._has_pair(hub, b):
                found.append(self._route((a, hub, b)))
        return found

    def _route(self, path: tuple[str, ...]) -> Route:
        if self.pair_address is None:
            return Route(path)
        pair = self.pair_address
        return Route(path, UNISWAP_V2, tuple(SwapHop(Venue.UNISWAP_V2, pair(x, y).lower(), x, y)
                                             for x, y in pairwise(path)))

    def quote_route(self, route: Route, amount_in: int) -> Quote:
        """UniswapV2Library.getAmountsOut along the route, plus the pair's own checks
        (``v2_amount_out``)."""
        if route.venue != UNISWAP_V2:
            raise SwapRevert(f"not a Uniswap V2 route: {route.venue}")
        if amount_in <= 0:
            raise SwapRevert("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
        amounts = [amount_in]
        for token_in, token_out in pairwise(route.path):
            amounts.append(v2_amount_out(self.reserves, token_in, token_out, amounts[-1]))
        return Quote(amount_in, amounts[-1], route, tuple(amounts))

    def quote_exact_in(self, token_in: str, token_out: str, amount_in: int) -> Quote:
        """The route with the largest output for ``amount_in``."""
        return best_quote(self, token_in, token_out, amount_in)


def best_quote(quoter: Quoter, token_in: str, token_out: str, amount_in: int) -> Quote:
    """The largest output over ``quoter.routes``: what every quoter's ``quote_exact_in`` is.
    Raises the last route's SwapRevert when none can take ``amount_in``."""
    best: Quote | None = None
    last: SwapRevert | None = None
    for route in quoter.routes(token_in, token_out):
        try:
            quote = quoter.quote_route(route, amount_in)
        except SwapRevert as exc:
            last = exc
            continue
        if best is None or quote.amount_out > best.amount_out:
            best = quote
    if best is None:
        raise last or SwapRevert(f"no route from {token_in} to {token_out}")
    return best


def needed_pairs(
    collaterals: Iterable[str], debts: Iterable[str], hubs: Sequence[str] = ()
) -> set[tuple[str, str]]:
    """The (sorted) pairs the routes from any collateral to any debt asset can use."""
    tokens = {t.lower() for t in (*collaterals, *debts)}
    pairs: set[tuple[str, str]] = set()
    for a, b in combinations(sorted(tokens), 2):
        pairs.add(sort_tokens(a, b))
    for hub in (h.lower() for h in hubs):
        pairs.update(sort_tokens(t, hub) for t in tokens if t != hub)
    return pairs
