"""``keeper deploy-liquidator``: deploy our FlashLiquidator, owned by the configured key.

The creation transaction is estimated first (a revert is reported, nothing is sent), signed
locally, sent once, and its receipt awaited; the new address is printed for
``executor.liquidator``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from keeper.app import preflight
from keeper.app.config import KeeperConfig, load_config
from keeper.app.exec_settings import load_signer
from keeper.app.target import Target
from keeper.chain.pool import RpcPool
from keeper.chain.rpc import JsonRpc
from keeper.commands.target import resolve_target
from keeper.errors import ConfigError, KeeperError, RpcResponseError
from keeper.exec.keys import Signer
from keeper.protocols.aave_v3.liquidator import LiquidatorConfig, deploy_data


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("deploy-liquidator",
                       help="deploy the FlashLiquidator contract owned by the configured key")
    p.add_argument("-c", "--config", type=Path, help="TOML config (env KEEPER_* overrides it)")
    p.add_argument("--receipt-timeout", type=float, default=180.0)


async def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    target = resolve_target(cfg)
    signer = await load_signer(cfg)
    async with RpcPool(list(target.rpc_urls), timeout=cfg.network.request_timeout) as rpc:
        await preflight.check_chain_id(rpc, cfg.network.chain_id)
        address = await deploy(rpc, signer, cfg, target, receipt_timeout=args.receipt_timeout,
                               announce=True)
    print(f"FlashLiquidator deployed at {address} (owner {signer.address})")
    print(f"set executor.liquidator = \"{address}\" in your config")
    return 0


async def deploy(rpc: JsonRpc, signer: Signer, cfg: KeeperConfig, target: Target, *,
                 receipt_timeout: float, announce: bool = False) -> str:
    """Deploy a FlashLiquidator owned by ``signer`` for ``target``'s market and DEX: estimated
    first (a revert is one line, nothing sent), signed locally, sent once, receipt awaited.
    Returns its address (lower-case)."""
    if target.uniswap_v2_factory is None:
        raise ConfigError("dex.uniswap_v2_factory: the liquidator swaps on this factory's pairs")
    await preflight.require_code(rpc, target.addresses_provider,
                                 "aave.pool_addresses_provider", cfg.network.chain_id)
    config = LiquidatorConfig(target.addresses_provider, target.uniswap_v2_factory,
                              signer.address, target.pair_init_code_hash)
    if target.uniswap_v3_factory is not None:  # V3 hops and V3 flash loans on that factory
        config = dataclasses.replace(
            config, uniswap_v3_factory=target.uniswap_v3_factory,
            pool_init_code_hash=bytes.fromhex(
                cfg.dex.uniswap_v3_pool_init_code_hash.removeprefix("0x")))
    data = deploy_data(config)
    tx: dict[str, Any] = {"from": signer.address, "data": "0x" + data.hex()}
    try:
        gas_hex, nonce_hex, block = await asyncio.gather(
            rpc.call("eth_estimateGas", [tx]),
            rpc.call("eth_getTransactionCount", [signer.address, "pending"]),
            rpc.call("eth_getBlockByNumber", ["latest", False]))
    except RpcResponseError as exc:
        raise KeeperError(f"deployment would fail: {exc.rpc_message}") from None
    base_fee = int(block.get("baseFeePerGas", "0x0"), 16)
    tip = min(2 * 10**9, int(cfg.executor.max_priority_fee_gwei * 10**9))
    signed = signer.sign_transaction({
        "type": 2, "chainId": cfg.network.chain_id, "nonce": int(nonce_hex, 16),
        "gas": int(gas_hex, 16) * 6 // 5, "maxPriorityFeePerGas": tip,
        "maxFeePerGas": min(2 * base_fee + tip, int(cfg.executor.max_fee_gwei * 10**9)),
        "to": b"", "value": 0, "data": data,
    })
    await rpc.call("eth_sendRawTransaction", [signed.raw_hex])
    if announce:
        print(f"sent {signed.tx_hash}; waiting for the receipt…", flush=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + receipt_timeout
    while (receipt := await rpc.call("eth_getTransactionReceipt", [signed.tx_hash])) is None:
        if loop.time() > deadline:
            raise KeeperError(f"no receipt for {signed.tx_hash} after {receipt_timeout:g}s: "
                              "check it before deploying again")
        await asyncio.sleep(0.2)
    if int(receipt["status"], 16) != 1:
        raise KeeperError(f"deployment {signed.tx_hash} reverted")
    return str(receipt["contractAddress"]).lower()
