"""Deploy Uniswap V3 (npm ``@uniswap/v3-core`` 1.0.1, ``v3-periphery`` 1.4.4) beside the V2 pools.

Factory, NonfungiblePositionManager, SwapRouter and QuoterV2 deploy unmodified. Every pair of
reserves gets pools in two fee tiers, each holding a few concentrated positions centred on the
oracle price, so that a large sale crosses initialized ticks; the widest reaches ±90% so that
the pools still trade after a crash. The depth is chosen per pair so
the devnet offers every routing outcome next to V2's $20M-a-side pairs:

- ``DEEP`` (the majors): a 0.05% pool with millions within ±1%: V3 wins a sale outright;
- ``MEDIUM``: a 0.3% pool about as deep as V2 near the price, so a large sale splits;
- ``THIN`` (LINK): only a thin 1% pool and a very thin 0.3% one: V2 wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from keeper.contracts import artifacts
from keeper.devnet import market
from keeper.devnet.manifest import UniswapV3Info
from keeper.devnet.txs import TxSender
from keeper.domain.uniswap_v3.sqrt_price_math import amount0_delta, amount1_delta
from keeper.domain.uniswap_v3.tick_math import sqrt_ratio_at_tick, tick_at_sqrt_ratio

ZERO = "0x" + "00" * 20
MAX_UINT = 2**256 - 1
TICK_SPACING = {500: 10, 3000: 60, 10000: 200}
DEADLINE = 2**255


@dataclass(frozen=True, slots=True)
class Position:
    half_width_bps: int  # the range is price / (1 + w) .. price × (1 + w)
    usd: int


Profile = Mapping[int, tuple[Position, ...]]  # fee tier -> positions

DEEP: Profile = {
    500: (Position(100, 8_000_000), Position(500, 10_000_000), Position(2_000, 10_000_000),
          Position(9_000, 10_000_000)),
    3000: (Position(1_000, 3_000_000), Position(9_000, 3_000_000)),
}
MEDIUM: Profile = {
    3000: (Position(200, 1_000_000), Position(1_000, 2_000_000), Position(3_000, 3_000_000),
           Position(9_000, 4_000_000)),
    10000: (Position(9_000, 2_000_000),),
}
THIN: Profile = {
    3000: (Position(500, 20_000),),
    10000: (Position(1_000, 100_000), Position(3_000, 200_000)),
}
PROFILES: dict[str, Profile] = {
    "USDC/WETH": DEEP, "DAI/USDC": DEEP, "WBTC/WETH": DEEP, "WETH/wstETH": DEEP, "DAI/WETH": DEEP,
}


def profile_of(key: str) -> Profile:
    """The depth of pair ``key`` ("A/B", sorted symbols)."""
    if "LINK" in key.split("/"):
        return THIN
    return PROFILES.get(key, MEDIUM)


def sqrt_price_x96(price0: int, price1: int, decimals0: int, decimals1: int) -> int:
    """The pool price (token1 per token0, raw units) of two USD prices, as a Q64.96 sqrt."""
    return math.isqrt(price0 * 10**decimals1 * 2**192 // (price1 * 10**decimals0))


def position_ticks(tick: int, spacing: int, half_width_bps: int) -> tuple[int, int]:
    """The range around ``tick`` of ± ``half_width_bps``, widened to the tick spacing."""
    width = math.ceil(math.log1p(half_width_bps / 10_000) / math.log(1.0001))
    return (tick - width) // spacing * spacing, -((-(tick + width)) // spacing) * spacing


def position_amounts(sqrt_p: int, lower: int, upper: int, usd: int, prices: tuple[int, int],
                     decimals: tuple[int, int]) -> tuple[int, int]:
    """(amount0, amount1) worth ``usd`` (oracle prices) for a position on [lower, upper)."""
    sqrt_l, sqrt_u = sqrt_ratio_at_tick(lower), sqrt_ratio_at_tick(upper)
    unit = 10**18

    def amounts(liquidity: int) -> tuple[int, int]:
        return (amount0_delta(sqrt_p, sqrt_u, liquidity, True),
                amount1_delta(sqrt_l, sqrt_p, liquidity, True))

    a0, a1 = amounts(unit)
    value = a0 * prices[0] * 10**decimals[1] + a1 * prices[1] * 10**decimals[0]
    budget = usd * market.PRICE_UNIT * 10**(decimals[0] + decimals[1])
    return amounts(unit * budget // value)


async def deploy_uniswap_v3(tx: TxSender, deployer: str, weth9: str, tokens: Mapping[str, str],
                            prices: Mapping[str, int]) -> UniswapV3Info:
    """The V3 contracts, then every pair's pools and positions; returns their addresses."""
    factory = await tx.deploy(artifacts.uniswap_v3("UniswapV3Factory").deploy_data(),
                              what="UniswapV3Factory")
    npm_art = artifacts.uniswap_v3("NonfungiblePositionManager")
    npm = await tx.deploy(npm_art.deploy_data(factory, weth9, ZERO), what=npm_art.name)
    router = await tx.deploy(artifacts.uniswap_v3("SwapRouter").deploy_data(factory, weth9),
                             what="SwapRouter")
    quoter = await tx.deploy(artifacts.uniswap_v3("QuoterV2").deploy_data(factory, weth9),
                             what="QuoterV2")
    decimals = {s.symbol: s.decimals for s in market.RESERVES}
    symbols = [s.symbol for s in market.RESERVES]
    erc20 = artifacts.aave("MintableERC20").abi
    for sym in symbols:
        await tx.transact(tokens[sym], erc20["approve"], npm, MAX_UINT)
    factory_abi = artifacts.uniswap_v3("UniswapV3Factory").abi
    pools: dict[str, str] = {}
    for i, a in enumerate(symbols):
        for b in symbols[i + 1:]:
            s0, s1 = (a, b) if int(tokens[a], 16) < int(tokens[b], 16) else (b, a)
            key = "/".join(sorted((a, b)))
            sqrt_p = sqrt_price_x96(prices[s0], prices[s1], decimals[s0], decimals[s1])
            tick = tick_at_sqrt_ratio(sqrt_p)
            for fee, positions in profile_of(key).items():
                await tx.transact(npm, npm_art.abi["createAndInitializePoolIfNecessary"],
                                  tokens[s0], tokens[s1], fee, sqrt_p)
                (pool,) = await tx.call(factory, factory_abi["getPool"], tokens[s0], tokens[s1], fee)
                pools[f"{key}/{fee}"] = str(pool).lower()
                for pos in positions:
                    lower, upper = position_ticks(tick, TICK_SPACING[fee], pos.half_width_bps)
                    a0, a1 = position_amounts(sqrt_p, lower, upper, pos.usd,
                                              (prices[s0], prices[s1]), (decimals[s0], decimals[s1]))
                    await tx.transact(tokens[s0], erc20["mint(address,uint256)"], deployer, a0 + 1)
                    await tx.transact(tokens[s1], erc20["mint(address,uint256)"], deployer, a1 + 1)
                    await tx.transact(npm, npm_art.abi["mint"], (
                        tokens[s0], tokens[s1], fee, lower, upper, a0, a1, 0, 0, deployer,
                        DEADLINE))
    return UniswapV3Info(factory=factory, router=router, position_manager=npm, quoter=quoter,
                         pools=pools)
