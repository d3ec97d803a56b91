"""Gas of each FlashLiquidator path, on a devnet this bench starts and stops itself.

Every path liquidates its own borrower, all made alike and liquidatable by one price move
(WETH collateral / USDC debt, or USDC / USDC), so the numbers compare; a bare
``Pool.liquidationCall`` from an account that holds the debt asset is the baseline. (Replaying
one borrower from an ``evm_snapshot`` was tried: anvil's ``evm_revert`` answered true but left
the liquidation in place now and then.) The Uniswap V3 rows trade on V3 pools the bench adds from
npm ``@uniswap/v3-core`` with the tests' fixture (tests/contract_fixtures/uniswap_v3.py).
"""

from __future__ import annotations

from pathlib import Path

from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet import lifecycle
from keeper.devnet.driver import Devnet
from keeper.domain.plan import LiquidationParams, V3FlashPool
from keeper.domain.swap_route import SwapHop, SwapLeg, Venue
from keeper.protocols.aave_v3.liquidator import (
    LiquidatorConfig,
    deploy_liquidator,
    encode_liquidate,
)
from keeper.protocols.uniswap_v2.pair import pair_address
from tests.contract_fixtures.uniswap_v3 import UniswapV3, deploy_uniswap_v3, raw_price

STATE_DIR = Path(__file__).resolve().parents[1] / "build" / "bench-devnet"
GAS_LIMIT = 3_000_000
WETH_USERS = tuple(f"0x{i:02x}" + "b0" * 19 for i in range(7))
USDC_USERS = tuple(f"0x{i:02x}" + "b1" * 19 for i in range(2))

_ERC20 = artifacts.aave("MintableERC20").abi
_POOL = artifacts.aave("Pool").abi


async def _v3_pools(devnet: Devnet) -> UniswapV3:
    """WETH/USDC (0.05%) to swap in and USDC/DAI (0.01%) to flash-borrow USDC from."""
    v3 = await deploy_uniswap_v3(devnet)
    prices = await devnet.prices()
    dec = {sym: devnet.m.reserve(sym).decimals for sym in ("WETH", "USDC", "DAI")}
    weth, usdc, dai = (devnet.m.reserve(s).address for s in ("WETH", "USDC", "DAI"))
    await v3.create_pool(weth, usdc, 500, raw_price(prices, dec, "WETH", "USDC"), 10**17)
    await v3.create_pool(dai, usdc, 100, raw_price(prices, dec, "DAI", "USDC"), 10**18)
    return v3


async def _setup(devnet: Devnet) -> tuple[str, UniswapV3]:
    m = devnet.m
    await devnet.fund([*WETH_USERS, *USDC_USERS])
    txs = [*devnet.users.deposit_txs(m.deployer, "USDC", 1_000_000 * 10**6),
           *devnet.users.deposit_txs(m.deployer, "WETH", 1_000 * 10**18),
           # The baseline liquidator (the keeper account itself) holds USDC, approved the Pool.
           devnet.users.tx_mint(m.keeper, "USDC", 100_000 * 10**6),
           devnet.users.tx_approve(m.keeper, "USDC")]
    for user in WETH_USERS:  # 10 WETH, 15,000 USDC borrowed: HF 1.10, 0.99 at $1,800
        txs += [*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)]
    for user in USDC_USERS:  # 10 WETH + 10,000 USDC, 23,000 USDC borrowed
        txs += [*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                *devnet.users.deposit_txs(user, "USDC", 10_000 * 10**6),
                devnet.users.tx_borrow(user, "USDC", 23_000 * 10**6)]
    await devnet.send_many(txs)
    await devnet.set_price("WETH", 1800 * 10**8)
    await devnet.arbitrage(["WETH"])
    v3 = await _v3_pools(devnet)
    liquidator = await deploy_liquidator(devnet.tx, LiquidatorConfig(
        addresses_provider=m.pool_addresses_provider, uniswap_v2_factory=m.uniswap_factory,
        owner=m.keeper, uniswap_v3_factory=v3.factory))
    # Own funds for the own-balance paths (the flash-loan paths do not touch them).
    await devnet.tx.transact(m.reserve("USDC").address, _ERC20["mint(address,uint256)"],
                             liquidator, 100_000 * 10**6)
    return liquidator, v3


async def _gas(devnet: Devnet, to: str, data: bytes) -> int:
    receipt = await devnet.tx.send(to, data, sender=devnet.m.keeper, gas=GAS_LIMIT)
    return int(receipt["gasUsed"], 16)


async def run() -> list[tuple[str, str, str]]:
    """Rows of (path, gas used, note)."""
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(STATE_DIR), aave="3.0")
    try:
        async with HttpRpc(node.url, timeout=120) as rpc:
            devnet = Devnet(rpc, manifest)
            liquidator, v3 = await _setup(devnet)
            weth, usdc, dai = (manifest.reserve(s).address for s in ("WETH", "USDC", "DAI"))
            v3_hop = SwapHop(Venue.UNISWAP_V3, v3.pool(weth, usdc, 500), weth, usdc, 500)
            v2_hop = SwapHop(Venue.UNISWAP_V2, pair_address(manifest.uniswap_factory, weth, usdc),
                             weth, usdc)
            v3_leg = (SwapLeg((v3_hop,)),)
            split = (SwapLeg((v2_hop,), 2 * 10**18), SwapLeg((v3_hop,)))
            lender = V3FlashPool(v3.pool(dai, usdc, 100), dai, 100)
            half = 7_500 * 10**6  # the close factor's half of 15,000 USDC, before interest
            cases: list[tuple[str, str, bytes, str]] = [
                ("Pool.liquidationCall from an EOA (baseline)", manifest.pool,
                 _POOL["liquidationCall"].encode(weth, usdc, WETH_USERS[0], half, False),
                 "no swap, needs capital"),
                ("flash loan + swap (1 hop)", liquidator, encode_liquidate(LiquidationParams(
                    weth, usdc, WETH_USERS[1], half, (weth, usdc))), "WETH→USDC"),
                ("flash loan + swap (2 hops)", liquidator, encode_liquidate(LiquidationParams(
                    weth, usdc, WETH_USERS[2], half, (weth, dai, usdc))), "WETH→DAI→USDC"),
                ("own balance + swap (1 hop)", liquidator, encode_liquidate(LiquidationParams(
                    weth, usdc, WETH_USERS[3], half, (weth, usdc), flash_loan=False)),
                 "WETH→USDC"),
                ("flash loan + V3 swap (1 hop)", liquidator, encode_liquidate(LiquidationParams(
                    weth, usdc, WETH_USERS[4], half, swap_legs=v3_leg)), "WETH→USDC on V3 0.05%"),
                ("flash loan + V2/V3 split", liquidator, encode_liquidate(LiquidationParams(
                    weth, usdc, WETH_USERS[5], half, swap_legs=split)),
                 "2 WETH on V2, the rest on V3"),
                ("V3 flash + V3 swap (1 hop)", liquidator, encode_liquidate(LiquidationParams(
                    weth, usdc, WETH_USERS[6], half, swap_legs=v3_leg, flash_pool=lender)),
                 "USDC from V3 USDC/DAI 0.01%"),
                ("flash loan, same asset", liquidator, encode_liquidate(LiquidationParams(
                    usdc, usdc, USDC_USERS[0], 9_000 * 10**6)), "USDC/USDC, no swap"),
                ("own balance, same asset", liquidator, encode_liquidate(LiquidationParams(
                    usdc, usdc, USDC_USERS[1], 9_000 * 10**6, flash_loan=False)),
                 "USDC/USDC, no swap"),
            ]
            rows: list[tuple[str, str, str]] = []
            for label, to, data, note in cases:
                gas = await _gas(devnet, to, data)
                rows.append((f"liquidator gas: {label}", f"{gas:,}", note))
            return rows
    finally:
        await node.stop()
