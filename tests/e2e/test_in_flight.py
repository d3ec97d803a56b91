"""An in-flight liquidation is re-checked on every block: one that would now revert (the
account was repaid meanwhile) is cancelled with its nonce instead of being mined as a revert."""

from __future__ import annotations

import asyncio
from pathlib import Path

from keeper.devnet.driver import Devnet
from keeper.devnet.users import Tx
from keeper.exec.tx import Status
from tests.e2e.test_run_once import (
    _keeper_pending,
    _two_liquidatable_in_one_block,
    assert_keeper_never_reverted,
    block_number,
    liquidated_users,
    run_keeper,
)


async def test_in_flight_liquidation_of_a_repaid_account_is_cancelled(
        devnet: Devnet, tmp_path: Path) -> None:
    pair, _ = await _two_liquidatable_in_one_block(devnet)
    before = await block_number(devnet)
    await devnet.rpc.call("anvil_setAutomine", [False])
    try:
        task = asyncio.create_task(run_keeper(devnet, tmp_path, dry_run=False))
        victim: str | None = None
        for _ in range(400):
            if pending := await _keeper_pending(devnet):
                # Our first liquidation waits in the mempool; it is lost there, and before the
                # next block its borrower repays everything (so liquidating would revert).
                tx = pending[0]
                await devnet.rpc.call("anvil_dropTransaction", [tx["hash"]])
                victim = next(u for u in pair if u[2:] in tx["input"])
                break
            await asyncio.sleep(0.025)
        assert victim is not None, "the keeper sent nothing"
        debt = "USDC" if victim == pair[0] else "DAI"
        # All in the next block, ahead of anything else in it: the keeper sees no head before
        # the account is repaid (a lost transaction is handed out again at the next head).
        await _in_one_block(devnet, [devnet.users.tx_mint(victim, debt, 100_000 * 10**18),
                                     devnet.users.tx_approve(victim, debt),
                                     devnet.users.tx_repay(victim, debt, 2**256 - 1)])
        while not task.done():
            await devnet.rpc.call("evm_mine")
            await asyncio.sleep(0.1)
        run = task.result()
    finally:
        await devnet.rpc.call("anvil_setAutomine", [True])

    outcome = next(r.outcome for r in run.results if r.user == victim and r.outcome is not None)
    assert outcome.status is Status.CANCELLED, outcome
    assert any("no_longer_valid" in str(line.get("event", "")) for line in run.logs), run.raw_logs[-2000:]
    # The other account was still liquidated, once; nothing the keeper sent reverted.
    others = await liquidated_users(devnet, before)
    assert victim not in others and others[next(u for u in pair if u != victim)] == 1
    await assert_keeper_never_reverted(devnet, before)


async def _in_one_block(devnet: Devnet, txs: list[Tx]) -> None:
    """Mine ``txs`` in one block, in their order (falling tips), and check each succeeded."""
    rpc = devnet.rpc
    nonce = {t.sender: int(await rpc.call("eth_getTransactionCount", [t.sender, "pending"]), 16)
             for t in txs}
    hashes = []
    for i, t in enumerate(txs):
        tip = (300 - 100 * i) * 10**9
        hashes.append(await rpc.call("eth_sendTransaction", [{
            "from": t.sender, "to": t.to, "data": "0x" + t.data.hex(), "gas": hex(t.gas),
            "nonce": hex(nonce[t.sender]), "maxFeePerGas": hex(1_000 * 10**9),
            "maxPriorityFeePerGas": hex(tip)}]))
        nonce[t.sender] += 1
    await rpc.call("evm_mine")
    for h in hashes:
        receipt = await rpc.call("eth_getTransactionReceipt", [h])
        assert receipt is not None and int(receipt["status"], 16) == 1, receipt
