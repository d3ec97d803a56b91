"""The baseline: a liquidation bot written the way most public ones are.

It knows a list of borrowers. On every new block it asks the Pool for each borrower's
``getUserAccountData``, one plain JSON-RPC ``eth_call`` at a time (no multicall, no book, no
events). For an account under water it reads ``getUserReserveData`` for every reserve from
the protocol data provider, picks the collateral and the debt of the largest value at the
oracle's prices, and sends ``Pool.liquidationCall(collateral, debt, user, type(uint256).max,
false)`` from its own balance (the Pool caps the amount at the close factor). No simulation,
a fixed gas limit, an EIP-1559 fee with a normal tip; it approves each debt asset once at start.

It runs as its own process (``python -m bench.naive_keeper CONFIG.json``) so that its CPU and
memory are its own, and writes one JSON line per event to the file the config names: ``ready``,
``detected`` (user, block, wall time), ``sent``, ``receipt`` (status) and ``sweep`` (the block,
when it started and ended, RPC calls so far).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from eth_account import Account
from eth_utils import to_checksum_address

from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet.manifest import Manifest
from keeper.errors import ExecutionReverted

MAX_UINT = 2**256 - 1
WAD = 10**18
_POOL = artifacts.aave("Pool").abi
_ERC20 = artifacts.aave("MintableERC20").abi
_ORACLE = artifacts.aave("AaveOracle").abi
_PROVIDER = artifacts.aave("AaveProtocolDataProvider").abi
NAIVE_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil account 2


@dataclass(frozen=True, slots=True)
class NaiveConfig:
    rpc_url: str
    chain_id: int
    pool: str
    oracle: str
    data_provider: str
    reserves: tuple[tuple[str, str, int], ...]  # (symbol, token address, decimals)
    borrowers: tuple[str, ...]
    private_key: str
    events_path: str
    tip_gwei: float = 2.0
    gas_limit: int = 1_000_000
    poll_interval: float = 0.05

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({k: getattr(self, k) for k in self.__slots__}))

    @classmethod
    def load(cls, path: Path) -> NaiveConfig:
        raw = json.loads(path.read_text())
        raw["reserves"] = tuple(tuple(r) for r in raw["reserves"])
        raw["borrowers"] = tuple(raw["borrowers"])
        return cls(**raw)


def config_for(manifest: Manifest, borrowers: list[str], events_path: Path,
               private_key: str = NAIVE_KEY) -> NaiveConfig:
    """The naive keeper on a devnet, from its manifest."""
    return NaiveConfig(
        rpc_url=manifest.rpc_url, chain_id=manifest.chain_id, pool=manifest.pool,
        oracle=manifest.oracle, data_provider=manifest.data_provider,
        reserves=tuple((r.symbol, r.address, r.decimals) for r in manifest.reserves),
        borrowers=tuple(b.lower() for b in borrowers), private_key=private_key,
        events_path=str(events_path))


def naive_address(private_key: str = NAIVE_KEY) -> str:
    return str(Account.from_key(private_key).address).lower()


class CountingRpc:
    """Plain JSON-RPC, one request per call, counted."""

    def __init__(self, rpc: HttpRpc) -> None:
        self.rpc = rpc
        self.calls = 0

    async def call(self, method: str, params: list[Any]) -> Any:
        self.calls += 1
        return await self.rpc.call(method, params)

    async def eth_call(self, to: str, data: str) -> str:
        return str(await self.call("eth_call", [{"to": to, "data": data}, "latest"]))


class NaiveKeeper:
    def __init__(self, cfg: NaiveConfig, rpc: CountingRpc, out: TextIO) -> None:
        self.cfg = cfg
        self.rpc = rpc
        self.out = out
        self.account = Account.from_key(cfg.private_key)
        self.address = str(self.account.address).lower()
        self.nonce = 0
        self.pending: dict[str, str] = {}  # user -> tx hash not yet mined
        self.base_fee = 0
        self.stop = asyncio.Event()

    def emit(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
        self.out.flush()

    async def setup(self) -> None:
        """Approve the Pool for every reserve once, and wait for the approvals to be mined."""
        self.nonce = int(await self.rpc.call("eth_getTransactionCount", [self.address, "pending"]), 16)
        await self._refresh_base_fee()
        hashes = [await self._send(token, _ERC20["approve"].encode_hex(self.cfg.pool, MAX_UINT), 100_000)
                  for _, token, _ in self.cfg.reserves]
        for h in hashes:
            # Polling for receipts, as the bots it stands for do.
            while await self.rpc.call("eth_getTransactionReceipt", [h]) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        self.emit("ready", address=self.address)

    async def _refresh_base_fee(self) -> int:
        block = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        self.base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
        return int(block["number"], 16)

    async def run(self) -> None:
        """Until ``self.stop`` is set: a sweep on every new block."""
        last = -1
        while not self.stop.is_set():
            block = await self._refresh_base_fee()
            if block > last:
                last = block
                await self.sweep(block)
            else:
                await asyncio.sleep(self.cfg.poll_interval)

    async def sweep(self, block: int) -> None:
        """One pass over every borrower, in order, liquidating as it goes."""
        t0 = time.time()
        prices: dict[str, int] | None = None
        fn = _POOL["getUserAccountData"]
        for user in self.cfg.borrowers:
            if self.stop.is_set():
                return
            try:
                raw = await self.rpc.eth_call(self.cfg.pool, fn.encode_hex(user))
            except ExecutionReverted:
                continue  # an account whose data the Pool cannot compute now: next block
            _, debt, _, _, _, hf = fn.decode_output(raw)
            if debt == 0 or hf >= WAD or user in self.pending:
                continue
            self.emit("detected", user=user, block=block)
            if prices is None:
                prices = await self._prices()
            try:
                await self.liquidate(user, prices)
            except ExecutionReverted:
                continue
        await self._check_receipts()
        self.emit("sweep", block=block, t_start=t0, calls=self.rpc.calls)

    async def _prices(self) -> dict[str, int]:
        tokens = [t for _, t, _ in self.cfg.reserves]
        (raw,) = _ORACLE["getAssetsPrices"].decode_output(
            await self.rpc.eth_call(self.cfg.oracle, _ORACLE["getAssetsPrices"].encode_hex(tokens)))
        return {t: int(p) for t, p in zip(tokens, raw, strict=True)}

    async def liquidate(self, user: str, prices: dict[str, int]) -> None:
        """The largest collateral against the largest debt, by value, from our own balance."""
        best_coll: tuple[int, str] = (0, "")
        best_debt: tuple[int, str] = (0, "")
        fn = _PROVIDER["getUserReserveData"]
        for _, token, decimals in self.cfg.reserves:
            row = fn.decode_output(await self.rpc.eth_call(self.cfg.data_provider,
                                                           fn.encode_hex(token, user)))
            a_balance, stable_debt, variable_debt, as_collateral = row[0], row[1], row[2], row[8]
            unit_price = prices[token]
            if as_collateral and a_balance:
                best_coll = max(best_coll, (a_balance * unit_price // 10**decimals, token))
            if stable_debt + variable_debt:
                best_debt = max(best_debt, ((stable_debt + variable_debt) * unit_price // 10**decimals, token))
        if not best_coll[1] or not best_debt[1]:
            return
        data = _POOL["liquidationCall"].encode_hex(best_coll[1], best_debt[1], user, MAX_UINT, False)
        tx_hash = await self._send(self.cfg.pool, data, self.cfg.gas_limit)
        self.pending[user] = tx_hash
        self.emit("sent", user=user, tx_hash=tx_hash, collateral=best_coll[1], debt=best_debt[1])

    async def _send(self, to: str, data: str, gas: int) -> str:
        tip = int(self.cfg.tip_gwei * 10**9)
        tx = {"chainId": self.cfg.chain_id, "nonce": self.nonce, "to": to_checksum_address(to), "data": data,
              "gas": gas, "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * self.base_fee + tip,
              "value": 0, "type": 2}
        signed = self.account.sign_transaction(tx)
        self.nonce += 1
        return str(await self.rpc.call("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()]))

    async def _check_receipts(self) -> None:
        for user, tx_hash in list(self.pending.items()):
            receipt = await self.rpc.call("eth_getTransactionReceipt", [tx_hash])
            if receipt is None:
                continue
            del self.pending[user]
            self.emit("receipt", user=user, tx_hash=tx_hash, status=int(receipt["status"], 16),
                      block=int(receipt["blockNumber"], 16))


async def main(config_path: Path) -> None:
    cfg = NaiveConfig.load(config_path)
    loop = asyncio.get_running_loop()
    # Opened once before the loop starts; each event is one short line.
    with Path(cfg.events_path).open("a") as out:  # noqa: ASYNC230
        async with HttpRpc(cfg.rpc_url, timeout=30) as http:
            keeper = NaiveKeeper(cfg, CountingRpc(http), out)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, keeper.stop.set)
            await keeper.setup()
            await keeper.run()
            keeper.emit("stopped", calls=keeper.rpc.calls)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
