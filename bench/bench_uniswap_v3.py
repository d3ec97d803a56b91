"""Speed of the pure Uniswap V3 quote: µs per exact-input quote crossing k initialized ticks, and
per routed quote (V2 + two V3 tiers, a hub, a split search).

A synthetic 0.3% pool with a position every two tick spacings around the price, so a sale of a
chosen size crosses a known number of initialized ticks; no devnet needed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from keeper.domain.routing import RoutingQuoter
from keeper.domain.uniswap_v3.pool import PoolSnapshot, swap_exact_input
from keeper.domain.uniswap_v3.sqrt_price_math import amount0_delta
from keeper.domain.uniswap_v3.tick_math import sqrt_ratio_at_tick

Row = tuple[str, str, str]
TOKEN0, TOKEN1, HUB = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
SPACING = 60
LIQUIDITY = 10**21


def _pool(address: str, token0: str, token1: str, fee: int = 3000) -> PoolSnapshot:
    """Nested positions every two spacings out to ±200 spacings: each step down crosses one."""
    nets: dict[int, int] = {}
    words: dict[int, int] = {w: 0 for w in range(-3, 3)}
    for k in range(1, 101):
        for tick, net in ((-2 * k * SPACING, LIQUIDITY // 100), (2 * k * SPACING, -LIQUIDITY // 100)):
            nets[tick] = net
            c = tick // SPACING
            words[c >> 8] |= 1 << (c & 0xFF)
    return PoolSnapshot(address, token0, token1, fee, SPACING, sqrt_ratio_at_tick(1), 1,
                        LIQUIDITY * 2, words, nets)


def _per_call(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


async def run() -> list[Row]:
    pool = _pool("0x" + "aa" * 20, TOKEN0, TOKEN1)
    rows: list[Row] = []
    for k in (0, 2, 10, 50):
        # Input that takes the price down to just past the k-th initialized tick below.
        target = sqrt_ratio_at_tick(-2 * k * SPACING - 1) if k else sqrt_ratio_at_tick(-10)
        amount = amount0_delta(target, pool.sqrt_price_x96, pool.liquidity, True)
        crossed = swap_exact_input(pool, True, amount).ticks_crossed
        us = _per_call(functools.partial(swap_exact_input, pool, True, amount), 300)
        rows.append((f"V3 quote crossing {crossed} ticks", f"{us:.0f} µs", "pure integer swap"))
    quoter = RoutingQuoter(
        {(TOKEN0, TOKEN1): (10**24, 10**24), (TOKEN0, HUB): (10**24, 10**24),
         (TOKEN1, HUB): (10**24, 10**24)},
        [pool, _pool("0x" + "bb" * 20, TOKEN0, TOKEN1, 500),
         _pool("0x" + "cc" * 20, TOKEN0, HUB)], hubs=[HUB],
        pair_address=lambda a, b: "0x" + (a[2:4] + b[2:4]) * 10)
    amount = 10**22
    us = _per_call(lambda: quoter.quote_exact_in(TOKEN0, TOKEN1, amount), 30)
    best = quoter.quote_exact_in(TOKEN0, TOKEN1, amount)
    rows.append(("routed quote (V2 + 2 V3 tiers, hub, split)", f"{us / 1000:.1f} ms",
                 f"{len(best.legs())} leg(s) chosen"))
    return rows
