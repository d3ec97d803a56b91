"""Uniswap V3 on a test devnet: the factory and pools from npm ``@uniswap/v3-core`` 1.0.1,
liquidity from a test-only minter, and exact quotes from the pools themselves.

Pools are priced from the market's oracle (the devnet's V2 pairs are arbitraged to it), with a
wide position and a narrow one around the price, so that a large sale crosses initialized ticks.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keeper.contracts.artifacts import NODE_MODULES, Artifact
from keeper.devnet.driver import Devnet
from keeper.domain.swap_route import SwapHop, Venue
from tests.contract_fixtures.build import test_contract

V3_ARTIFACTS = NODE_MODULES / "@uniswap" / "v3-core" / "artifacts" / "contracts"
TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}
MIN_TICK, MAX_TICK = -887272, 887272


@functools.cache
def v3_artifact(name: str) -> Artifact:
    d = json.loads((V3_ARTIFACTS / f"{name}.sol" / f"{name}.json").read_text())
    return Artifact(name, tuple(d["abi"]), d["bytecode"])


FACTORY = v3_artifact("UniswapV3Factory").abi
POOL = v3_artifact("UniswapV3Pool").abi
ERC20_MINT = "mint(address,uint256)"


@dataclass
class UniswapV3:
    """A V3 factory on the devnet, the pools made on it and the helpers that serve them."""

    devnet: Devnet
    factory: str
    minter: str
    probe: str
    pools: dict[tuple[str, str, int], str] = field(default_factory=dict)
    """(token0, token1, fee) → pool, lower-case."""

    def pool(self, a: str, b: str, fee: int) -> str:
        t0, t1 = sorted((a.lower(), b.lower()))
        return self.pools[(t0, t1, fee)]

    def hop(self, a: str, b: str, fee: int) -> SwapHop:
        return SwapHop(Venue.UNISWAP_V3, self.pool(a, b, fee), a.lower(), b.lower(), fee)

    async def quote(self, hop: SwapHop, amount_in: int, block: str = "latest") -> int:
        """The pool's own exact-input output (swap in an eth_call, reverted in the callback)."""
        fn = test_contract("V3QuoteProbe").abi["quote"]
        (out,) = await self.devnet.tx.call(self.probe, fn, hop.pool,
                                           hop.token_in < hop.token_out, amount_in, block=block)
        return int(out)

    async def create_pool(self, a: str, b: str, fee: int, price: float, liquidity: int) -> str:
        """A pool of (a, b, fee) at ``price`` (raw units of b per raw unit of a) with a wide
        position of ``liquidity`` and a narrow one of the same size, ±1% around the price."""
        t0, t1 = sorted((a.lower(), b.lower()))
        raw_price = price if t0 == a.lower() else 1 / price
        tx = self.devnet.tx
        await tx.transact(self.factory, FACTORY["createPool"], t0, t1, fee)
        (pool,) = await tx.call(self.factory, FACTORY["getPool"], t0, t1, fee)
        pool = str(pool).lower()
        sqrt_price = math.isqrt(int(raw_price * 2**96 * 2**96))
        await tx.transact(pool, POOL["initialize"], sqrt_price)
        slot0 = await tx.call(pool, POOL["slot0"])
        tick, spacing = int(slot0[1]), TICK_SPACING[fee]
        self.pools[(t0, t1, fee)] = pool
        for token in (t0, t1):  # plenty for both positions
            await tx.transact(token, _mint_fn(), self.minter, 10**40)
        mint = test_contract("V3Minter").abi["mint"]
        wide = 23_000  # ≈ ×10 / ÷10 in price
        narrow = 100  # ≈ ±1%
        for half in (wide, narrow):
            lower = max(MIN_TICK, (tick - half) // spacing * spacing)
            upper = min(MAX_TICK, (tick + half) // spacing * spacing + spacing)
            await tx.transact(self.minter, mint, pool, lower, upper, liquidity)
        return pool


@functools.cache
def _mint_fn() -> Any:
    from keeper.contracts import artifacts
    return artifacts.aave("MintableERC20").abi[ERC20_MINT]


async def deploy_uniswap_v3(devnet: Devnet, *, fee_tiers: Iterable[tuple[int, int]] = ((100, 1),)
                            ) -> UniswapV3:
    """The factory (its owner is the devnet's default sender) with extra fee tiers enabled, a
    minter and a quote probe."""
    tx = devnet.tx
    factory = await tx.deploy(v3_artifact("UniswapV3Factory").deploy_data(), what="UniswapV3Factory")
    for fee, spacing in fee_tiers:
        await tx.transact(factory, FACTORY["enableFeeAmount"], fee, spacing)
    minter = await tx.deploy(test_contract("V3Minter").deploy_data(), what="V3Minter")
    probe = await tx.deploy(test_contract("V3QuoteProbe").deploy_data(), what="V3QuoteProbe")
    return UniswapV3(devnet, factory, minter, probe)


def raw_price(devnet_prices: Mapping[str, int], decimals: Mapping[str, int], a: str, b: str) -> float:
    """Raw units of ``b`` per raw unit of ``a`` at the oracle's prices (symbols)."""
    return float(devnet_prices[a] / devnet_prices[b] * 10 ** decimals[b] / 10 ** decimals[a])
