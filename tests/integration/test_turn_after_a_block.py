"""A send waiting its turn behind ours is simulated again at each block that passes its
simulation, while it waits, and goes at its turn on the newest one: a kill -9 fault test saw
one wait 54 blocks behind sends the node kept refusing, go out on its old simulation, and
revert; simulated again only when its turn came, the sends queued across a block of a big
crash went out one simulation after the other (``keeper.exec.turn_wait``)."""

from __future__ import annotations

import asyncio

import pytest

from keeper.devnet.driver import Devnet, function
from keeper.exec.order import SendOrder, Turn
from keeper.exec.tx import Status, TxOutcome, TxRequest
from tests.integration.test_sender import _MINT, KEEPER, ONE_ETH, make_sender

pytestmark = pytest.mark.integration

OTHER = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"  # anvil's third account, unlocked
_APPROVE = function("MintableERC20", "approve")
_TRANSFER_FROM = function("MintableERC20", "transferFrom")


class CountingNode:
    """The node, counting the simulations of ours (batches with an eth_call)."""

    def __init__(self, devnet: Devnet) -> None:
        self.rpc = devnet.rpc
        self.simulations = 0
        self.simulated = asyncio.Event()

    async def batch(self, calls: object, **kw: object) -> object:
        answers = await self.rpc.batch(calls, **kw)  # type: ignore[arg-type]
        if any(method == "eth_call" for method, _ in calls):  # type: ignore[attr-defined]
            self.simulations += 1
            self.simulated.set()
        return answers

    def __getattr__(self, name: str) -> object:
        return getattr(self.rpc, name)


async def _waiting_take(devnet: Devnet, amount: int
                       ) -> tuple[CountingNode, asyncio.Task[TxOutcome], Turn]:
    """OTHER lets our account take ``amount`` USDC; our send takes them, simulated fine, and
    waits its turn behind the returned one (planned before it)."""
    usdc = devnet.m.reserve("USDC").address
    await devnet.tx.transact(usdc, _MINT, amount, sender=OTHER)
    await devnet.tx.transact(usdc, _APPROVE, KEEPER, amount, sender=OTHER)
    node = CountingNode(devnet)
    sender = make_sender(node)  # type: ignore[arg-type]
    order = SendOrder()
    before, turn = order.turn(), order.turn()
    take = TxRequest(to=usdc, data=_TRANSFER_FROM.encode(OTHER, KEEPER, amount),
                     expected_profit_native=ONE_ETH // 10, label="take", turn=turn)
    task = asyncio.create_task(sender.execute(take))
    await asyncio.wait_for(node.simulated.wait(), 10)
    await asyncio.sleep(0.1)  # simulated, and waiting its turn
    assert not task.done() and node.simulations == 1
    return node, task, before


async def test_a_waiting_send_is_simulated_again_at_a_block_before_its_turn(
        devnet: Devnet) -> None:
    # While it waits, OTHER takes the allowance back and a block is mined: as first
    # simulated it would revert on chain. It is refused then, its turn still to come.
    amount = 1_000 * 10**6
    node, task, before = await _waiting_take(devnet, amount)
    await devnet.tx.transact(devnet.m.reserve("USDC").address, _APPROVE, KEEPER, 0,
                             sender=OTHER)  # mined in a block
    outcome = await asyncio.wait_for(task, 10)
    assert not before.order.serving  # the send before it never took its nonce
    assert outcome.status is Status.SKIPPED and not outcome.attempts, outcome
    assert "simulation" in outcome.reason and node.simulations == 2
    assert await devnet.balance_of("USDC", KEEPER) == 0


async def test_a_send_simulated_again_while_it_waited_goes_on_that_simulation(
        devnet: Devnet) -> None:
    amount = 1_000 * 10**6
    node, task, before = await _waiting_take(devnet, amount)
    await devnet.mine()  # a block that changes nothing of it
    for _ in range(200):
        if node.simulations == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert node.simulations == 2 and not task.done()  # again, at that block, still waiting
    before.done()  # its turn: no block since its second simulation, no third
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.status is Status.MINED, outcome
    assert node.simulations == 2
    assert await devnet.balance_of("USDC", KEEPER) == amount


async def test_a_send_whose_turn_comes_in_the_same_block_is_not_simulated_again(
        devnet: Devnet) -> None:
    amount = 1_000 * 10**6
    node, task, before = await _waiting_take(devnet, amount)
    before.done()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.status is Status.MINED, outcome
    assert node.simulations == 1  # no block came while it waited: its simulation stands
    assert await devnet.balance_of("USDC", KEEPER) == amount
