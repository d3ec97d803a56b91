"""A handle on a running devnet, to act on it as its users, its oracle and its arbitrageurs do.

Every user is an address anvil impersonates (``anvil_autoImpersonateAccount``), so scenarios
can create thousands of borrowers without keys. The jobs live apart: building the users'
transactions (``users``), sending many in few blocks (``batch``), reading state (``reads``),
arbitraging the AMM (``amm``); ``Devnet`` ties them to one RPC connection and manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from keeper.chain.abi import Function
from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet import batch, reads
from keeper.devnet.amm import Arbitrageur
from keeper.devnet.manifest import Manifest
from keeper.devnet.reads import AccountData
from keeper.devnet.txs import TxSender
from keeper.devnet.users import Tx, UserActions
from keeper.errors import DevnetError

_FEED = artifacts.ours("PriceFeed").abi


class Devnet:
    """A handle on a running devnet: its manifest, an RPC connection, and its users' actions
    (``devnet.users.tx_borrow(...)`` and the like, sent with ``send`` or ``send_many``)."""

    def __init__(self, rpc: HttpRpc, manifest: Manifest) -> None:
        self.rpc = rpc
        self.m = manifest
        self.tx = TxSender(rpc, manifest.deployer)
        self.users = UserActions(manifest)
        self._arbitrageur = Arbitrageur(self.tx, manifest)

    # ---- reads -------------------------------------------------------------------------
    async def prices(self) -> dict[str, int]:
        """Oracle prices by symbol (USD, 8 decimals)."""
        return await reads.oracle_prices(self.tx, self.m)

    async def account_data(self, users: Sequence[str], block: str = "latest") -> list[AccountData]:
        return await reads.account_data(self.tx, self.m, users, block)

    async def balance_of(self, symbol_or_token: str, who: str) -> int:
        return await reads.balance_of(self.tx, self.m, symbol_or_token, who)

    async def pair_reserves(self, a: str, b: str) -> tuple[int, int]:
        """Reserves of the a/b pool as (reserve of a, reserve of b)."""
        return await reads.pair_reserves(self.tx, self.m, a, b)

    # ---- sending -----------------------------------------------------------------------
    async def fund(self, users: Iterable[str], wei: int = 10**21) -> None:
        """Give users ETH for gas."""
        calls = [("anvil_setBalance", [u, hex(wei)]) for u in users]
        for i in range(0, len(calls), 500):
            await self.rpc.batch(calls[i:i + 500])

    async def send(self, tx: Tx) -> dict[str, Any]:
        """One transaction, mined now."""
        return await self.tx.send(tx.to, tx.data, sender=tx.sender, gas=tx.gas)

    async def send_many(self, txs: Sequence[Tx], *, chunk: int = 2000) -> list[dict[str, Any]]:
        """Send many transactions in few blocks and check every receipt succeeded (see
        ``keeper.devnet.batch.send_many``)."""
        return await batch.send_many(self.rpc, txs, chunk=chunk)

    # ---- prices and the AMM ------------------------------------------------------------
    async def set_price(self, symbol: str, price: int) -> None:
        """Publish a new answer on the asset's aggregator (fires AnswerUpdated)."""
        r = self.m.reserve(symbol)
        if r.feed_kind != "chainlink":
            raise DevnetError(f"{symbol} is priced by a rate adapter; move its base asset instead")
        await self.tx.transact(r.aggregator, _FEED["updateAnswer"], price)

    async def arbitrage(self, symbols: Iterable[str] | None = None) -> int:
        """Trade every Uniswap pool that holds one of ``symbols`` back to the oracle price;
        returns the swaps made."""
        return await self._arbitrageur.arbitrage(symbols)

    # ---- the chain's clock -------------------------------------------------------------
    async def mine(self, blocks: int = 1) -> None:
        await self.rpc.call("anvil_mine", [hex(blocks)])

    async def increase_time(self, seconds: int) -> None:
        """Mine a block ``seconds`` after the latest one (the devnet stamps blocks at a fixed
        interval, which ``evm_increaseTime`` does not move)."""
        latest = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        await self.rpc.call("evm_setNextBlockTimestamp", [int(latest["timestamp"], 16) + seconds])
        await self.rpc.call("evm_mine")


def function(abi_name: str, fn: str) -> Function:
    """A function of an Aave artifact's ABI, for callers that need an uncommon one."""
    return artifacts.aave(abi_name).abi[fn]
