"""The race's world: a seeded Aave V3 devnet (cached), a node started from it, and a crash in
one block.

Seeding thousands of borrowers takes minutes, so the seeded chain is dumped once per
(deploy, scenario code, size, seed) into ``build/bench-race/`` and every later run starts a
fresh anvil from that file. The crash is one block that holds the oracle updates *and* the
arbitrage that brings the Uniswap pools to the new prices (as arbitrageurs back-run an oracle
update on mainnet), so both keepers see a consistent market from the crash block on.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet import lifecycle
from keeper.devnet import scenario as scenario_module
from keeper.devnet.anvil import Anvil, AnvilOptions
from keeper.devnet.driver import Devnet
from keeper.devnet.manifest import Manifest
from keeper.devnet.reads import raw_pair_reserves
from keeper.devnet.scenario import plan_population, seed_population
from keeper.devnet.users import MAX_UINT
from keeper.errors import DevnetError, RpcResponseError

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench-race"
AAVE = "3.0"  # v3.6's deploy starts a liquidation grace period, which would gate the race
_FEED = artifacts.ours("PriceFeed").abi
_ERC20 = artifacts.aave("MintableERC20").abi
_ROUTER = artifacts.uniswap("UniswapV2Router02").abi


@dataclass(frozen=True, slots=True)
class SeededWorld:
    state: Path
    manifest: Manifest
    borrowers: tuple[str, ...]
    debt_by_symbol: dict[str, int]  # every borrower's debt, summed: what the naive keeper holds


async def seeded_world(borrowers: int, seed: int) -> SeededWorld:
    """The seeded chain for ``borrowers`` borrowers, from the cache or seeded now (minutes)."""
    stem = _cache_stem(borrowers, seed)
    state, meta = stem.with_suffix(".state.json"), stem.with_suffix(".meta.json")
    if not (state.exists() and meta.exists()):
        await _seed(borrowers, seed, state, meta)
    raw = json.loads(meta.read_text())
    manifest_path = stem.with_suffix(".manifest.json")
    manifest_path.write_text(json.dumps(raw["manifest"]))
    return SeededWorld(state, Manifest.load(manifest_path), tuple(raw["borrowers"]),
                       {k: int(v) for k, v in raw["debt"].items()})


def _cache_stem(borrowers: int, seed: int) -> Path:
    """Keyed by every deploy input, the scenario's code, the size and the seed."""
    h = hashlib.sha256(lifecycle.deploy_key(AAVE).encode())
    h.update(Path(scenario_module.__file__).read_bytes())
    h.update(f"{borrowers}:{seed}".encode())
    return CACHE / f"seeded-{borrowers}-{seed}-{h.hexdigest()[:12]}"


async def _seed(borrowers: int, seed: int, state: Path, meta: Path) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(ROOT / "build" / "bench-devnet"),
                                              aave=AAVE)
    try:
        async with HttpRpc(node.url, timeout=300) as rpc:
            devnet = Devnet(rpc, manifest)
            plans = plan_population(seed, borrowers, manifest, await devnet.prices())
            await seed_population(devnet, plans)
            dump = await rpc.call("anvil_dumpState", timeout=600)
    finally:
        await node.stop()
    _save(state, meta, dump, manifest, plans)


def _save(state: Path, meta: Path, dump: str, manifest: Manifest,
          plans: list[scenario_module.BorrowerPlan]) -> None:
    debt: dict[str, int] = {}
    for p in plans:
        for sym, amount in p.borrows:
            debt[sym] = debt.get(sym, 0) + amount
    tmp = state.with_suffix(".tmp")
    tmp.write_bytes(gzip.decompress(bytes.fromhex(dump[2:])))
    tmp.replace(state)
    meta.write_text(json.dumps({"manifest": json.loads(_manifest_json(manifest)),
                                "borrowers": [p.address.lower() for p in plans],
                                "debt": {k: str(v) for k, v in debt.items()}}))


def _manifest_json(manifest: Manifest) -> str:
    path = CACHE / "manifest.tmp.json"
    manifest.save(path)
    text = path.read_text()
    path.unlink()
    return text


async def start_node(world: SeededWorld, *, gas_limit: int | None = None) -> tuple[Anvil, Manifest]:
    """A fresh anvil on the seeded chain, with the devnet's node settings and fresh blocks."""
    # Loading a seeded 10,000-borrower chain (0.6 GB of JSON) takes anvil a while.
    node = await Anvil.start(AnvilOptions(load_state=world.state, gas_limit=gas_limit),
                             ready_timeout=300)
    try:
        async with HttpRpc(node.url, timeout=60) as rpc:
            await rpc.call("anvil_autoImpersonateAccount", [True])
            if gas_limit is not None:
                # A loaded state keeps the gas limit it was dumped with, whatever the flag says.
                await rpc.call("evm_setBlockGasLimit", [hex(gas_limit)])
            await rpc.call("anvil_setBlockTimestampInterval", [1])
            # Seeding ran the chain's clock ahead of the wall clock: keep time monotonic
            # (anvil refuses when its own clock is already past that stamp, which is as good).
            latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
            with contextlib.suppress(RpcResponseError):
                await rpc.call("evm_setNextBlockTimestamp", [hex(int(latest["timestamp"], 16) + 1)])
            # A loaded node has no state for its old blocks: a reorg window of fresh ones.
            await rpc.call("anvil_mine", [hex(lifecycle.RECENT_BLOCKS)])
    except BaseException:
        await node.stop()
        raise
    return node, world.manifest.with_urls(node.url, node.ws_url)


@dataclass(frozen=True, slots=True)
class CrashBlock:
    number: int
    wall_time: float  # time.time() when the node answered evm_mine
    prices: dict[str, int]


async def crash_in_one_block(devnet: Devnet, moves: Mapping[str, float],
                             interval: int) -> CrashBlock:
    """Pause interval mining, queue the oracle updates and the arbitrage, mine them as one
    block, resume mining every ``interval`` seconds."""
    m = devnet.m
    prices = await devnet.prices()
    new = dict(prices)
    for r in m.reserves:
        base = next((b for b in m.reserves if b.aggregator == r.aggregator
                     and b.feed_kind == "chainlink"), None)
        if base is not None and base.symbol in moves:
            new[r.symbol] = int(prices[r.symbol] * moves[base.symbol])
    txs: list[tuple[str, bytes, int]] = [
        (m.reserve(sym).aggregator, _FEED["updateAnswer"].encode(new[sym]), 150_000) for sym in moves]
    moved = {s for s in new if new[s] != prices[s]}
    for key, pair in m.pairs.items():
        a, b = key.split("/")
        if a in moved or b in moved:
            txs += await _arbitrage_txs(devnet, pair, a, b, new)
    rpc = devnet.rpc
    await rpc.call("evm_setIntervalMining", [0])
    nonce = int(await rpc.call("eth_getTransactionCount", [m.deployer, "pending"]), 16)
    hashes = []
    for i, (to, data, gas) in enumerate(txs):
        hashes.append(await rpc.call("eth_sendTransaction", [{
            "from": m.deployer, "to": to, "data": "0x" + data.hex(), "gas": hex(gas),
            "nonce": hex(nonce + i), "maxFeePerGas": hex(2000 * 10**9),
            "maxPriorityFeePerGas": hex(10**9)}]))
    await rpc.call("evm_mine")
    wall = time.time()
    await rpc.call("evm_setIntervalMining", [interval])
    receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    blocks = {int(r["blockNumber"], 16) for r in receipts if r is not None}
    if len(blocks) != 1 or any(r is None or int(r["status"], 16) != 1 for r in receipts):
        raise DevnetError(f"the crash did not land in one block: {_summary(receipts)}")
    return CrashBlock(blocks.pop(), wall, new)


def _summary(receipts: list[Any]) -> list[tuple[Any, Any]]:
    return [(r and r["blockNumber"], r and r["status"]) for r in receipts]


async def _arbitrage_txs(devnet: Devnet, pair: str, a: str, b: str,
                         prices: Mapping[str, int]) -> list[tuple[str, bytes, int]]:
    """Mint, approve and swap so the pool ends at the new oracle ratio (the router computes
    the output on chain, within the 0.3% fee)."""
    m = devnet.m
    token0, r0, r1 = await raw_pair_reserves(devnet.tx, pair)
    ra, rb = m.reserve(a), m.reserve(b)
    s0, s1 = (ra, rb) if token0 == ra.address else (rb, ra)
    k = r0 * r1
    target0 = math.isqrt(k * prices[s1.symbol] * 10**s0.decimals
                         // (prices[s0.symbol] * 10**s1.decimals))
    if target0 == 0 or abs(target0 - r0) * 10_000 < r0 * 5:
        return []
    if target0 > r0:
        token_in, token_out, amount = s0.address, s1.address, (target0 - r0) * 1000 // 997
    else:
        token_in, token_out, amount = s1.address, s0.address, (k // target0 - r1) * 1000 // 997
    return [
        (token_in, _ERC20["mint(address,uint256)"].encode(m.deployer, amount), 150_000),
        (token_in, _ERC20["approve"].encode(m.uniswap_router, MAX_UINT), 100_000),
        (m.uniswap_router, _ROUTER["swapExactTokensForTokens"].encode(
            amount, 0, [token_in, token_out], m.deployer, 2**255), 300_000),
    ]
