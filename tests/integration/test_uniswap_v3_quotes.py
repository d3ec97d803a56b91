"""The keeper's Uniswap V3 quote equals QuoterV2's ``quoteExactInputSingle`` to the wei.

A hypothesis property over the devnet's V3 pools (every fee tier: 500, 3000, 10000), both
directions, sizes from dust to millions of dollars (so sales cross initialized ticks and word
ends) and, two times in three, a random extra narrow position minted around the price
first. The pool state is read by ``V3PoolReader`` (one Multicall3 batch), the quote computed by
the pure core; each example runs in an anvil snapshot that is reverted afterwards.

Hypothesis drives a synchronous test; the devnet lives on an event loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.uniswap_v3 import DEADLINE, TICK_SPACING, position_amounts
from keeper.domain.uniswap_v3.pool import PoolSnapshot, swap_exact_input
from keeper.domain.uniswap_v3.sqrt_price_math import amount0_delta, amount1_delta
from keeper.domain.uniswap_v3.tick_bitmap import TickWindowExceeded
from keeper.domain.uniswap_v3.tick_math import MAX_TICK, MIN_TICK, sqrt_ratio_at_tick
from keeper.errors import ExecutionReverted
from keeper.protocols.uniswap_v3.pool_address import pool_address
from keeper.protocols.uniswap_v3.pool_state import V3PoolReader
from tests.conftest import running_devnet

pytestmark = pytest.mark.integration

T = TypeVar("T")
_QUOTER = artifacts.uniswap_v3("QuoterV2").abi["quoteExactInputSingle"]
_NPM = artifacts.uniswap_v3("NonfungiblePositionManager").abi
_ERC20 = artifacts.aave("MintableERC20").abi


class LoopThread:
    """An event loop in a thread, so a synchronous hypothesis test can drive the devnet."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def v3_devnet() -> Iterator[tuple[LoopThread, Devnet]]:
    lt = LoopThread()
    ctx = running_devnet("3.0")
    devnet = lt.run(ctx.__aenter__())
    try:
        yield lt, devnet
    finally:
        lt.run(ctx.__aexit__(None, None, None))
        lt.stop()


async def _prices(devnet: Devnet) -> dict[str, int]:
    return await devnet.prices()


async def _mint_position(devnet: Devnet, key: str, pool: str, offsets: tuple[int, int],
                         usd: int, prices: dict[str, int]) -> None:
    """A concentrated position of ``usd`` on [tick + lo·spacing, tick + hi·spacing)."""
    m, v3 = devnet.m, devnet.m.uniswap_v3
    assert v3 is not None
    a, b, fee = key.split("/")
    r0, r1 = sorted((m.reserve(a), m.reserve(b)), key=lambda r: int(r.address, 16))
    (snap,) = await V3PoolReader(devnet.rpc).read([pool])
    spacing = TICK_SPACING[int(fee)]
    base = snap.tick // spacing * spacing
    lower, upper = base + offsets[0] * spacing, base + offsets[1] * spacing
    a0, a1 = position_amounts(snap.sqrt_price_x96, lower, upper, usd,
                              (prices[r0.symbol], prices[r1.symbol]), (r0.decimals, r1.decimals))
    for token, amount in ((r0.address, a0 + 1), (r1.address, a1 + 1)):
        await devnet.tx.transact(token, _ERC20["mint(address,uint256)"], m.deployer, amount)
    await devnet.tx.transact(v3.position_manager, _NPM["mint"], (
        r0.address, r1.address, int(fee), lower, upper, a0, a1, 0, 0, m.deployer, DEADLINE))


def _amount_to_move(snap: PoolSnapshot, zero_first: bool, spacings: int) -> int:
    """Input that moves the price ``spacings`` tick spacings at the current liquidity (before
    fees and crossings): a size that reaches the ticks near the price, whatever the depth."""
    ticks = spacings * snap.tick_spacing
    target = sqrt_ratio_at_tick(max(MIN_TICK, min(MAX_TICK, snap.tick + (-ticks if zero_first
                                                                         else ticks))))
    liquidity = max(snap.liquidity, 1)
    if zero_first:
        return amount0_delta(target, snap.sqrt_price_x96, liquidity, True)
    return amount1_delta(snap.sqrt_price_x96, target, liquidity, True)


async def _compare(devnet: Devnet, key: str, zero_first: bool, size: tuple[str, int],
                   position: tuple[tuple[int, int], int] | None,
                   stats: Counter[str]) -> None:
    m, v3 = devnet.m, devnet.m.uniswap_v3
    assert v3 is not None
    pool = v3.pools[key]
    snapshot = await devnet.rpc.call("evm_snapshot")
    try:
        prices = await _prices(devnet)
        if position is not None:
            await _mint_position(devnet, key, pool, *position, prices)
        (snap,) = await V3PoolReader(devnet.rpc).read([pool])
        token_in = snap.token0 if zero_first else snap.token1
        token_out = snap.token1 if zero_first else snap.token0
        r_in = next(r for r in m.reserves if r.address == token_in)
        kind, n = size
        amount = max(1, n * 10**r_in.decimals * 10**6 // prices[r_in.symbol] if kind == "cents"
                     else _amount_to_move(snap, zero_first, n))
        try:
            mine = swap_exact_input(snap, zero_first, amount)
        except TickWindowExceeded:
            stats["window"] += 1
            return
        try:
            (out, _price, _crossed, _gas) = await devnet.tx.call(
                v3.quoter, _QUOTER, (token_in, token_out, amount, snap.fee, 0))
        except ExecutionReverted:
            # QuoterV2 reverts when the pool pays out nothing (its callback's require).
            assert mine.amount_out == 0
            stats["zero"] += 1
            return
        assert mine.amount_out == int(out), (key, zero_first, amount, mine, out)
        stats["compared"] += 1
        stats[f"fee{snap.fee}"] += 1
        if mine.ticks_crossed:
            stats["crossed"] += 1
    finally:
        await devnet.rpc.call("evm_revert", [snapshot])


def test_pool_address_is_the_factory_pool(v3_devnet: tuple[LoopThread, Devnet]) -> None:
    _, devnet = v3_devnet
    v3 = devnet.m.uniswap_v3
    assert v3 is not None and len(v3.pools) >= 30
    for key, pool in v3.pools.items():
        a, b, fee = key.split("/")
        assert pool_address(v3.factory, devnet.m.reserve(a).address,
                            devnet.m.reserve(b).address, int(fee)) == pool


def test_v3_quote_equals_quoter_v2_to_the_wei(v3_devnet: tuple[LoopThread, Devnet]) -> None:
    lt, devnet = v3_devnet
    v3 = devnet.m.uniswap_v3
    assert v3 is not None
    keys = sorted(v3.pools)
    stats: Counter[str] = Counter()
    # Narrow positions (a few spacings each side) put initialized ticks right in a sale's way.
    position = st.tuples(st.tuples(st.integers(-12, -1), st.integers(1, 12)),
                         st.integers(100, 300_000))
    positions = st.none() | position | position

    # Every fee tier as often, whatever the number of its pools.
    by_tier = st.sampled_from((500, 3000, 10000)).flatmap(
        lambda fee: st.sampled_from([k for k in keys if k.endswith(f"/{fee}")]))

    # Dust to $5M (in USD cents, log-spread), or what moves the price 1..60 tick spacings.
    sizes = (st.tuples(st.just("cents"), st.integers(0, 28).map(lambda e: int(1.75**e) * 100 + 1))
             | st.tuples(st.just("spacings"), st.integers(1, 60)))

    @settings(max_examples=270, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(key=by_tier, zero_first=st.booleans(), size=sizes, position=positions)
    def check(key: str, zero_first: bool, size: tuple[str, int],
              position: tuple[tuple[int, int], int] | None) -> None:
        before = stats.copy()
        lt.run(_compare(devnet, key, zero_first, size, position, stats))
        for outcome in stats - before:
            event(outcome)  # hypothesis records events in the test's own thread only

    check()
    print(dict(stats))  # shown with -s: how many compared, crossed, left the window
    assert stats["compared"] >= 200, stats
    assert stats["crossed"] >= 20, stats
    assert all(stats[f"fee{fee}"] >= 10 for fee in (500, 3000, 10000)), stats
