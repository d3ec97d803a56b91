"""The revert explainer's split of a block holding both the driver's and the keeper's
transactions: a lost race only when the driver's alone revert ours and the keeper's alone do not.

A contract that reverts unless an account holds more than 1 ETH stands in for the liquidator's
profit floor; draining that account is the move that makes it revert.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from tests.e2e.races import _split_block

pytestmark = pytest.mark.integration

DRIVER = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
KEEPER = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
SINK = "0x" + "5a" * 20
FLOOR = "0x" + "77" * 20


def floor_code(watched: str) -> str:
    """Runtime code: revert unless balance(``watched``) > 1 ETH (11-byte 10**18)."""
    one_eth = (10**18).to_bytes(11, "big").hex()
    # BALANCE(watched); PUSH11 1e18; LT (1e18 < balance); JUMPI to 0x2b; REVERT(0, 0); STOP
    return f"0x73{watched[2:]}316a{one_eth}10602b5760006000fd5b00"


@pytest.fixture
async def rpc(anvil: Anvil) -> AsyncIterator[HttpRpc]:
    async with HttpRpc(anvil.url, timeout=10) as client:
        yield client


async def block_of_both(rpc: HttpRpc, drained: str) -> list[dict[str, object]]:
    """One block: the keeper's transfer, then the driver's; ``drained`` sends nearly all it has."""
    await rpc.call("anvil_setAutomine", [False])
    for sender in (KEEPER, DRIVER):
        balance = int(await rpc.call("eth_getBalance", [sender, "latest"]), 16)
        value = balance - 10**17 if sender == drained else 1
        await rpc.call("eth_sendTransaction", [{"from": sender, "to": SINK, "value": hex(value)}])
    await rpc.call("evm_mine")
    block = await rpc.call("eth_getBlockByNumber", ["latest", True])
    assert [t["from"].lower() for t in block["transactions"]] == [KEEPER, DRIVER]
    return list(block["transactions"])


@pytest.mark.parametrize(("drained", "raced"), [(DRIVER, True), (KEEPER, False)])
async def test_a_mixed_block_is_the_drivers_doing_only_when_its_transactions_alone_revert_ours(
        rpc: HttpRpc, drained: str, raced: bool) -> None:
    await rpc.call("anvil_setCode", [FLOOR, floor_code(drained)])
    await rpc.call("evm_mine")
    ours = {"from": KEEPER, "to": FLOOR, "data": "0x", "gas": hex(100_000)}
    await rpc.call("eth_call", [ours, "latest"])  # passes before the block
    txs = await block_of_both(rpc, drained)
    head = int(await rpc.call("eth_blockNumber"), 16)
    verdict, why = await _split_block(rpc, head, txs, KEEPER, ours)
    assert verdict is raced, why
    assert ("driver's alone it reverts" in why) is (drained == DRIVER), why
    assert ("keeper's alone it reverts" in why) is (drained == KEEPER), why
