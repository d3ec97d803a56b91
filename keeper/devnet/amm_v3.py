"""Keep the devnet's Uniswap V3 pools at the oracle price, as arbitrageurs do on mainnet.

The deployer sells into each pool through the SwapRouter with the oracle's sqrt price as the
price limit: the pool stops exactly there, whatever the liquidity on the way, and the router
takes only what the pool used. The input minted for it is an upper bound (the pool's whole
balance of the other token, valued at the target price, plus the fee).
"""

from __future__ import annotations

from collections.abc import Mapping

from keeper.contracts import artifacts
from keeper.devnet.manifest import Manifest, UniswapV3Info
from keeper.devnet.txs import TxSender
from keeper.devnet.uniswap_v3 import DEADLINE, MAX_UINT, sqrt_price_x96
from keeper.errors import ExecutionReverted

_ERC20 = artifacts.aave("MintableERC20").abi
_POOL = artifacts.uniswap_v3("UniswapV3Pool").abi
_ROUTER = artifacts.uniswap_v3("SwapRouter").abi
_QUOTER = artifacts.uniswap_v3("QuoterV2").abi
_TOLERANCE_BPS = 3  # of the sqrt price (≈ 6 bp of price): close enough, leave it


class V3Arbitrageur:
    """The deployer, trading V3 pools back to the oracle price through the SwapRouter."""

    def __init__(self, tx: TxSender, manifest: Manifest, v3: UniswapV3Info) -> None:
        self.tx = tx
        self.m = manifest
        self.v3 = v3
        self._approved: set[str] = set()

    async def arbitrage(self, wanted: set[str], prices: Mapping[str, int]) -> int:
        """Swap every V3 pool holding one of ``wanted`` to the oracle price; returns swaps."""
        swaps = 0
        for key, pool in self.v3.pools.items():
            a, b, fee = key.split("/")
            if (a in wanted or b in wanted) and await self._arbitrage_pool(pool, a, b, int(fee),
                                                                             prices):
                swaps += 1
        return swaps

    async def _arbitrage_pool(self, pool: str, a: str, b: str, fee: int,
                              prices: Mapping[str, int]) -> bool:
        ra, rb = self.m.reserve(a), self.m.reserve(b)
        s0, s1 = (ra, rb) if int(ra.address, 16) < int(rb.address, 16) else (rb, ra)
        target = sqrt_price_x96(prices[s0.symbol], prices[s1.symbol], s0.decimals, s1.decimals)
        (current, *_rest) = await self.tx.call(pool, _POOL["slot0"])
        current = int(current)
        if abs(target - current) * 10_000 < current * _TOLERANCE_BPS:
            return False
        zero_for_one = target < current
        token_in, token_out = (s0, s1) if zero_for_one else (s1, s0)
        (held,) = await self.tx.call(token_out.address, _ERC20["balanceOf"], pool)
        # What buys the pool's whole balance of token_out at the target price, plus 2%.
        bound = (int(held) * 2**192 // target**2 if zero_for_one
                 else int(held) * target**2 // 2**192)
        amount = bound * 102 // 100 + 1
        params = (token_in.address, token_out.address, amount, fee, target)
        try:
            await self.tx.call(self.v3.quoter, _QUOTER["quoteExactInputSingle"], params)
        except ExecutionReverted:
            # No liquidity between the pool's price and the oracle's: a swap moves nothing
            # (the router reverts on a swap of zero), and nobody can trade at the stale price.
            return False
        deployer = self.m.deployer
        await self.tx.transact(token_in.address, _ERC20["mint(address,uint256)"], deployer, amount)
        if token_in.address not in self._approved:
            await self.tx.transact(token_in.address, _ERC20["approve"], self.v3.router, MAX_UINT)
            self._approved.add(token_in.address)
        await self.tx.transact(self.v3.router, _ROUTER["exactInputSingle"], (
            token_in.address, token_out.address, fee, deployer, DEADLINE, amount, 0, target))
        return True
