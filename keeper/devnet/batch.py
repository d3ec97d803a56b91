"""Push a large set of devnet transactions through in few blocks: automine off, JSON-RPC batches
of sends, mine until the pool is empty, then check every receipt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keeper.chain.rpc import HttpRpc
from keeper.devnet.users import Tx
from keeper.errors import DevnetError, RpcResponseError


async def send_many(rpc: HttpRpc, txs: Sequence[Tx], *, chunk: int = 2000) -> list[dict[str, Any]]:
    """Send many transactions in few blocks and check every receipt succeeded.

    Per sender the order of ``txs`` is kept. Transactions go in rounds holding at most one
    transaction per sender (anvil loses some of a long same-sender queue when it is sent in
    one go), each round in JSON-RPC batches with automine off, mined until the pool is
    empty. Automine is restored afterwards.
    """
    if not txs:
        return []
    queues: dict[str, list[int]] = {}
    for i, t in enumerate(txs):
        queues.setdefault(t.sender, []).append(i)
    senders = sorted(queues)
    counts = await rpc.batch([("eth_getTransactionCount", [s, "pending"]) for s in senders])
    nonce = {s: int(c, 16) for s, c in zip(senders, counts, strict=True)}
    receipts: list[dict[str, Any] | None] = [None] * len(txs)
    depth = max(len(q) for q in queues.values())
    await rpc.call("anvil_setAutomine", [False])
    try:
        for level in range(depth):
            round_ix = [q[level] for q in queues.values() if len(q) > level]
            for c in range(0, len(round_ix), chunk):
                part = round_ix[c:c + chunk]
                for i, r in zip(part, await _send_round(rpc, txs, part, nonce), strict=True):
                    receipts[i] = r
    finally:
        await rpc.call("anvil_setAutomine", [True])
    return [r for r in receipts if r is not None]


async def _send_round(
    rpc: HttpRpc, txs: Sequence[Tx], part: list[int], nonce: dict[str, int]
) -> list[dict[str, Any]]:
    # One JSON-RPC batch of sends (at most one per sender), mined, every receipt checked.
    calls = []
    for i in part:
        t = txs[i]
        calls.append(("eth_sendTransaction", [{
            "from": t.sender, "to": t.to, "data": "0x" + t.data.hex(),
            "gas": hex(t.gas), "nonce": hex(nonce[t.sender]),
            "maxFeePerGas": hex(500 * 10**9), "maxPriorityFeePerGas": hex(10**9),
        }]))
        nonce[t.sender] += 1
    hashes = [str(h) for h in await rpc.batch(calls)]
    await _mine_until_empty(rpc)
    got = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    receipts: list[dict[str, Any]] = []
    for i, h, r in zip(part, hashes, got, strict=True):
        if r is None or int(r["status"], 16) != 1:
            raise DevnetError(await _failure(rpc, txs[i], h, r))
        receipts.append(dict(r))
    return receipts


async def _failure(rpc: HttpRpc, t: Tx, tx_hash: str, receipt: dict[str, Any] | None) -> str:
    """Describe a failed devnet tx, with the revert reason replayed on the block before."""
    what = f"devnet tx {tx_hash} from {t.sender} to {t.to} (selector 0x{t.data[:4].hex()})"
    if receipt is None:
        return what + " was not mined"
    gas_used = int(receipt["gasUsed"], 16)
    if gas_used >= t.gas:
        return what + f" ran out of gas ({gas_used})"
    block = hex(int(receipt["blockNumber"], 16) - 1)
    try:
        await rpc.call("eth_call", [{"from": t.sender, "to": t.to,
                                     "data": "0x" + t.data.hex()}, block])
    except RpcResponseError as exc:
        return what + f" reverted: {exc.rpc_message} {exc.data or ''}".rstrip()
    return what + " reverted"


async def _mine_until_empty(rpc: HttpRpc) -> None:
    # Full blocks raise the base fee 12.5% each; over hundreds of them it would outgrow any
    # fee cap and anvil would drop the rest silently. Seeding holds the base fee still.
    latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
    base_fee = latest.get("baseFeePerGas", "0x0")
    for _ in range(100_000):
        status = await rpc.call("txpool_status")
        if int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0:
            return
        await rpc.call("anvil_setNextBlockBaseFeePerGas", [base_fee])
        await rpc.call("evm_mine")
    raise DevnetError("the mempool did not drain")
