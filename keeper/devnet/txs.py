"""Send devnet transactions from anvil's unlocked (or impersonated) accounts.

The devnet is tooling: it signs nothing. Deploys and scenario steps use ``eth_sendTransaction``
from accounts anvil unlocks or impersonates, and every receipt is checked: a reverted devnet
transaction is a bug in the scenario and stops it with the revert reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from keeper.chain.abi import Function
from keeper.chain.rpc import HttpRpc
from keeper.errors import DevnetError, RpcResponseError

_NUDGE_AFTER = 2.0  # seconds a transaction may wait on an automining node before a nudge


def to_hex(n: int) -> str:
    return hex(n)


def checksum_free(addr: str) -> str:
    """Lower-case 0x address; we compare addresses in this form everywhere on the devnet."""
    return addr.lower()


class TxSender:
    """Sends transactions through anvil and waits for their receipts (automine)."""

    def __init__(self, rpc: HttpRpc, default_from: str) -> None:
        self.rpc = rpc
        self.default_from = default_from
        self._sent_from: dict[str, str] = {}  # the sender of each transaction being waited for

    async def send(
        self,
        to: str | None,
        data: bytes,
        *,
        sender: str | None = None,
        value: int = 0,
        gas: int | None = None,
        what: str = "",
    ) -> dict[str, Any]:
        """Send one transaction, wait for its receipt, raise with the reason if it reverted."""
        tx: dict[str, Any] = {"from": sender or self.default_from, "data": "0x" + data.hex()}
        if to is not None:
            tx["to"] = to
        if value:
            tx["value"] = to_hex(value)
        if gas is None:
            # anvil estimates against the current second; a tx mined in the next second can
            # cost more (e.g. Uniswap's cumulative-price update once time has passed), so a
            # bare estimate runs out of gas now and then. Leave a margin.
            try:
                estimate = int(await self.rpc.call("eth_estimateGas", [tx]), 16)
            except RpcResponseError as exc:
                raise DevnetError(f"{what or 'transaction'} would revert: {exc.rpc_message}") from exc
            gas = estimate * 5 // 4 + 50_000
        tx["gas"] = to_hex(gas)
        try:
            tx_hash = await self.rpc.call("eth_sendTransaction", [tx], timeout=60)
        except RpcResponseError as exc:
            raise DevnetError(f"{what or 'transaction'} rejected: {exc.rpc_message}") from exc
        self._sent_from[tx_hash] = tx["from"]
        first = tx_hash
        try:
            receipt = await self.wait_receipt(tx_hash, what=what)
        except _BehindGap as gap:
            # Once more, at the chain's nonce: see ``_behind_gap``.
            await self.rpc.call("anvil_dropTransaction", [tx_hash])
            tx_hash = await self.rpc.call("eth_sendTransaction", [tx | {"nonce": hex(gap.nonce)}],
                                          timeout=60)
            receipt = await self.wait_receipt(tx_hash, what=what)
        finally:
            self._sent_from.pop(first, None)
        if int(receipt["status"], 16) != 1:
            reason = await self._replay(tx, int(receipt["blockNumber"], 16) - 1)
            raise DevnetError(f"{what or 'transaction'} {tx_hash} reverted{reason}")
        return dict(receipt)

    async def _replay(self, tx: dict[str, Any], block: int) -> str:
        """The revert reason, by replaying the call on the state before its block."""
        call = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value")}
        try:
            await self.rpc.call("eth_call", [call, hex(block)])
        except RpcResponseError as exc:
            return f": {exc.rpc_message}"
        return ""

    async def wait_receipt(self, tx_hash: str, *, what: str = "", timeout: float = 30.0) -> dict[str, Any]:
        """Poll for a receipt: anvil's automine answers the send before the block is sealed.

        Now and then anvil's automine leaves a ready transaction in its pool, unmined, until
        something else mines a block (foundry-rs/foundry#10122; seen here after evm_revert,
        twice in five CI runs): a transaction still pending after ``_NUDGE_AFTER`` seconds on
        an automining node gets a block mined for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        nudge_at = loop.time() + _NUDGE_AFTER
        delay = 0.001
        while True:
            receipt = await self.rpc.call("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return dict(receipt)
            if loop.time() > deadline:
                raise DevnetError(f"{what or 'transaction'} {tx_hash} was not mined in "
                                  f"{timeout:g}s ({await self._state_of(tx_hash)})")
            if loop.time() > nudge_at:
                nudge_at = loop.time() + _NUDGE_AFTER
                if await self.rpc.call("anvil_getAutomine"):
                    await self._behind_gap(tx_hash)
                    await self.rpc.call("evm_mine")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _state_of(self, tx_hash: str) -> str:
        """What the node says of a transaction it does not mine: for the error."""
        tx = await self.rpc.call("eth_getTransactionByHash", [tx_hash])
        head = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        if tx is None:
            return f"the node does not hold it; head {int(head['number'], 16)}"
        chain = int(await self.rpc.call("eth_getTransactionCount", [tx["from"], "latest"]), 16)
        return (f"nonce {int(tx['nonce'], 16)}, chain's next {chain}, fee cap "
                f"{int(tx.get('maxFeePerGas') or tx.get('gasPrice') or '0x0', 16)}, base fee "
                f"{int(head.get('baseFeePerGas', '0x0'), 16)}, head {int(head['number'], 16)}")

    async def _behind_gap(self, tx_hash: str) -> None:
        """Raise ``_BehindGap`` when the pending ``tx_hash`` took a nonce above its sender's
        next one on chain (on an automining node, a pending one below it would be mined): after an
        ``evm_revert`` anvil's pool can hand out nonces counted on the reverted blocks, and
        such a transaction waits forever (once in a CI run of test_routing, after the nudge
        had been added)."""
        tx = await self.rpc.call("eth_getTransactionByHash", [tx_hash])
        if tx is not None and tx.get("blockNumber") is not None:
            return
        sender = tx["from"] if tx is not None else self._sent_from.get(tx_hash)
        if sender is None:
            return
        chain = int(await self.rpc.call("eth_getTransactionCount", [sender, "latest"]), 16)
        # Gone from the pool (twice in CI runs of test_routing, in the parallel phase: the
        # node answered the send, then neither mined nor held it), or above the chain's next
        # nonce (on an automining node, a pending one below it would be mined).
        if tx is None or int(tx["nonce"], 16) > chain:
            raise _BehindGap(chain)

    async def deploy(self, data: bytes, *, what: str = "") -> str:
        """Deploy creation code and return the new contract's address."""
        receipt = await self.send(None, data, what=f"deploy {what}")
        addr = receipt.get("contractAddress")
        if not addr:
            raise DevnetError(f"deploy {what}: no contract address in the receipt")
        return str(addr).lower()

    async def transact(
        self, to: str, fn: Function, *args: Any, sender: str | None = None, value: int = 0
    ) -> dict[str, Any]:
        return await self.send(to, fn.encode(*args), sender=sender, value=value,
                               what=f"{fn.name} on {to}")

    async def call(self, to: str, fn: Function, *args: Any, block: str = "latest") -> tuple[Any, ...]:
        raw = await self.rpc.call("eth_call", [{"to": to, "data": fn.encode_hex(*args)}, block])
        return fn.decode_output(raw)

    async def call_many(
        self, calls: Sequence[tuple[str, Function, tuple[Any, ...]]], block: str = "latest"
    ) -> list[tuple[Any, ...]]:
        """Several eth_calls in one JSON-RPC batch."""
        raw = await self.rpc.batch(
            [("eth_call", [{"to": to, "data": fn.encode_hex(*args)}, block]) for to, fn, args in calls]
        )
        return [fn.decode_output(r) for (_, fn, _), r in zip(calls, raw, strict=True)]


class _BehindGap(Exception):
    """A devnet transaction stuck above its sender's next nonce on chain."""

    def __init__(self, nonce: int) -> None:
        super().__init__(f"stuck above nonce {nonce}")
        self.nonce = nonce
