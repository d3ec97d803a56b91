"""Routing across Uniswap V2 and V3: the best pool per hop, two-hop routes, splits.

``RoutingQuoter`` is a ``Quoter`` (keeper.domain.quote) over a snapshot of V2 reserves and V3
pool snapshots (every fee tier). For a pair it offers at most these routes, each a *shape* the
quote resolves for the amount sold, so the planner's optimiser sees one function per shape:

- ``Route((a, b), BEST)``: the direct pool (any venue, any tier) that pays the most;
- ``Route((a, hub, b), BEST)`` for each hub: the best pool of each hop (greedy is optimal on a
  chain: each hop's output grows with its input, so the most from hop 1 is the best input to
  hop 2);
- ``Route((a, b), SPLIT)``: the two best routes with no pool in common, sold along at once in
  the proportion found by a golden-section search over the amount of the first (the sum of two
  concave outputs is unimodal); every leg is quoted exactly. When no proportion beats the best
  single route by ``min_split_gain_bps``, the quote is that single route.

Every quote is exact to the wei for the snapshot: V2 with UniswapV2Library's integers, V3 with
the pool's own swap (keeper.domain.uniswap_v3.pool). The quote's ``route`` is concrete (it
names its pools), so ``Quote.legs()`` is what the liquidator executes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from keeper.domain.amm import PairReserves, SwapRevert, sort_tokens
from keeper.domain.quote import (
    BEST,
    MIXED,
    SPLIT,
    UNISWAP_V2,
    UNISWAP_V3,
    PairAddress,
    Quote,
    Route,
    best_quote,
    v2_amount_out,
)
from keeper.domain.swap_route import SwapHop, Venue
from keeper.domain.uniswap_v3.pool import PoolSnapshot, quote_exact_input

_GOLDEN = 618_034  # (√5 − 1) / 2, in millionths
_VENUE_LABEL = {Venue.UNISWAP_V2: UNISWAP_V2, Venue.UNISWAP_V3: UNISWAP_V3}


@dataclass(frozen=True, slots=True)
class _Pool:
    venue: Venue
    address: str
    fee: int
    v3: PoolSnapshot | None = None


class RoutingQuoter:
    """Exact quotes over Uniswap V2 reserves and V3 pool snapshots, with hubs and splits."""

    def __init__(self, v2_reserves: PairReserves | None = None,
                 v3_pools: Iterable[PoolSnapshot] = (), hubs: Sequence[str] = (), *,
                 pair_address: PairAddress | None = None, min_split_gain_bps: int = 0,
                 split_iterations: int = 20) -> None:
        self.hubs = tuple(h.lower() for h in hubs)
        self.min_split_gain_bps = min_split_gain_bps
        self.split_iterations = split_iterations
        self.v2 = {(a.lower(), b.lower()): r for (a, b), r in (v2_reserves or {}).items()}
        self._pools: dict[tuple[str, str], list[_Pool]] = {}
        self._by_address: dict[str, _Pool] = {}
        for (t0, t1), (r0, r1) in self.v2.items():
            if r0 > 0 and r1 > 0:
                address = pair_address(t0, t1).lower() if pair_address else ""
                self._add((t0, t1), _Pool(Venue.UNISWAP_V2, address, 0))
        for snap in v3_pools:
            if snap.liquidity > 0 or snap.liquidity_net:
                self._add((snap.token0, snap.token1),
                          _Pool(Venue.UNISWAP_V3, snap.address, snap.fee, snap))

    def _add(self, key: tuple[str, str], pool: _Pool) -> None:
        self._pools.setdefault(key, []).append(pool)
        if pool.address:
            self._by_address[pool.address] = pool

    def _pools_of(self, a: str, b: str) -> list[_Pool]:
        return self._pools.get(sort_tokens(a, b), []) if a != b else []

    # ---- the Quoter interface --------------------------------------------------------------
    def routes(self, token_in: str, token_out: str) -> list[Route]:
        """The direct shape, a two-hop shape per hub, and a split when two routes exist."""
        a, b = token_in.lower(), token_out.lower()
        if a == b:
            return []
        found: list[Route] = []
        direct = self._pools_of(a, b)
        if direct:
            found.append(Route((a, b), BEST))
        for hub in self.hubs:
            if hub not in (a, b) and self._pools_of(a, hub) and self._pools_of(hub, b):
                found.append(Route((a, hub, b), BEST))
        if len(direct) + len(found) - (1 if direct else 0) >= 2:
            found.append(Route((a, b), SPLIT))
        return found

    def quote_route(self, route: Route, amount_in: int) -> Quote:
        """The exact output of selling ``amount_in`` along ``route`` (a shape or concrete)."""
        if amount_in <= 0:
            raise SwapRevert("zero input")
        if route.swap_hops:
            return self._quote_concrete(route, amount_in)
        if route.venue == SPLIT:
            return self._quote_split(route.path[0], route.path[-1], amount_in)
        only = {UNISWAP_V2: Venue.UNISWAP_V2, UNISWAP_V3: Venue.UNISWAP_V3}.get(route.venue)
        return self._quote_best_path(route.path, amount_in, only)

    def quote_exact_in(self, token_in: str, token_out: str, amount_in: int) -> Quote:
        """The best quote over every route; a split is in it when it pays (see the module)."""
        return best_quote(self, token_in, token_out, amount_in)

    # ---- one concrete route ------------------------------------------------------------------
    def _hop_out(self, pool: _Pool, token_in: str, token_out: str, amount_in: int) -> int:
        if pool.v3 is not None:
            return quote_exact_input(pool.v3, token_in, amount_in)
        return v2_amount_out(self.v2, token_in, token_out, amount_in)

    def _quote_concrete(self, route: Route, amount_in: int) -> Quote:
        amounts = [amount_in]
        for hop in route.swap_hops:
            if hop.venue == Venue.UNISWAP_V2 and not hop.pool:  # a pair known by its tokens
                amounts.append(v2_amount_out(self.v2, hop.token_in, hop.token_out, amounts[-1]))
                continue
            pool = self._by_address.get(hop.pool)
            if pool is None:
                raise SwapRevert(f"pool {hop.pool} is not in the snapshot")
            amounts.append(self._hop_out(pool, hop.token_in, hop.token_out, amounts[-1]))
        return Quote(amount_in, amounts[-1], route, tuple(amounts))

    def _quote_best_path(self, path: tuple[str, ...], amount_in: int,
                         only: Venue | None = None) -> Quote:
        amounts, hops = [amount_in], []
        for x, y in pairwise(path):
            best: tuple[int, _Pool] | None = None
            last: SwapRevert | None = None
            for pool in self._pools_of(x, y):
                if only is not None and pool.venue != only:
                    continue
                try:
                    out = self._hop_out(pool, x, y, amounts[-1])
                except SwapRevert as exc:
                    last = exc
                    continue
                if best is None or out > best[0]:
                    best = (out, pool)
            if best is None:
                raise last or SwapRevert(f"no pool for {x}/{y}")
            amounts.append(best[0])
            hops.append(SwapHop(best[1].venue, best[1].address, x, y, best[1].fee))
        venues = {h.venue for h in hops}
        label = _VENUE_LABEL[hops[0].venue] if len(venues) == 1 else MIXED
        return Quote(amount_in, amounts[-1], Route(path, label, tuple(hops)), tuple(amounts))

    # ---- splits ------------------------------------------------------------------------------
    def _candidates(self, a: str, b: str, amount_in: int) -> list[Quote]:
        """Every direct pool and each hub's best path, as concrete quotes, best first."""
        quotes: list[Quote] = []
        for pool in self._pools_of(a, b):
            hop = SwapHop(pool.venue, pool.address, a, b, pool.fee)
            route = Route((a, b), _VENUE_LABEL[pool.venue], (hop,))
            try:
                quotes.append(Quote(amount_in, self._hop_out(pool, a, b, amount_in), route,
                                    (amount_in,)))
            except SwapRevert:
                continue
        for hub in self.hubs:
            if hub not in (a, b) and self._pools_of(a, hub) and self._pools_of(hub, b):
                try:
                    quotes.append(self._quote_best_path((a, hub, b), amount_in))
                except SwapRevert:
                    continue
        return sorted(quotes, key=lambda q: q.amount_out, reverse=True)

    def _quote_split(self, a: str, b: str, amount_in: int) -> Quote:
        candidates = self._candidates(a, b, amount_in)
        if not candidates:
            raise SwapRevert(f"no route from {a} to {b}")
        single = candidates[0]
        first = single.route
        used = {_pool_id(h) for h in first.swap_hops}
        second = next((q.route for q in candidates[1:]
                       if not used & {_pool_id(h) for h in q.route.swap_hops}), None)
        if second is None:
            return single
        split = self._search_split(first, second, amount_in)
        if split is None or split.amount_out * 10_000 <= \
                single.amount_out * (10_000 + self.min_split_gain_bps):
            return single
        return split

    def _search_split(self, first: Route, second: Route, total: int) -> Quote | None:
        """The best split of ``total`` between two concrete routes (None: none beats 0/total)."""
        seen: dict[int, tuple[int, tuple[Quote, ...]]] = {}

        def value(x: int) -> int:
            if x not in seen:
                seen[x] = _split_value(self, first, second, x, total)
            return seen[x][0]

        lo, hi = 0, total
        x1, x2 = hi - (hi - lo) * _GOLDEN // 10**6, lo + (hi - lo) * _GOLDEN // 10**6
        for _ in range(self.split_iterations):
            if hi - lo < 3:
                break
            if value(x1) < value(x2):
                lo, x1 = x1, x2
                x2 = lo + (hi - lo) * _GOLDEN // 10**6
            else:
                hi, x2 = x2, x1
                x1 = hi - (hi - lo) * _GOLDEN // 10**6
        if not seen:  # a total of a few units: nothing to split
            return None
        best_x = max(seen, key=lambda x: seen[x][0])
        out, parts = seen[best_x]
        if len(parts) < 2:
            return None
        parts = tuple(sorted(parts, key=lambda q: q.amount_in))  # the larger leg last
        return Quote(total, out, Route(first.path[:1] + first.path[-1:], SPLIT),
                     (total, out), parts)


def _split_value(quoter: RoutingQuoter, first: Route, second: Route, x: int,
                 total: int) -> tuple[int, tuple[Quote, ...]]:
    """Output and legs of selling ``x`` along ``first`` and the rest along ``second``; an
    impossible leg (a revert, a zero output) makes the split worth -1."""
    parts: list[Quote] = []
    try:
        if x > 0:
            parts.append(quoter.quote_route(first, x))
        if total - x > 0:
            parts.append(quoter.quote_route(second, total - x))
    except SwapRevert:
        return -1, ()
    return sum(q.amount_out for q in parts), tuple(parts)


def _pool_id(hop: SwapHop) -> str:
    """A hop's pool, also for a V2 pair whose address the quoter was not told."""
    return hop.pool or "v2:" + "/".join(sort_tokens(hop.token_in, hop.token_out))


class UniswapV3Quoter(RoutingQuoter):
    """A quoter over Uniswap V3 pools only (every fee tier, hubs, splits across tiers)."""

    def __init__(self, pools: Iterable[PoolSnapshot], hubs: Sequence[str] = (), *,
                 min_split_gain_bps: int = 0, split_iterations: int = 20) -> None:
        super().__init__(None, pools, hubs, min_split_gain_bps=min_split_gain_bps,
                         split_iterations=split_iterations)
