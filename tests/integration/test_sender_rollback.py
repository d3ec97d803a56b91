"""The executor after the chain went back, against a real anvil: a reorg that drops a mined
transaction, and a node restored from an older state under a transaction in flight. Either way
the next transaction takes the chain's nonce and nothing waits behind a nonce gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from keeper.exec.tx import Status
from tests.integration.test_sender import KEEPER, drive, make_sender, transfer, tx_count

pytestmark = pytest.mark.integration


@pytest.fixture
async def rpc(anvil: Anvil) -> AsyncIterator[HttpRpc]:
    async with HttpRpc(anvil.url, timeout=10) as client:
        yield client


async def queued(rpc: HttpRpc) -> list[int]:
    """Nonces of our transactions that the node holds behind a gap."""
    content = await rpc.call("txpool_content")
    return sorted(int(n) for sender, txs in (content.get("queued") or {}).items()
                  if sender.lower() == KEEPER for n in txs)


async def test_after_a_reorg_drops_a_mined_tx_the_next_send_takes_its_nonce(
    rpc: HttpRpc,
) -> None:
    sender = make_sender(rpc)
    start = await tx_count(rpc)
    first = await sender.execute(transfer("dropped"))
    assert first.status is Status.MINED and first.nonce == start
    await rpc.call("anvil_reorg", [1, []])
    assert await tx_count(rpc) == start  # gone, and not back in the mempool
    sender.rolled_back()  # what the daemon does when the sync reports the rollback
    again = await sender.execute(transfer("sent again"))
    assert again.status is Status.MINED and again.nonce == start
    assert await tx_count(rpc) == await tx_count(rpc, "pending") == start + 1
    assert await queued(rpc) == []


async def test_a_counter_ahead_of_the_chain_is_caught_before_the_send(rpc: HttpRpc) -> None:
    # The rollback is not reported yet (the sync is behind): the send still takes the
    # chain's nonce, read alongside the simulation.
    sender = make_sender(rpc)
    start = await tx_count(rpc)
    await sender.execute(transfer("dropped"))
    await rpc.call("anvil_reorg", [1, []])
    again = await sender.execute(transfer("sent again"))
    assert again.status is Status.MINED and again.nonce == start
    assert await queued(rpc) == []


async def test_a_restore_under_a_tx_in_flight_gives_it_up_and_frees_the_nonce(
    rpc: HttpRpc,
) -> None:
    sender = make_sender(rpc, confirmations=4)
    start = await tx_count(rpc)
    snapshot = await rpc.call("evm_snapshot")
    fast = make_sender(rpc)  # the same account: its next nonce is read from the chain
    for i in range(2):
        assert (await fast.execute(transfer(f"mined {i}"))).status is Status.MINED
    task = asyncio.create_task(sender.execute(transfer("in flight")))
    async with asyncio.timeout(10):
        while True:
            if await tx_count(rpc) >= start + 3:  # automine: mined, waiting to be buried
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # let the sender see its receipt
    assert await rpc.call("evm_revert", [snapshot])  # the node goes back: nonce ``start``

    async def step(_: int) -> None:
        await rpc.call("evm_mine")

    outcome = await drive(task, step)
    assert outcome.status is Status.DROPPED and outcome.rolled_back
    assert outcome.nonce == start + 2
    again = await drive(asyncio.create_task(sender.execute(transfer("planned again"))), step)
    assert again.status is Status.MINED and again.nonce == start
    assert await tx_count(rpc) == await tx_count(rpc, "pending") == start + 1
    assert await queued(rpc) == []


async def test_lost_txs_below_ours_are_sent_again_and_nothing_above_them_is_given_up(
    rpc: HttpRpc,
) -> None:
    # The node drops our two lowest pending transactions (anvil does, when the one before
    # them does not fit the block it builds): the ones above wait in its pool behind the gap.
    # Given up, they would still be mined once the gap is filled, with nobody watching them;
    # and the second lost one must not give up either, or the gap is never filled.
    sender = make_sender(rpc, replace_after_blocks=50)
    start = await tx_count(rpc)
    await rpc.call("evm_setAutomine", [False])
    tasks = [asyncio.create_task(sender.execute(transfer(f"tx {i}"))) for i in range(4)]
    async with asyncio.timeout(10):
        while True:
            if await tx_count(rpc, "pending") >= start + 4:  # all four handed out
                break
            await asyncio.sleep(0.02)
    content = await rpc.call("txpool_content")
    ours = {int(n): tx["hash"] for sender_, txs in content["pending"].items()
            if sender_.lower() == KEEPER for n, tx in txs.items()}
    raw = [await rpc.call("eth_getRawTransactionByHash", [ours[start + i]]) for i in (2, 3)]
    # anvil drops a transaction's successors with it: the upper two are handed to it again.
    await rpc.call("anvil_dropTransaction", [ours[start]])
    for r in raw:
        await rpc.call("eth_sendRawTransaction", [r])
    assert await tx_count(rpc, "pending") == start and await queued(rpc) == [start + 2, start + 3]

    async def step(_: int) -> None:
        await rpc.call("evm_mine")

    outcomes = [await drive(t, step) for t in tasks]
    assert [o.status for o in outcomes] == [Status.MINED] * 4
    assert not any(o.rolled_back for o in outcomes)
    assert sorted(-1 if o.nonce is None else o.nonce for o in outcomes) == [
        start + i for i in range(4)]
    assert await tx_count(rpc) == start + 4 and await queued(rpc) == []
