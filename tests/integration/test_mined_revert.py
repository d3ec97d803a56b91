"""Why a mined transaction reverted, from the node's trace of it (a real anvil)."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from keeper.exec.reads import ChainReads
from keeper.exec.simulate import Simulator
from keeper.obs.metrics import Metrics

pytestmark = pytest.mark.integration

DEV = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"  # anvil's dev account 0


def _init_code_reverting_with(reason: str) -> bytes:
    """Creation code that reverts with ``Error(reason)``: the payload is copied from the
    code's tail into memory and returned as the revert data."""
    payload = bytes.fromhex("08c379a0") + abi_encode(["string"], [reason])
    n = len(payload)
    assert n < 256
    # PUSH1 n, PUSH1 offset, PUSH1 0, CODECOPY, PUSH1 n, PUSH1 0, REVERT
    head_len = 2 + 2 + 2 + 1 + 2 + 2 + 1
    return bytes([0x60, n, 0x60, head_len, 0x60, 0, 0x39, 0x60, n, 0x60, 0, 0xFD]) + payload


async def _mined(rpc: HttpRpc, data: bytes) -> str:
    tx_hash = str(await rpc.call("eth_sendTransaction", [
        {"from": DEV, "data": "0x" + data.hex(), "gas": hex(200_000)}]))
    await rpc.call("evm_mine")
    receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
    assert receipt is not None
    return tx_hash


async def test_a_mined_revert_is_explained_and_a_success_is_not(anvil: Anvil) -> None:
    async with HttpRpc(anvil.url, timeout=10) as rpc:
        await rpc.call("evm_setAutomine", [False])
        reverted = await _mined(rpc, _init_code_reverting_with("taken first"))
        succeeded = await _mined(rpc, bytes([0x60, 0, 0x60, 0, 0xF3]))  # returns empty code
        reads = ChainReads(rpc, DEV, Metrics(), timeout=5.0, poll_interval=0.1)
        simulator = Simulator(reads, DEV)
        assert await simulator.mined_revert(reverted) == "reverted: taken first"
        assert await simulator.mined_revert(succeeded) is None
