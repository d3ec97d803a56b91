"""Keep the devnet's Uniswap V2 (and V3, keeper.devnet.amm_v3) pools at the oracle price, as
arbitrageurs do on mainnet."""

from __future__ import annotations

import math
from collections.abc import Iterable

from keeper.contracts import artifacts
from keeper.devnet.amm_v3 import V3Arbitrageur
from keeper.devnet.manifest import Manifest
from keeper.devnet.reads import oracle_prices, raw_pair_reserves
from keeper.devnet.txs import TxSender
from keeper.devnet.users import MAX_UINT

_ERC20 = artifacts.aave("MintableERC20").abi
_ROUTER = artifacts.uniswap("UniswapV2Router02").abi


class Arbitrageur:
    """The deployer, trading the pools back to the oracle price through the router."""

    def __init__(self, tx: TxSender, manifest: Manifest) -> None:
        self.tx = tx
        self.m = manifest
        self._router_approved: set[str] = set()
        self._v3 = V3Arbitrageur(tx, manifest, manifest.uniswap_v3) if manifest.uniswap_v3 else None

    async def arbitrage(self, symbols: Iterable[str] | None = None) -> int:
        """Trade every Uniswap pool that holds one of ``symbols`` back to the oracle price.

        The arbitrageur mints the input token (MintableERC20) and swaps through the routers,
        so a V2 pool ends within the 0.3% fee of the oracle ratio and a V3 pool at it.
        Returns the swaps made.
        """
        prices = await oracle_prices(self.tx, self.m)
        wanted = set(symbols) if symbols is not None else {r.symbol for r in self.m.reserves}
        swaps = 0
        for key, pair in self.m.pairs.items():
            a, b = key.split("/")
            if a not in wanted and b not in wanted:
                continue
            if await self._arbitrage_pair(pair, a, b, prices):
                swaps += 1
        if self._v3 is not None:
            swaps += await self._v3.arbitrage(wanted, prices)
        return swaps

    async def _arbitrage_pair(self, pair: str, a: str, b: str, prices: dict[str, int]) -> bool:
        token0, r0, r1 = await raw_pair_reserves(self.tx, pair)
        ra, rb = self.m.reserve(a), self.m.reserve(b)
        s0, s1 = (ra, rb) if token0 == ra.address else (rb, ra)
        # Target: r1/r0 (raw units) = price0/price1 × 10^(dec1-dec0)
        num = prices[s0.symbol] * 10**s1.decimals
        den = prices[s1.symbol] * 10**s0.decimals
        k = r0 * r1
        target0 = math.isqrt(k * den // num)
        if target0 == 0 or abs(target0 - r0) * 10_000 < r0 * 5:  # within 5 bp: leave it
            return False
        # Through the router, so the output is computed on chain at execution time: a keeper
        # liquidating into the same pool between our read and our swap cannot break K.
        if target0 > r0:  # pool needs more token0: sell token0 for token1
            await self._swap_in(s0.address, s1.address, (target0 - r0) * 1000 // 997)
        else:
            await self._swap_in(s1.address, s0.address, (k // target0 - r1) * 1000 // 997)
        return True

    async def _swap_in(self, token_in: str, token_out: str, amount_in: int) -> None:
        arb = self.m.deployer
        await self.tx.transact(token_in, _ERC20["mint(address,uint256)"], arb, amount_in)
        if token_in not in self._router_approved:
            await self.tx.transact(token_in, _ERC20["approve"], self.m.uniswap_router, MAX_UINT)
            self._router_approved.add(token_in)
        await self.tx.transact(self.m.uniswap_router, _ROUTER["swapExactTokensForTokens"],
                               amount_in, 0, [token_in, token_out], arb, 2**255)
