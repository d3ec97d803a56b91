"""Gas of a crash's liquidations sent together: our ``liquidateBatch`` against Aave's own floor.

How many liquidations a block can hold is what bounds clearing a crash in one or two blocks,
whoever sends them. On each Aave revision's devnet (this bench starts and stops its own node),
30 borrowers are made alike (WETH collateral, USDC debt) and made liquidatable by one price
move; three transactions of 10 liquidations each, each on borrowers of its own:

- ours: one ``FlashLiquidator.liquidateBatch`` of 10 orders that keep their collateral (the
  batches the daemon sends in a crash), each order in its own frame;
- Aave's floor: 10 bare ``Pool.liquidationCall``s in one transaction through Multicall3
  (impersonated on the devnet to hold USDC and approve the Pool), no contract of ours, no
  isolation, no check; once receiving the underlying collateral, once receiving aTokens (the
  cheapest way to call it).

One pair throughout, so every reserve is warm after the first liquidation of a transaction: a
crash's batches mix pairs and cost more (the 10,000-borrower race's ~226k a liquidation).
(Replaying one set of borrowers from an ``evm_snapshot`` was not used: bench_liquidator.py
saw anvil's ``evm_revert`` leave a liquidation in place now and then.)
"""

from __future__ import annotations

from pathlib import Path

from eth_abi import encode

from keeper.chain.multicall import AGGREGATE3_SELECTOR
from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet import lifecycle
from keeper.devnet.driver import Devnet
from keeper.domain.plan import LiquidationParams
from keeper.protocols.aave_v3.liquidator import encode_liquidate_batch

STATE_DIR = Path(__file__).resolve().parents[1] / "build" / "bench-devnet"
BATCH = 10  # orders a batch, as config/devnet.toml sends them
BLOCK_GAS = 60_000_000  # the races' block gas limit (Ethereum mainnet's)
GAS_LIMIT = 12_000_000
HALF = 7_500 * 10**6  # the close factor's half of 15,000 USDC, before interest

_ERC20 = artifacts.aave("MintableERC20").abi
_POOL = artifacts.aave("Pool").abi
_LIQUIDATION_CALL = _POOL.event("LiquidationCall").topic0


def _users(group: int) -> tuple[str, ...]:
    return tuple(f"0x{group:02x}{i:02x}" + "b2" * 18 for i in range(BATCH))


async def _setup(devnet: Devnet) -> None:
    """Liquidity, three groups of borrowers at HF 1.10 (0.99 after WETH to $1,800), Multicall3
    holding USDC with the Pool approved, our liquidator holding USDC."""
    m = devnet.m
    borrowers = [u for g in range(3) for u in _users(g)]
    await devnet.fund(borrowers)
    txs = [*devnet.users.deposit_txs(m.deployer, "USDC", 1_000_000 * 10**6)]
    for user in borrowers:  # 10 WETH, 15,000 USDC borrowed
        txs += [*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)]
    await devnet.send_many(txs)
    await devnet.rpc.call("anvil_impersonateAccount", [m.multicall3])
    await devnet.fund([m.multicall3])
    await devnet.send_many([devnet.users.tx_mint(m.multicall3, "USDC", 1_000_000 * 10**6),
                            devnet.users.tx_approve(m.multicall3, "USDC")])
    await devnet.tx.transact(m.reserve("USDC").address, _ERC20["mint(address,uint256)"],
                             m.liquidator, 1_000_000 * 10**6)
    await devnet.set_price("WETH", 1800 * 10**8)


def _multicall(pool: str, weth: str, usdc: str, users: tuple[str, ...],
               receive_a_token: bool) -> bytes:
    """``aggregate3`` of one ``liquidationCall`` a borrower, each required to succeed."""
    calls = [(pool, False, _POOL["liquidationCall"].encode(weth, usdc, user, HALF, receive_a_token))
             for user in users]
    return AGGREGATE3_SELECTOR + encode(["(address,bool,bytes)[]"], [calls])


async def _per_liquidation(devnet: Devnet, sender: str, to: str, data: bytes) -> int:
    """The transaction's gas over its liquidations, once the Pool logged all ``BATCH``."""
    receipt = await devnet.tx.send(to, data, sender=sender, gas=GAS_LIMIT)
    done = sum(1 for log in receipt["logs"] if log["address"].lower() == devnet.m.pool
               and log["topics"][0] == _LIQUIDATION_CALL)
    if done != BATCH:  # an order of ours undone alone would make the rest look cheaper
        raise RuntimeError(f"{done} of {BATCH} liquidations in {receipt['transactionHash']}")
    return int(receipt["gasUsed"], 16) // BATCH


async def _revision(aave: str) -> list[tuple[str, str, str]]:
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(STATE_DIR), aave=aave)
    try:
        async with HttpRpc(node.url, timeout=120) as rpc:
            devnet = Devnet(rpc, manifest)
            await _setup(devnet)
            m = manifest
            weth, usdc = (m.reserve(s).address for s in ("WETH", "USDC"))
            orders = [LiquidationParams(weth, usdc, user, HALF, flash_loan=False,
                                        keep_collateral=True) for user in _users(0)]
            ours = await _per_liquidation(devnet, m.keeper, m.liquidator,
                                          encode_liquidate_batch(orders))
            underlying = await _per_liquidation(devnet, m.deployer, m.multicall3,
                                                _multicall(m.pool, weth, usdc, _users(1), False))
            a_tokens = await _per_liquidation(devnet, m.deployer, m.multicall3,
                                              _multicall(m.pool, weth, usdc, _users(2), True))
    finally:
        await node.stop()
    held = BLOCK_GAS // a_tokens
    return [
        (f"v{aave}: liquidateBatch of {BATCH} kept, gas a liquidation", f"{ours:,}",
         "ours, as sent in a crash (one pair)"),
        (f"v{aave}: {BATCH} Pool.liquidationCall in one tx, gas a liquidation", f"{underlying:,}",
         f"Aave's floor, through Multicall3: ours costs {ours - underlying:,} more"),
        (f"v{aave}: the same, receiveAToken", f"{a_tokens:,}", "the cheapest call of Aave's"),
        (f"v{aave}: liquidations a {BLOCK_GAS / 1e6:g}M-gas block holds at that floor",
         f"{held:,}", f"two blocks: {2 * held:,}, whoever sends them"),
    ]


async def run() -> list[tuple[str, str, str]]:
    """Rows of (what, gas or count, note), Aave v3.0's then v3.6's."""
    return [*await _revision("3.0"), *await _revision("3.6")]
