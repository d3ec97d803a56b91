"""A call checked at its gas limit on the head's state can still run out of gas in the block
that includes it, and the sender sends with room for that.

Aave's ``updateState`` returns early for a reserve already updated at the block's timestamp:
a call made on the head, at the head's stamp, skips the interest update of every reserve the
head block touched, while the first transaction of the next block to touch it pays for it.
(A fault test's crash saw a liquidation checked at its limit pass on the head and revert out
of gas in the next block, first in it.) Here on the real Pool: a USDC ``supply`` right after
another USDC transaction.
"""

from __future__ import annotations

from typing import Any

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet.driver import Devnet, function
from keeper.exec.tx import Status, TxRequest
from tests.integration.test_sender import KEEPER, ONE_ETH, make_sender

pytestmark = pytest.mark.integration

_SUPPLY = function("Pool", "supply")
NEXT_BLOCK_SECONDS = 12


async def _traced_gas(rpc: HttpRpc, call: dict[str, Any], time: int | None = None) -> int:
    options: dict[str, Any] = {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}}
    if time is not None:
        options["blockOverrides"] = {"time": hex(time)}
    trace = await rpc.call("debug_traceCall", [call, "latest", options])
    assert not trace.get("error"), trace
    return int(trace["gasUsed"], 16)


async def test_a_limit_checked_on_the_head_leaves_room_for_the_next_blocks_updates(
    devnet: Devnet,
) -> None:
    m, users, rpc = devnet.m, devnet.users, devnet.rpc
    usdc = m.reserve("USDC").address
    borrower = "0x" + "b7" * 20
    await devnet.fund([borrower])
    # Interest on USDC (a borrower), so that its update writes the indexes; our USDC to supply.
    await devnet.send_many([
        *users.deposit_txs(m.deployer, "USDC", 1_000_000 * 10**6),
        *users.deposit_txs(borrower, "WETH", 100 * 10**18),
        users.tx_borrow(borrower, "USDC", 50_000 * 10**6),
        users.tx_mint(KEEPER, "USDC", 10_000 * 10**6),
        users.tx_approve(KEEPER, "USDC"),
        # The head block touches the USDC reserve: at its stamp, the update is done.
        *users.deposit_txs(m.deployer, "USDC", 10**6),
    ])
    head = await rpc.call("eth_getBlockByNumber", ["latest", False])
    data = _SUPPLY.encode(usdc, 1_000 * 10**6, KEEPER, 0)
    call = {"from": KEEPER, "to": m.pool, "data": "0x" + data.hex()}
    at_head = await _traced_gas(rpc, call)
    next_stamp = int(head["timestamp"], 16) + NEXT_BLOCK_SECONDS
    at_next = await _traced_gas(rpc, call, next_stamp)
    assert at_next > at_head, "the next block's first touch must cost more than the head's call"
    # A limit the call passes at on the head, a gas short of what it uses in the next block.
    needed_at_head = int(await rpc.call("eth_estimateGas", [call, "latest"]), 16)
    limit = at_next - 1
    assert needed_at_head <= limit, (needed_at_head, at_head, at_next)
    await rpc.call("evm_setNextBlockTimestamp", [next_stamp])

    sender = make_sender(rpc, gas_margin_percent=0)
    outcome = await sender.execute(TxRequest(
        to=m.pool, data=data, expected_profit_native=ONE_ETH // 100, gas_limit=limit,
        known_gas=at_head, label="supply after the head touched USDC",
        # Shares nothing with sends of ours: simulated at the head ("latest"), as a batch of
        # kept liquidations is (the pending block would run it at the next stamp).
        shares=frozenset()))

    assert outcome.status is Status.MINED, outcome.reason
    receipt = await rpc.call("eth_getTransactionReceipt", [outcome.tx_hash])
    used = int(receipt["gasUsed"], 16)
    assert used > limit  # it needed more than the limit the head's call passed at
    block = await rpc.call("eth_getBlockByNumber", [receipt["blockNumber"], False])
    assert int(block["timestamp"], 16) == next_stamp
