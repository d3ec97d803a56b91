"""Typed chain data: the frozen dataclasses that leave ``keeper/chain`` instead of raw JSON.

Hashes, addresses and log payloads stay lowercase ``0x`` hex strings, the form the node sends
and ``keeper.chain.abi.Event.decode`` takes; numbers become ``int``. Parsing is strict: a
missing or malformed field raises ``RpcMalformedReply`` (an ``RpcError``) here, at the edge,
rather than a ``KeyError`` deep inside the book (decoders in ``keeper.chain.decode``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keeper.chain import decode
from keeper.chain.decode import quantity as hex_to_int
from keeper.domain.fees import Fees

__all__ = ["Block", "BlockId", "ChainEvent", "Head", "Log", "PendingTx", "Reorg", "block_param", "hex_to_int"]


BlockId = int | str
"""A block to read at: a number, a ``0x`` block hash (reorg-safe), or a tag such as "latest"."""


def block_param(block: BlockId) -> str | dict[str, str]:
    """The JSON-RPC block parameter for ``block``: an EIP-1898 object for a hash, so that a
    read of a block that was reorged out fails instead of answering for another block."""
    if isinstance(block, int):
        return hex(block)
    if block.startswith("0x") and len(block) == 66:
        return {"blockHash": block}
    return block


_hex = decode.hex_string
_get = decode.field


@dataclass(frozen=True, slots=True)
class Head:
    """A block header as far as the keeper cares: where it is and what it builds on."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    base_fee: int | None  # None before London (and on some L2s)

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> Head:
        """Parse a header or block object from newHeads / eth_getBlockByNumber."""
        block = decode.mapping(block, "a block")
        base_fee = block.get("baseFeePerGas")
        return cls(
            number=hex_to_int(_get(block, "number", "block"), "number"),
            hash=_hex(_get(block, "hash", "block"), "hash"),
            parent_hash=_hex(_get(block, "parentHash", "block"), "parentHash"),
            timestamp=hex_to_int(_get(block, "timestamp", "block"), "timestamp"),
            base_fee=None if base_fee is None else hex_to_int(base_fee, "baseFeePerGas"),
        )


@dataclass(frozen=True, slots=True)
class Block:
    """A block with its header fields and the hashes of its transactions."""

    head: Head
    gas_limit: int
    gas_used: int
    miner: str
    transactions: tuple[str, ...]

    @property
    def number(self) -> int:
        return self.head.number

    @property
    def hash(self) -> str:
        return self.head.hash

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> Block:
        """Parse an eth_getBlockByNumber(..., false) result."""
        head = Head.from_json(block)
        txs = decode.sequence(block.get("transactions") or [], "transactions")
        return cls(
            head=head,
            gas_limit=hex_to_int(_get(block, "gasLimit", "block"), "gasLimit"),
            gas_used=hex_to_int(_get(block, "gasUsed", "block"), "gasUsed"),
            miner=_hex(_get(block, "miner", "block"), "miner"),
            # With full transactions requested these are objects; keep only their hashes.
            transactions=tuple(
                _hex(t["hash"] if isinstance(t, Mapping) else t, "transactions") for t in txs
            ),
        )


@dataclass(frozen=True, slots=True)
class Log:
    """One event log. ``removed`` is True when a node reports it was reorged out."""

    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    removed: bool = False

    @property
    def key(self) -> tuple[int, int]:
        """Position in the chain: sorts logs in execution order."""
        return (self.block_number, self.log_index)

    @classmethod
    def from_json(cls, log: Mapping[str, Any]) -> Log:
        """Parse an eth_getLogs item or a logs subscription notification."""
        log = decode.mapping(log, "a log")
        return cls(
            address=_hex(_get(log, "address", "log"), "address"),
            topics=tuple(_hex(t, "topics") for t in decode.sequence(_get(log, "topics", "log"),
                                                                     "topics")),
            data=decode.data(_get(log, "data", "log"), "data"),
            block_number=hex_to_int(_get(log, "blockNumber", "log"), "blockNumber"),
            block_hash=_hex(_get(log, "blockHash", "log"), "blockHash"),
            tx_hash=_hex(_get(log, "transactionHash", "log"), "transactionHash"),
            log_index=hex_to_int(_get(log, "logIndex", "log"), "logIndex"),
            removed=bool(log.get("removed", False)),
        )


@dataclass(frozen=True, slots=True)
class Reorg:
    """Our chain lost its last ``depth`` blocks; everything above ``common_ancestor`` is void.

    Consumers roll back to ``common_ancestor.number``; the new canonical heads follow this event
    in order, starting at ``common_ancestor.number + 1``.
    """

    common_ancestor: Head
    depth: int
    old_tip: Head


ChainEvent = Head | Reorg
"""What a head follower yields: the next canonical head, or a notice to roll back first."""


@dataclass(frozen=True, slots=True)
class PendingTx:
    """A transaction in the mempool (one a backrun must follow in the same block)."""

    tx_hash: str
    sender: str
    to: str
    data: bytes
    value: int
    gas: int
    fees: Fees

    @classmethod
    def from_rpc(cls, tx: dict[str, Any]) -> PendingTx:
        """From an ``eth_getTransactionByHash`` answer (EIP-1559 or legacy)."""
        if tx.get("maxFeePerGas") is not None:
            fees = Fees(hex_to_int(tx["maxFeePerGas"], "maxFeePerGas"),
                        hex_to_int(tx["maxPriorityFeePerGas"], "maxPriorityFeePerGas"))
        else:
            # A legacy gas price is both the cap and the tip.
            price = hex_to_int(tx["gasPrice"], "gasPrice")
            fees = Fees(price, price)
        data = str(tx.get("input") or tx.get("data") or "0x")
        return cls(tx_hash=str(tx["hash"]).lower(), sender=str(tx["from"]).lower(),
                   to=str(tx["to"]).lower(), data=bytes.fromhex(data[2:]),
                   value=hex_to_int(tx.get("value", "0x0"), "value"),
                   gas=hex_to_int(tx["gas"], "gas"), fees=fees)

    def call(self) -> dict[str, Any]:
        """As an ``eth_simulateV1`` call (no fee fields: the simulation does not charge them)."""
        return {"from": self.sender, "to": self.to, "input": "0x" + self.data.hex(),
                "value": hex(self.value), "gas": hex(self.gas)}
