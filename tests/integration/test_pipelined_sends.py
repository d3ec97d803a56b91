"""Sends handed out without waiting for the node's answer, against a real anvil: the next send
goes out while the node has not answered the one before it, and a refusal that comes back
after a later nonce went out leaves no gap (a cancel takes the refused nonce); a send
the node never got is handed out again by its own flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from keeper.devnet.driver import Devnet
from keeper.errors import RpcErrorReply, RpcMalformedReply, RpcResponseError
from keeper.exec.keys import SignedTx
from keeper.exec.sender import Sender
from keeper.exec.submit import PublicSubmitter
from keeper.exec.tx import Status, TxRequest
from keeper.obs.metrics import Metrics
from tests.integration.test_sender import (
    _MINT,
    _TRANSFER,
    KEEPER,
    ONE_ETH,
    POLICY,
    SINK,
    drive,
    make_sender,
    signer,
    transfer,
    tx_count,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def rpc(anvil: Anvil) -> AsyncIterator[HttpRpc]:
    async with HttpRpc(anvil.url, timeout=10) as client:
        yield client


class SlowFirstAnswer(PublicSubmitter):
    """The node takes every send at once; the answer to the first comes back late."""

    def __init__(self, rpc: HttpRpc, delay: float) -> None:
        super().__init__(rpc)
        self.delay = delay
        self.events: list[tuple[str, int]] = []  # ("start" | "answer", nonce)
        self.started = asyncio.Event()

    async def submit(self, signed: SignedTx, head: int) -> None:
        nonce = len([e for e in self.events if e[0] == "start"])
        self.events.append(("start", nonce))
        self.started.set()
        await super().submit(signed, head)
        if nonce == 0:
            await asyncio.sleep(self.delay)
        self.events.append(("answer", nonce))


class RefusesFirstLate(PublicSubmitter):
    """The first send is refused, but only once the second has gone to the node."""

    def __init__(self, rpc: HttpRpc) -> None:
        super().__init__(rpc)
        self.second_sent = asyncio.Event()
        self.sends = 0

    async def submit(self, signed: SignedTx, head: int) -> None:
        self.sends += 1
        if self.sends == 1:
            await asyncio.wait_for(self.second_sent.wait(), 5)
            raise RpcResponseError("eth_sendRawTransaction", -32003, "insufficient funds for gas")
        await super().submit(signed, head)
        self.second_sent.set()


def alone(label: str) -> TxRequest:
    """A request that shares nothing with other sends of ours (as a kept liquidation): it is
    simulated at the head and handed out without waiting for the answers before it."""
    return replace(transfer(label), shares=frozenset())


def _sender(rpc: HttpRpc, submitter: PublicSubmitter) -> Sender:
    base = make_sender(rpc)
    return Sender(rpc, signer(), POLICY, base.guards, base.settings, metrics=Metrics(),
                  submitter=submitter)


async def test_the_next_send_goes_out_before_the_node_answers_the_one_before(
        rpc: HttpRpc) -> None:
    submitter = SlowFirstAnswer(rpc, delay=0.5)
    sender = _sender(rpc, submitter)
    start = await tx_count(rpc)
    first = asyncio.create_task(sender.execute(alone("first")))
    await asyncio.wait_for(submitter.started.wait(), 10)
    second = await asyncio.wait_for(sender.execute(alone("second")), 10)
    outcomes = [await asyncio.wait_for(first, 10), second]
    assert [o.status for o in outcomes] == [Status.MINED, Status.MINED]
    assert [o.nonce for o in outcomes] == [start, start + 1]
    # The second was handed to the node while the first's answer was still on its way.
    assert submitter.events.index(("start", 1)) < submitter.events.index(("answer", 0))


async def test_a_refusal_after_a_later_send_is_filled_by_a_cancel(rpc: HttpRpc) -> None:
    sender = _sender(rpc, RefusesFirstLate(rpc))
    start = await tx_count(rpc)
    first = asyncio.create_task(sender.execute(alone("first")))
    await asyncio.sleep(0.05)  # the first holds its nonce, and is waiting for the answer
    second = asyncio.create_task(sender.execute(alone("second")))
    refused, mined = await asyncio.wait_for(asyncio.gather(first, second), 20)
    assert refused.status is Status.DROPPED and "rejected by node" in refused.reason
    assert mined.status is Status.MINED and mined.nonce == start + 1
    # The refused nonce went to a cancel (a 0-value transfer to ourselves), not left as a gap.
    assert await tx_count(rpc) == await tx_count(rpc, "pending") == start + 2
    block = await rpc.call("eth_getBlockByNumber", ["latest", True])
    txs = [tx for n in range(int(block["number"], 16) + 1)
           for tx in (await rpc.call("eth_getBlockByNumber", [hex(n), True]))["transactions"]]
    by_nonce = {int(tx["nonce"], 16): tx for tx in txs if tx["from"].lower() == KEEPER}
    assert by_nonce[start]["to"].lower() == KEEPER and int(by_nonce[start]["value"], 16) == 0
    assert by_nonce[start + 1]["to"].lower() == SINK
    assert sender.nonces.outstanding == []


async def test_a_refusal_with_no_later_send_gives_its_nonce_to_the_next(rpc: HttpRpc) -> None:
    submitter = RefusesFirstLate(rpc)
    submitter.second_sent.set()  # nothing to wait for: refused at once
    sender = _sender(rpc, submitter)
    start = await tx_count(rpc)
    refused = await asyncio.wait_for(sender.execute(alone("first")), 10)
    assert refused.status is Status.DROPPED
    mined = await asyncio.wait_for(sender.execute(alone("second")), 10)
    assert mined.status is Status.MINED and mined.nonce == start
    assert await tx_count(rpc) == start + 1  # no cancel was needed


class LosesFirstLate(PublicSubmitter):
    """The first send never reaches the node, and its answer (an overloaded node's error
    object) comes back only once the second has gone to the node."""

    def __init__(self, rpc: HttpRpc) -> None:
        super().__init__(rpc)
        self.second_sent = asyncio.Event()
        self.hashes: list[str] = []

    async def submit(self, signed: SignedTx, head: int) -> None:
        self.hashes.append(signed.tx_hash)
        if len(self.hashes) == 1:
            await asyncio.wait_for(self.second_sent.wait(), 5)
            raise RpcErrorReply("eth_sendRawTransaction", -32000, "overloaded")
        await super().submit(signed, head)
        self.second_sent.set()


async def test_a_lost_send_below_a_later_one_is_handed_out_again_by_its_flight(
        rpc: HttpRpc) -> None:
    # Not a refusal: the node may or may not hold it. Its flight keeps the nonce and, seeing
    # the node without it at the next block, hands the same bytes out again; the later send
    # waits behind it and both are mined, with no cancel and no nonce read again.
    submitter = LosesFirstLate(rpc)
    sender = _sender(rpc, submitter)
    start = await tx_count(rpc)
    first = asyncio.create_task(sender.execute(alone("first")))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(sender.execute(alone("second")))

    async def mine(_: int) -> None:
        await rpc.call("evm_mine")

    lost = await drive(first, mine)
    mined = await drive(second, mine)
    assert (lost.status, lost.nonce) == (Status.MINED, start)
    assert (mined.status, mined.nonce) == (Status.MINED, start + 1)
    assert submitter.hashes.count(submitter.hashes[0]) == 2  # the same bytes, handed out again
    assert await tx_count(rpc) == start + 2
    assert sender.nonces.outstanding == []


class UnreadableFirstAnswer(PublicSubmitter):
    """The node takes the first send, but its answer does not parse."""

    def __init__(self, rpc: HttpRpc) -> None:
        super().__init__(rpc)
        self.sends = 0

    async def submit(self, signed: SignedTx, head: int) -> None:
        self.sends += 1
        await super().submit(signed, head)
        if self.sends == 1:
            raise RpcMalformedReply("eth_sendRawTransaction: result of the wrong type")


async def test_an_unreadable_answer_to_a_send_the_node_took_is_seen_through(
        rpc: HttpRpc) -> None:
    # The node holds it: the flight keeps its nonce and sees it mined, handed out once; the
    # next send takes the next nonce.
    submitter = UnreadableFirstAnswer(rpc)
    sender = _sender(rpc, submitter)
    start = await tx_count(rpc)
    first = await asyncio.wait_for(sender.execute(alone("first")), 10)
    second = await asyncio.wait_for(sender.execute(alone("second")), 10)
    assert (first.status, first.nonce) == (Status.MINED, start)
    assert (second.status, second.nonce) == (Status.MINED, start + 1)
    assert submitter.sends == 2 and await tx_count(rpc) == start + 2


async def test_a_send_simulated_on_the_pending_state_waits_for_the_node_to_hold_ours(
        rpc: HttpRpc) -> None:
    # One that may trade where ours do is simulated on the pending state, which must hold
    # every send of ours before it: it waits for their answers (a kill -9 fault test saw one
    # simulated before the node had ours, and revert after it).
    submitter = SlowFirstAnswer(rpc, delay=0.3)
    sender = _sender(rpc, submitter)
    first = asyncio.create_task(sender.execute(alone("first")))
    await asyncio.wait_for(submitter.started.wait(), 10)
    second = await asyncio.wait_for(sender.execute(transfer("second")), 10)
    assert (await asyncio.wait_for(first, 10)).status is Status.MINED
    assert second.status is Status.MINED
    assert submitter.events.index(("answer", 0)) < submitter.events.index(("start", 1))


class StaleFirstSimulation:
    """The node, where the first simulation's answer comes back only once a send of ours has
    gone out after it (a retry after a refused nonce simulates out of any turn)."""

    def __init__(self, rpc: HttpRpc) -> None:
        self.rpc = rpc
        self.held = asyncio.Event()  # the first simulation's answer is held back
        self.sent = asyncio.Event()
        self.simulations = 0

    async def batch(self, calls: Any, **kw: Any) -> Any:
        answers = await self.rpc.batch(calls, **kw)
        if any(method == "eth_call" for method, _ in calls):
            self.simulations += 1
            if self.simulations == 1:
                self.held.set()
                await asyncio.wait_for(self.sent.wait(), 5)
        return answers

    async def call(self, method: str, params: Any = (), **kw: Any) -> Any:
        answer = await self.rpc.call(method, params, **kw)
        if method == "eth_sendRawTransaction":
            self.sent.set()
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rpc, name)


async def test_a_send_that_went_out_while_one_simulated_makes_it_simulate_again(
    devnet: Devnet,
) -> None:
    # Both move all our USDC: simulated on the same state both pass, and the second to be
    # mined would revert. The one whose simulation predates the other's send simulates again
    # on top of it before it signs, and is not sent.
    usdc = devnet.m.reserve("USDC").address
    minted = await make_sender(devnet.rpc).execute(TxRequest(
        to=usdc, data=_MINT.encode(1_000 * 10**6), expected_profit_native=ONE_ETH // 10))
    assert minted.status is Status.MINED
    ours, theirs = (await devnet.balance_of("USDC", KEEPER),
                    await devnet.balance_of("USDC", SINK))
    node = StaleFirstSimulation(devnet.rpc)
    sender = make_sender(node)  # type: ignore[arg-type]

    def move_all(label: str) -> TxRequest:
        return TxRequest(to=usdc, data=_TRANSFER.encode(SINK, ours),
                         expected_profit_native=ONE_ETH // 10, label=label,
                         shares=frozenset({"usdc"}))

    first = asyncio.create_task(sender.execute(move_all("simulated first")))
    await asyncio.wait_for(node.held.wait(), 5)
    second = await sender.execute(move_all("sent first"))
    assert second.status is Status.MINED, second.reason
    stale = await asyncio.wait_for(first, 10)
    assert stale.status is Status.SKIPPED and not stale.attempts, stale.reason
    # The first, the other's, the first's again (and a look more if a block came meanwhile).
    assert "simulation" in stale.reason and node.simulations >= 3
    assert await devnet.balance_of("USDC", SINK) == theirs + ours
