"""After a restart, transactions the process before this one left in the mempool are seen.

A request that shares no pool with ours in flight is simulated at the head (``state_for``), but
this process does not know what a killed one left pending under the same key: a liquidation
selling into the same pool, mined before ours, would make ours revert. The sender sees
nonces in the mempool that none of its flights holds and simulates again on top of them.
A plain ETH transfer stands in: the stranger sends nearly all the balance away first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from keeper.domain.fees import GWEI, Fees
from keeper.exec.tx import Status, TxRequest
from tests.integration.test_sender import KEEPER, ONE_ETH, SINK, make_sender, signer, tx_count

pytestmark = pytest.mark.integration


@pytest.fixture
async def rpc(anvil: Anvil) -> AsyncIterator[HttpRpc]:
    async with HttpRpc(anvil.url, timeout=10) as client:
        yield client


async def test_a_stranger_in_the_mempool_under_our_key_is_simulated_under(rpc: HttpRpc) -> None:
    await rpc.call("anvil_setAutomine", [False])
    balance = int(await rpc.call("eth_getBalance", [KEEPER, "latest"]), 16)
    # The process before this one: most of the balance, nonce 0, still pending.
    left = signer().sign_eip1559(31337, 0, SINK, b"", balance - ONE_ETH, 21_000,
                                 Fees(100 * GWEI, GWEI))
    await rpc.call("eth_sendRawTransaction", ["0x" + left.raw.hex()])
    assert (await tx_count(rpc), await tx_count(rpc, "pending")) == (0, 1)

    sender = make_sender(rpc)
    req = TxRequest(to=SINK, data=b"", value=2 * ONE_ETH, expected_profit_native=ONE_ETH // 100,
                    label="after-restart", shares=frozenset())  # nothing of ours in flight
    outcome = await sender.execute(req)
    # At the head it passes; on top of the stranger it cannot: never sent.
    assert outcome.status is Status.SKIPPED, outcome.reason
    assert not outcome.attempts
    assert await tx_count(rpc, "pending") == 1


async def test_no_stranger_no_second_simulation(rpc: HttpRpc) -> None:
    sender = make_sender(rpc)
    calls: list[str] = []
    simulate = sender.simulator.simulate

    async def counted(req: TxRequest, block: str, **kw: object) -> object:
        calls.append(block)
        return await simulate(req, block, **kw)  # type: ignore[arg-type]

    sender.simulator.simulate = counted  # type: ignore[method-assign,assignment]
    req = TxRequest(to=SINK, data=b"", value=1, expected_profit_native=ONE_ETH // 100,
                    label="quiet", shares=frozenset())
    outcome = await sender.execute(req)
    assert outcome.status is Status.MINED, outcome.reason
    assert calls == ["latest"]
