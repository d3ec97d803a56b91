"""Backrunning a pending oracle update: the daemon liquidates in the SAME block as the price
move, right after it (``executor.backrun_oracle_updates``).

The daemon runs in-process on the test's devnet. With automine off, the deployer's price
update waits in the mempool; the keeper sees it there, and the test mines one block and reads
that block: the update first, our liquidation after it, succeeding, and paying the owner.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from keeper.app import daemon
from keeper.app import root as app
from keeper.app.config import load_config
from keeper.commands.target import resolve_target
from keeper.contracts import artifacts
from keeper.devnet.anvil import free_port
from keeper.devnet.driver import Devnet
from keeper.obs.logging import configure_logging
from tests.e2e.test_run_once import (
    CONFIG,
    PRICE_UNIT,
    block_number,
    keeper_env,
    liquidated_users,
    open_positions,
    provide_liquidity,
    user,
)

pytestmark = pytest.mark.integration

_FEED = artifacts.ours("PriceFeed").abi
_ERC20 = artifacts.aave("MintableERC20").abi
_LIQUIDATION_CALL = artifacts.aave("Pool").abi.event("LiquidationCall").topic0
WETH_COLLATERAL = 10  # WETH
BORROWED_SHARE = 0.799  # of the collateral value: HF ≈ 1.03 at WETH's threshold


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running_daemon(devnet: Devnet, tmp_path: Path) -> AsyncIterator[io.StringIO]:
    """The daemon with backrunning on, until the block ends; yields its log stream once it
    watches the mempool and has scanned the head."""
    env = keeper_env(devnet, tmp_path) | {
        "KEEPER_EXECUTOR__BACKRUN_ORACLE_UPDATES": "true",
        "KEEPER_METRICS__PORT": str(free_port()),
    }
    cfg = load_config(CONFIG, env)
    stream = io.StringIO()
    handle = configure_logging("DEBUG", stream=stream)
    try:
        async with app.build(cfg, resolve_target(cfg), dry_run=False) as keeper:
            d = daemon.Daemon(keeper)
            task = asyncio.create_task(d.run())
            try:
                head = await block_number(devnet)

                async def ready() -> bool:
                    if task.done():
                        task.result()
                    return ("watching_mempool" in stream.getvalue()
                            and d.scanned_block is not None and d.scanned_block >= head)

                await until("the daemon to scan the head and watch the mempool", ready)
                yield stream
            finally:
                d.stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        handle.stop()


async def open_position(devnet: Devnet) -> str:
    """One account at HF ≈ 1.03: 10 WETH of collateral, USDC borrowed at 79.9% of its value."""
    await provide_liquidity(devnet)
    await devnet.rpc.call("anvil_setBlockTimestampInterval", [1])
    weth = (await devnet.prices())["WETH"] * WETH_COLLATERAL / PRICE_UNIT
    borrower = user(1)
    await open_positions(devnet, [(borrower, "WETH", weth, "USDC", weth * BORROWED_SHARE)])
    (data,) = await devnet.account_data([borrower])
    assert 1.02e18 < data.health_factor < 1.04e18, data
    return borrower


async def send_pending_price(devnet: Devnet, factor: float) -> str:
    """The deployer's WETH price update, left pending (automine must be off)."""
    weth = devnet.m.reserve("WETH")
    price = (await devnet.prices())["WETH"]
    data = _FEED["updateAnswer"].encode_hex(int(price * factor))
    return str(await devnet.rpc.call("eth_sendTransaction", [
        {"from": devnet.m.deployer, "to": weth.aggregator, "data": data}]))


async def keeper_pending(devnet: Devnet) -> list[dict[str, Any]]:
    content = await devnet.rpc.call("txpool_content")
    keeper = devnet.m.keeper.lower()
    return [tx for sender, txs in content.get("pending", {}).items() if sender.lower() == keeper
            for tx in txs.values()]


async def usdc_balance(devnet: Devnet, who: str, block: int) -> int:
    usdc = devnet.m.reserve("USDC").address
    raw = await devnet.rpc.call("eth_call", [
        {"to": usdc, "data": _ERC20["balanceOf"].encode_hex(who)}, hex(block)])
    return int(raw, 16)


async def test_pending_price_drop_is_backrun_in_the_same_block(
        devnet: Devnet, tmp_path: Path) -> None:
    borrower = await open_position(devnet)
    async with running_daemon(devnet, tmp_path) as logs:
        before = await block_number(devnet)
        await devnet.rpc.call("anvil_setAutomine", [False])
        try:
            oracle_tx = await send_pending_price(devnet, 0.95)

            async def sent() -> bool:
                return bool(await keeper_pending(devnet))

            await until("the keeper's backrun in the mempool", sent, timeout=10)
            (ours,) = await keeper_pending(devnet)
            await devnet.rpc.call("evm_mine")
        finally:
            await devnet.rpc.call("anvil_setAutomine", [True])
        block = await devnet.rpc.call("eth_getBlockByNumber", [hex(before + 1), True])
        hashes = [str(tx["hash"]).lower() for tx in block["transactions"]]
        assert oracle_tx.lower() in hashes and ours["hash"].lower() in hashes, hashes
        assert hashes.index(ours["hash"].lower()) > hashes.index(oracle_tx.lower())
        assert int(ours["maxPriorityFeePerGas"], 16) == int(
            block["transactions"][hashes.index(oracle_tx.lower())]["maxPriorityFeePerGas"], 16)
        receipt = await devnet.rpc.call("eth_getTransactionReceipt", [ours["hash"]])
        assert int(receipt["status"], 16) == 1
        assert any(log["topics"][0] == _LIQUIDATION_CALL
                   and log["topics"][3][-40:] == borrower[2:].lower() for log in receipt["logs"])
        owner = devnet.m.keeper
        assert await usdc_balance(devnet, owner, before + 1) > await usdc_balance(
            devnet, owner, before)

        # The regular path sees the account after that block and leaves it alone.
        async def settled() -> bool:
            # The daemon's own event; spaces or snake_case, whichever its log convention is.
            return "liquidated_by_backrun" in logs.getvalue()

        await until("the daemon to account for the backrun", settled)
        await devnet.mine(3)
        await asyncio.sleep(0.5)
    assert (await liquidated_users(devnet, before))[borrower] == 1
    events = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("level") == "error"], events[-5:]


async def test_pending_update_that_liquidates_nobody_sends_nothing(
        devnet: Devnet, tmp_path: Path) -> None:
    await open_position(devnet)
    async with running_daemon(devnet, tmp_path) as logs:
        before = await block_number(devnet)
        await devnet.rpc.call("anvil_setAutomine", [False])
        try:
            await send_pending_price(devnet, 0.99)

            async def judged() -> bool:
                return "liquidates_nobody" in logs.getvalue()

            await until("the keeper to judge the pending update", judged, timeout=10)
            assert not await keeper_pending(devnet)
            await devnet.rpc.call("evm_mine")
        finally:
            await devnet.rpc.call("anvil_setAutomine", [True])
        block = await devnet.rpc.call("eth_getBlockByNumber", [hex(before + 1), True])
        assert [str(tx["from"]).lower() for tx in block["transactions"]] == [
            devnet.m.deployer.lower()]
    assert not await liquidated_users(devnet, before)
