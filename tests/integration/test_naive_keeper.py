"""The race's baseline works: the naive keeper liquidates an account under water on the devnet,
from its own balance, as the liquidator of record."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from bench.naive_keeper import CountingRpc, NaiveKeeper, config_for, naive_address
from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet

pytestmark = pytest.mark.integration

_LIQUIDATION_CALL = artifacts.aave("Pool").abi.event("LiquidationCall")


async def test_naive_keeper_liquidates_an_underwater_account(devnet: Devnet, tmp_path: Path) -> None:
    m = devnet.m
    naive = naive_address()
    user = "0x" + "be" * 20
    await devnet.fund([user, naive])
    prices = await devnet.prices()
    # 10 WETH against USDC close to the 80% LTV, then WETH -10%: health factor below 1.
    debt = int(10 * prices["WETH"] // 10**8 * 0.799) * 10**6
    await devnet.send_many(devnet.users.deposit_txs(m.deployer, "USDC", 10_000_000 * 10**6))
    await devnet.send_many([*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                            devnet.users.tx_borrow(user, "USDC", debt),
                            devnet.users.tx_mint(naive, "USDC", debt)])
    await devnet.set_price("WETH", prices["WETH"] * 90 // 100)
    start = int(await devnet.rpc.call("eth_blockNumber"), 16)

    events = tmp_path / "naive.jsonl"
    cfg = config_for(m, [user, "0x" + "11" * 20], events)
    with events.open("a") as out:
        keeper = NaiveKeeper(cfg, CountingRpc(devnet.rpc), out)
        await keeper.setup()
        task = asyncio.create_task(keeper.run())
        try:
            async with asyncio.timeout(20):
                while True:
                    logs = await devnet.rpc.call("eth_getLogs", [{
                        "address": m.pool, "fromBlock": hex(start), "toBlock": "latest",
                        "topics": [_LIQUIDATION_CALL.topic0]}])
                    if logs:
                        break
                    await asyncio.sleep(0.1)
        finally:
            keeper.stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    (log,) = logs
    fields = _LIQUIDATION_CALL.decode(log["topics"], log["data"])
    assert str(fields["user"]).lower() == user
    assert str(fields["liquidator"]).lower() == naive
    assert str(fields["collateralAsset"]).lower() == m.reserve("WETH").address
    assert str(fields["debtAsset"]).lower() == m.reserve("USDC").address
    # From its own balance: the repaid USDC left the naive keeper, the WETH came to it.
    assert await devnet.balance_of("USDC", naive) == debt - int(fields["debtToCover"])
    assert await devnet.balance_of("WETH", naive) == int(fields["liquidatedCollateralAmount"])
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["user"] for e in lines if e["event"] == "detected"] == [user]
    assert any(e["event"] == "receipt" and e["status"] == 1 for e in lines)
    assert keeper.rpc.calls > 0
