"""Act on the devnet as its users do: supply, borrow, repay, withdraw; move prices; arbitrage.

Every user is an address anvil impersonates (``anvil_autoImpersonateAccount``), so scenarios
can create thousands of borrowers without keys. ``send_many`` pushes a large set of
transactions through in few blocks: automine off, one JSON-RPC batch of sends, mine until the
pool is empty, then check every receipt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from keeper.chain.abi import Function
from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet.manifest import Manifest
from keeper.devnet.txs import TxSender
from keeper.errors import DevnetError, RpcResponseError

MAX_UINT = 2**256 - 1
STABLE, VARIABLE = 1, 2  # Aave interest rate modes

_ERC20 = artifacts.aave("MintableERC20").abi
_POOL = artifacts.aave("Pool").abi
_ORACLE = artifacts.aave("AaveOracle").abi
_FEED = artifacts.ours("PriceFeed").abi
_PAIR = artifacts.uniswap("UniswapV2Pair").abi
_ROUTER = artifacts.uniswap("UniswapV2Router02").abi

# Fixed gas limits for batched sends: estimation cannot see the effects of earlier pending txs.
GAS = {"mint": 120_000, "approve": 80_000, "supply": 350_000, "borrow": 500_000,
       "repay": 350_000, "withdraw": 400_000, "setUserEMode": 200_000,
       "setUserUseReserveAsCollateral": 250_000}


@dataclass(frozen=True, slots=True)
class Tx:
    sender: str
    to: str
    data: bytes
    gas: int


@dataclass(frozen=True, slots=True)
class AccountData:
    """Pool.getUserAccountData, in the oracle's base currency (USD, 8 decimals)."""

    user: str
    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    current_liquidation_threshold: int
    ltv: int
    health_factor: int


class Devnet:
    """A handle on a running devnet: its manifest and an RPC connection."""

    def __init__(self, rpc: HttpRpc, manifest: Manifest) -> None:
        self.rpc = rpc
        self.m = manifest
        self.tx = TxSender(rpc, manifest.deployer)
        self._router_approved: set[str] = set()

    # ---- reads -------------------------------------------------------------------------
    async def prices(self) -> dict[str, int]:
        """Oracle prices by symbol (USD, 8 decimals)."""
        (raw,) = await self.tx.call(self.m.oracle, _ORACLE["getAssetsPrices"],
                                    [r.address for r in self.m.reserves])
        return {r.symbol: int(p) for r, p in zip(self.m.reserves, raw, strict=True)}

    async def account_data(self, users: Sequence[str], block: str = "latest") -> list[AccountData]:
        out: list[AccountData] = []
        fn = _POOL["getUserAccountData"]
        for i in range(0, len(users), 500):
            chunk = users[i:i + 500]
            rows = await self.tx.call_many([(self.m.pool, fn, (u,)) for u in chunk], block)
            out += [AccountData(u, *(int(x) for x in row)) for u, row in zip(chunk, rows, strict=True)]
        return out

    async def balance_of(self, symbol_or_token: str, who: str) -> int:
        token = self._token(symbol_or_token)
        (bal,) = await self.tx.call(token, _ERC20["balanceOf"], who)
        return int(bal)

    def _token(self, symbol_or_token: str) -> str:
        if symbol_or_token.startswith("0x"):
            return symbol_or_token.lower()
        return self.m.reserve(symbol_or_token).address

    # ---- user actions, as transactions to batch ---------------------------------------------
    def tx_mint(self, user: str, symbol: str, amount: int) -> Tx:
        return Tx(user, self._token(symbol), _ERC20["mint(uint256)"].encode(amount), GAS["mint"])

    def tx_approve(self, user: str, symbol: str, amount: int = MAX_UINT) -> Tx:
        return Tx(user, self._token(symbol), _ERC20["approve"].encode(self.m.pool, amount),
                  GAS["approve"])

    def tx_supply(self, user: str, symbol: str, amount: int) -> Tx:
        return Tx(user, self.m.pool,
                  _POOL["supply"].encode(self._token(symbol), amount, user, 0), GAS["supply"])

    def tx_borrow(self, user: str, symbol: str, amount: int, rate_mode: int = VARIABLE) -> Tx:
        self._check_rate_mode(rate_mode)
        return Tx(user, self.m.pool,
                  _POOL["borrow"].encode(self._token(symbol), amount, rate_mode, 0, user),
                  GAS["borrow"])

    def tx_repay(self, user: str, symbol: str, amount: int, rate_mode: int = VARIABLE) -> Tx:
        self._check_rate_mode(rate_mode)
        return Tx(user, self.m.pool,
                  _POOL["repay"].encode(self._token(symbol), amount, rate_mode, user), GAS["repay"])

    def _check_rate_mode(self, rate_mode: int) -> None:
        # Stable-rate debt is gone since v3.2: fail here with a reason, not on chain.
        if rate_mode == STABLE and self.m.aave_version != "3.0":
            raise DevnetError(f"Aave {self.m.aave_version} has no stable-rate debt")

    def tx_withdraw(self, user: str, symbol: str, amount: int) -> Tx:
        return Tx(user, self.m.pool,
                  _POOL["withdraw"].encode(self._token(symbol), amount, user), GAS["withdraw"])

    def tx_set_emode(self, user: str, category: int) -> Tx:
        return Tx(user, self.m.pool, _POOL["setUserEMode"].encode(category), GAS["setUserEMode"])

    def tx_use_as_collateral(self, user: str, symbol: str, enabled: bool) -> Tx:
        return Tx(user, self.m.pool,
                  _POOL["setUserUseReserveAsCollateral"].encode(self._token(symbol), enabled),
                  GAS["setUserUseReserveAsCollateral"])

    def deposit_txs(self, user: str, symbol: str, amount: int) -> list[Tx]:
        """Mint, approve and supply: a user who arrives with the asset and deposits it."""
        return [self.tx_mint(user, symbol, amount), self.tx_approve(user, symbol),
                self.tx_supply(user, symbol, amount)]

    async def fund(self, users: Iterable[str], wei: int = 10**21) -> None:
        """Give users ETH for gas."""
        calls = [("anvil_setBalance", [u, hex(wei)]) for u in users]
        for i in range(0, len(calls), 500):
            await self.rpc.batch(calls[i:i + 500])

    async def send(self, tx: Tx) -> dict[str, Any]:
        """One transaction, mined now."""
        return await self.tx.send(tx.to, tx.data, sender=tx.sender, gas=tx.gas)

    async def send_many(self, txs: Sequence[Tx], *, chunk: int = 2000) -> list[dict[str, Any]]:
        """Send many transactions in few blocks and check every receipt succeeded.

        Per sender the order of ``txs`` is kept. Transactions go in rounds holding at most one
        transaction per sender (anvil loses some of a long same-sender queue when it is sent in
        one go), each round in JSON-RPC batches with automine off, mined until the pool is
        empty. Automine is restored afterwards.
        """
        if not txs:
            return []
        queues: dict[str, list[int]] = {}
        for i, t in enumerate(txs):
            queues.setdefault(t.sender, []).append(i)
        senders = sorted(queues)
        counts = await self.rpc.batch([("eth_getTransactionCount", [s, "pending"]) for s in senders])
        nonce = {s: int(c, 16) for s, c in zip(senders, counts, strict=True)}
        receipts: list[dict[str, Any] | None] = [None] * len(txs)
        depth = max(len(q) for q in queues.values())
        await self.rpc.call("anvil_setAutomine", [False])
        try:
            for level in range(depth):
                round_ix = [q[level] for q in queues.values() if len(q) > level]
                for c in range(0, len(round_ix), chunk):
                    part = round_ix[c:c + chunk]
                    calls = []
                    for i in part:
                        t = txs[i]
                        calls.append(("eth_sendTransaction", [{
                            "from": t.sender, "to": t.to, "data": "0x" + t.data.hex(),
                            "gas": hex(t.gas), "nonce": hex(nonce[t.sender]),
                            "maxFeePerGas": hex(500 * 10**9), "maxPriorityFeePerGas": hex(10**9),
                        }]))
                        nonce[t.sender] += 1
                    hashes = [str(h) for h in await self.rpc.batch(calls)]
                    await self._mine_until_empty()
                    got = await self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
                    for i, h, r in zip(part, hashes, got, strict=True):
                        if r is None or int(r["status"], 16) != 1:
                            raise DevnetError(await self._failure(txs[i], h, r))
                        receipts[i] = dict(r)
        finally:
            await self.rpc.call("anvil_setAutomine", [True])
        return [r for r in receipts if r is not None]

    async def _failure(self, t: Tx, tx_hash: str, receipt: dict[str, Any] | None) -> str:
        """Describe a failed devnet tx, with the revert reason replayed on the block before."""
        what = f"devnet tx {tx_hash} from {t.sender} to {t.to} (selector 0x{t.data[:4].hex()})"
        if receipt is None:
            return what + " was not mined"
        gas_used = int(receipt["gasUsed"], 16)
        if gas_used >= t.gas:
            return what + f" ran out of gas ({gas_used})"
        block = hex(int(receipt["blockNumber"], 16) - 1)
        try:
            await self.rpc.call("eth_call", [{"from": t.sender, "to": t.to,
                                              "data": "0x" + t.data.hex()}, block])
        except RpcResponseError as exc:
            return what + f" reverted: {exc.rpc_message} {exc.data or ''}".rstrip()
        return what + " reverted"

    async def _mine_until_empty(self) -> None:
        # Full blocks raise the base fee 12.5% each; over hundreds of them it would outgrow any
        # fee cap and anvil would drop the rest silently. Seeding holds the base fee still.
        latest = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        base_fee = latest.get("baseFeePerGas", "0x0")
        for _ in range(100_000):
            status = await self.rpc.call("txpool_status")
            if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
                return
            await self.rpc.call("anvil_setNextBlockBaseFeePerGas", [base_fee])
            await self.rpc.call("evm_mine")
        raise DevnetError("the mempool did not drain")

    # ---- prices and the AMM ------------------------------------------------------------
    async def set_price(self, symbol: str, price: int) -> None:
        """Publish a new answer on the asset's aggregator (fires AnswerUpdated)."""
        r = self.m.reserve(symbol)
        if r.feed_kind != "chainlink":
            raise DevnetError(f"{symbol} is priced by a rate adapter; move its base asset instead")
        await self.tx.transact(r.aggregator, _FEED["updateAnswer"], price)

    async def arbitrage(self, symbols: Iterable[str] | None = None) -> int:
        """Trade every Uniswap pool that holds one of ``symbols`` back to the oracle price.

        The arbitrageur mints the input token (MintableERC20) and swaps on the pair directly,
        so the pool ends within the 0.3% fee of the oracle ratio. Returns the swaps made.
        """
        prices = await self.prices()
        wanted = set(symbols) if symbols is not None else {r.symbol for r in self.m.reserves}
        swaps = 0
        for key, pair in self.m.pairs.items():
            a, b = key.split("/")
            if a not in wanted and b not in wanted:
                continue
            if await self._arbitrage_pair(pair, a, b, prices):
                swaps += 1
        return swaps

    async def _arbitrage_pair(self, pair: str, a: str, b: str, prices: dict[str, int]) -> bool:
        (token0,), (r0, r1, _ts) = await self.tx.call_many([
            (pair, _PAIR["token0"], ()), (pair, _PAIR["getReserves"], ())])
        ra, rb = self.m.reserve(a), self.m.reserve(b)
        s0, s1 = (ra, rb) if str(token0).lower() == ra.address else (rb, ra)
        r0, r1 = int(r0), int(r1)
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

    async def pair_reserves(self, a: str, b: str) -> tuple[int, int]:
        """Reserves of the a/b pool as (reserve of a, reserve of b)."""
        pair = self.m.pair(a, b)
        (token0,), (r0, r1, _ts) = await self.tx.call_many([
            (pair, _PAIR["token0"], ()), (pair, _PAIR["getReserves"], ())])
        if str(token0).lower() == self.m.reserve(a).address:
            return int(r0), int(r1)
        return int(r1), int(r0)

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
