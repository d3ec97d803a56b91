"""A rehearsal on a throwaway fork needs nothing of ours deployed on the real chain.

When ``keeper run --fork-url`` has no ``executor.liquidator`` configured, the keeper makes a
throwaway key, funds it on the fork (``anvil_setBalance``), deploys its own FlashLiquidator
there, and runs with that key as the owner. The key exists only in this process and only on
the fork; it is never written anywhere and signs nothing for the real chain.
"""

from __future__ import annotations

import dataclasses
import secrets

from pydantic import SecretStr

from keeper.app.config import KeeperConfig
from keeper.app.target import Target
from keeper.chain.rpc import HttpRpc
from keeper.commands.deploy_liquidator import deploy
from keeper.exec.keys import Signer
from keeper.obs.logging import get_logger

log = get_logger(__name__)

FORK_FUNDS_WEI = 100 * 10**18
"""Ether given to the throwaway key on the fork: the deployment and a crash's worth of gas."""


async def own_liquidator(cfg: KeeperConfig, target: Target, fork_url: str) -> Target:
    """``target`` with a liquidator of ours deployed on the fork at ``fork_url`` and the
    throwaway key that owns it (``Target.fork_key``)."""
    key = SecretStr("0x" + secrets.token_bytes(32).hex())
    chain_id = cfg.network.chain_id
    signer = Signer.from_private_key(key, chain_id, devnet_chain_ids=frozenset({chain_id}))
    async with HttpRpc(fork_url, timeout=cfg.network.request_timeout) as rpc:
        await rpc.call("anvil_setBalance", [signer.address, hex(FORK_FUNDS_WEI)])
        liquidator = await deploy(rpc, signer, cfg, target, receipt_timeout=60.0)
    log.info("fork_liquidator_deployed", liquidator=liquidator, owner=signer.address)
    return dataclasses.replace(target, liquidator=liquidator, fork_key=key)
