"""The replay machinery alone: a source chain's blocks, replayed on a fork with nobody else
sending, come out the same: same transactions in the same order, same timestamps, same
receipts (status, gas, logs), whether the source signed them or sent them impersonated."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keeper.app.replay import Replayer
from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil, AnvilOptions

pytestmark = pytest.mark.integration

DEV = ["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
       "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"]  # anvil's unlocked accounts 0-2
STRANGER = "0x00000000000000000000000000000000000c0de1"  # sends only by impersonation
# A contract that counts its calls in slot 0 and logs its calldata (LOG0): gas and logs to
# compare, and an order that matters (the first call of a block pays the cold-to-warm write).
RUNTIME = "0x60016000540160005536600060003760206000a000"


def _init_code(runtime: str) -> str:
    body = bytes.fromhex(runtime[2:])
    n = len(body)
    # PUSH1 n PUSH1 0x0c PUSH1 0 CODECOPY PUSH1 n PUSH1 0 RETURN, then the runtime.
    return "0x" + bytes([0x60, n, 0x60, 0x0C, 0x60, 0x00, 0x39, 0x60, n, 0x60, 0x00, 0xF3]).hex() \
        + body.hex()


async def _receipts(rpc: HttpRpc, block: dict[str, Any]) -> list[tuple[Any, ...]]:
    raw = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in block["transactions"]])
    return [(r["status"], r["gasUsed"], [(lg["address"], lg["topics"], lg["data"])
                                         for lg in r["logs"]]) for r in raw]


async def test_replayed_blocks_match_the_source() -> None:
    # The source keeps arrival order and its senders tip more and more: a block whose order
    # is not the fee order, which the fork must keep.
    async with await Anvil.start(AnvilOptions(order="fifo")) as node, \
            HttpRpc(node.url, timeout=30) as src:
        await src.call("anvil_setBalance", [STRANGER, hex(10**20)])
        deployed = await src.call("eth_sendTransaction", [{"from": DEV[0],
                                                            "data": _init_code(RUNTIME)}])
        receipt = None
        while receipt is None:  # automine answers the send before the block is sealed
            receipt = await src.call("eth_getTransactionReceipt", [deployed])
            await asyncio.sleep(0.01)
        target = receipt["contractAddress"]
        fork_at = int(await src.call("eth_blockNumber"), 16)
        await src.call("evm_setAutomine", [False])
        for step in range(3):
            for i, sender in enumerate([*DEV, STRANGER]):
                impersonated = sender == STRANGER
                if impersonated:
                    await src.call("anvil_impersonateAccount", [sender])
                await src.call("eth_sendTransaction", [{
                    "from": sender, "to": target, "data": "0x" + (step * 16 + i + 1).to_bytes(32, "big").hex(),
                    "gas": hex(100_000), "maxFeePerGas": hex(10 * 10**9 * (i + 1)),
                    "maxPriorityFeePerGas": hex(10**9 * (i + 1))}])
                if impersonated:
                    await src.call("anvil_stopImpersonatingAccount", [sender])
            await src.call("evm_mine", [1_900_000_000 + 12 * step])
        head = int(await src.call("eth_blockNumber"), 16)

        async with await Anvil.start(AnvilOptions(fork_url=node.url, fork_block=fork_at,
                                                  order="fifo")) as fork_node, \
                HttpRpc(fork_node.url, timeout=30) as fork:
            replayer = Replayer(src, fork)
            await replayer.prepare()
            for number in range(fork_at + 1, head + 1):
                block = await replayer.fetch(number)
                replayed = await replayer.mine_source(block)
                assert (replayed.sent, replayed.mined, replayed.reverted,
                        replayed.not_replayed) == (4, 4, 0, 0)
                mine = await fork.call("eth_getBlockByNumber", [hex(replayed.fork_block), True])
                theirs = await src.call("eth_getBlockByNumber", [hex(number), True])
                assert mine["timestamp"] == theirs["timestamp"]
                assert [(t["from"], t["nonce"], t["input"]) for t in mine["transactions"]] == [
                    (t["from"], t["nonce"], t["input"]) for t in theirs["transactions"]]
                mine_hashes = {**mine, "transactions": [t["hash"] for t in mine["transactions"]]}
                theirs_hashes = {**theirs,
                                 "transactions": [t["hash"] for t in theirs["transactions"]]}
                assert await _receipts(fork, mine_hashes) == await _receipts(src, theirs_hashes)
            # The signed ones are the very same transactions.
            assert mine_hashes["transactions"][:3] == theirs_hashes["transactions"][:3]
