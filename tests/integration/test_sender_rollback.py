"""The executor after the chain went back, against a real anvil: a reorg that drops a mined
transaction, and a node restored from an older state under a transaction in flight. Either way
the next transaction takes the chain's nonce and nothing waits behind a nonce gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from keeper.domain.fees import GWEI
from keeper.exec.guards import Guards
from keeper.exec.tx import Status
from tests.integration.test_sender import (
    KEEPER,
    ONE_ETH,
    drive,
    make_sender,
    transfer,
    tx_count,
)

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


class StrangerFirst:
    """The node, where another transaction of the account, better paid, takes the nonce of our
    first send just before it arrives (one given up after a rollback that the node still
    holds, or another process on the key)."""

    def __init__(self, rpc: HttpRpc) -> None:
        self.rpc = rpc
        self.stranger: str | None = None

    async def call(self, method: str, params: Sequence[Any] = (), **kw: Any) -> Any:
        if method == "eth_sendRawTransaction" and self.stranger is None:
            nonce = await tx_count(self.rpc, "pending")
            self.stranger = await self.rpc.call("eth_sendTransaction", [{
                "from": KEEPER, "to": KEEPER, "value": "0x0", "nonce": hex(nonce),
                "gas": hex(21_000), "maxFeePerGas": hex(100 * GWEI),
                "maxPriorityFeePerGas": hex(10 * GWEI)}])
        return await self.rpc.call(method, params, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rpc, name)


async def test_a_send_refused_for_a_better_paid_tx_at_its_nonce_is_no_failure(
    rpc: HttpRpc,
) -> None:
    # The node answers "replacement transaction underpriced": its nonce is taken, as with
    # "nonce too low". The send goes at the next nonce; the breaker (one failure opens it)
    # does not count it.
    guards = Guards.from_config(ONE_ETH, max_consecutive_failures=1, kill_switch=False)
    node = StrangerFirst(rpc)
    sender = make_sender(node, guards=guards)  # type: ignore[arg-type]
    start = await tx_count(rpc)
    await rpc.call("evm_setAutomine", [False])

    async def step(_: int) -> None:
        await rpc.call("evm_mine")

    outcome = await drive(asyncio.create_task(sender.execute(transfer("after a stranger"))), step)
    assert node.stranger is not None
    assert outcome.status is Status.MINED and outcome.nonce == start + 1, outcome.reason
    assert not guards.breaker.is_open
    stranger = await rpc.call("eth_getTransactionByHash", [node.stranger])
    assert int(stranger["nonce"], 16) == start and stranger["blockNumber"] is not None
    assert await tx_count(rpc) == await tx_count(rpc, "pending") == start + 2
