"""Replaying a source chain's blocks on an Anvil fork of it, one block at a time.

The fork starts at the source's block N with automine off and its mempool in arrival order
(``--order fifo``). ``mine_source`` sends each of a source block's transactions as the
original signed bytes (``eth_getRawTransactionByHash``: the fork keeps the chain id, so the
signatures hold, and the senders' nonces match because the fork starts where the source was)
and seals them in one block with the source's timestamp and base fee. A transaction a node
made for an impersonated sender carries no signature (r = s = 0); the fork, an Anvil, sends
those for the same sender by impersonation. What the fork would not take, or left unmined
(a nonce the keeper's own moves made stale), is dropped and counted.

``keeper_window`` is the keeper's turn between two source blocks: whatever the keeper sends
while it is open is mined at once, one block per transaction, stamped with the timestamp of
the source block that comes next (the keeper's transactions sit at the head of that block,
before its source transactions: a lost race is a source transaction that then reverts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from keeper.chain.rpc import JsonRpc
from keeper.errors import RpcResponseError
from keeper.obs.logging import get_logger

log = get_logger(__name__)

_FEE_FIELDS = ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "accessList", "type")


@dataclass(frozen=True, slots=True)
class SourceBlock:
    """A block of the source chain, with its full transactions in order."""

    number: int
    timestamp: int
    base_fee: int | None
    txs: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ReplayedBlock:
    """What became of one source block on the fork."""

    source: int
    fork_block: int
    sent: int
    mined: int
    reverted: int
    not_replayed: int  # refused by the fork or left unmined (dropped)


def _signed(tx: dict[str, Any]) -> bool:
    return bool(int(tx.get("r", "0x0"), 16) or int(tx.get("s", "0x0"), 16))


class Replayer:
    """Replays ``source`` blocks onto ``fork`` (an Anvil with automine off)."""

    def __init__(self, source: JsonRpc, fork: JsonRpc, *, poll: float = 0.01) -> None:
        self.source = source
        self.fork = fork
        self.poll = poll

    async def prepare(self) -> None:
        """Mine on demand only: the replay seals every block itself."""
        await self.fork.call("evm_setAutomine", [False])

    async def fetch(self, number: int) -> SourceBlock:
        """Source block ``number`` with its full transactions."""
        block = await self.source.call("eth_getBlockByNumber", [hex(number), True])
        base_fee = block.get("baseFeePerGas")
        return SourceBlock(number, int(block["timestamp"], 16),
                           int(base_fee, 16) if base_fee is not None else None,
                           tuple(block["transactions"]))

    async def mine_source(self, block: SourceBlock) -> ReplayedBlock:
        """Send ``block``'s transactions in order and seal them in one fork block."""
        if block.base_fee is not None:
            # The source's own base fee: every original transaction paid at least that much.
            await self.fork.call("anvil_setNextBlockBaseFeePerGas", [hex(block.base_fee)])
        signed = [tx["hash"] for tx in block.txs if _signed(tx)]
        # One batch for the block's original bytes; the sends stay one by one, in order. A
        # node that cannot give them leaves those to impersonation.
        fetched = await self.source.batch([("eth_getRawTransactionByHash", [h]) for h in signed],
                                          return_exceptions=True) if signed else []
        raws = {h: str(r) for h, r in zip(signed, fetched, strict=True)
                if isinstance(r, str) and r.startswith("0x")}
        sent: list[str] = []
        refused = 0
        for tx in block.txs:
            try:
                sent.append(await self._send(tx, raws.get(tx["hash"])))
            except RpcResponseError as exc:
                refused += 1
                log.warning("replay_tx_refused", block=block.number, tx=tx["hash"],
                            error=exc.rpc_message)
        await self.fork.call("evm_mine", [block.timestamp])
        head = await self.fork.call("eth_getBlockByNumber", ["latest", False])
        included = set(head["transactions"])
        left = [h for h in sent if h not in included]
        for tx_hash in left:
            # Stale now (e.g. a nonce gap after a refused send): it must not land in a later
            # block out of the source's order.
            await self.fork.call("anvil_dropTransaction", [tx_hash])
        receipts = await self.fork.batch([("eth_getTransactionReceipt", [h])
                                          for h in sent if h in included])
        reverted = sum(1 for r in receipts if r is not None and int(r["status"], 16) != 1)
        return ReplayedBlock(block.number, int(head["number"], 16), len(block.txs),
                             len(included & set(sent)), reverted, refused + len(left))

    async def _send(self, tx: dict[str, Any], raw: str | None) -> str:
        if raw is not None:
            return str(await self.fork.call("eth_sendRawTransaction", [raw]))
        # No signature: the source node sent it for an impersonated account. Same sender, same
        # nonce, same call, by impersonation on the fork.
        request = {"from": tx["from"], "to": tx.get("to"), "data": tx["input"],
                   "value": tx["value"], "gas": tx["gas"], "nonce": tx["nonce"],
                   **{k: tx[k] for k in _FEE_FIELDS if k in tx and k != "type"}}
        if "maxFeePerGas" in request:
            request.pop("gasPrice", None)
        await self.fork.call("anvil_impersonateAccount", [tx["from"]])
        try:
            return str(await self.fork.call("eth_sendTransaction", [request]))
        finally:
            await self.fork.call("anvil_stopImpersonatingAccount", [tx["from"]])

    @contextlib.asynccontextmanager
    async def keeper_window(self, timestamp: int) -> AsyncIterator[None]:
        """While open, every transaction reaching the fork's mempool is mined at once (one
        block each) at ``timestamp``: the keeper's turn before the next source block."""
        task = asyncio.create_task(self._mine_pending(timestamp))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._mine_once(timestamp)  # a send that raced the cancel

    async def _mine_pending(self, timestamp: int) -> None:
        stuck = 0
        while True:
            stuck = await self._mine_once(timestamp, stuck)
            await asyncio.sleep(self.poll)

    async def _mine_once(self, timestamp: int, stuck: int = 0) -> int:
        """Mine if something new is pending; returns what stays pending after an empty
        block (a transaction the block would not take, e.g. a fee under the base fee), so
        that it is not mined around again and again."""
        pending = int((await self.fork.call("txpool_status"))["pending"], 16)
        if pending == 0 or pending == stuck:
            return stuck
        await self.fork.call("evm_mine", [timestamp])
        head = await self.fork.call("eth_getBlockByNumber", ["latest", False])
        return pending if not head["transactions"] else 0
