"""Typed decoders for what a node sends: quantities, data, hashes, block headers, receipts,
transactions and logs.

Every value from the wire passes one of these before the rest of the keeper sees it. A value of
the wrong type (an int where a hex string belongs, null where a block belongs, a list for an
object) raises ``RpcMalformedReply``: an ``RpcError``, so a read is retried and a task goes on,
instead of a ``TypeError`` deep inside the book ending the process.

The ``check_*`` functions validate the JSON in place (callers keep the node's own shapes); the
``quantity`` / ``data`` / ``hash32`` decoders also return the decoded value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from keeper.errors import RpcMalformedReply

# A compiled regex checks a whole value in C: a per-character generator cost 3.7 s of a 4.8 s
# backfill of 18k logs (31M calls), and a check through helper layers twice a regex's time (a
# receipt of one of our batches, ~90 logs: 708 us, ~345 us with one regex a value).
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_HASH = re.compile(r"0[xX][0-9a-fA-F]{64}")
_QUANTITY = re.compile(r"0[xX][0-9a-fA-F]{1,64}")


def quantity(value: object, field: str = "value") -> int:
    """A JSON-RPC quantity (``"0x1a"``) as an int."""
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        return int(value, 16)
    raise RpcMalformedReply(f"malformed quantity for {field}: {_show(value)}")


def data(value: object, field: str = "value") -> str:
    """Unformatted data (``"0x"`` and an even number of hex digits), lowercased."""
    if isinstance(value, str) and len(value) % 2 == 0 and _HEX.fullmatch(value):
        return value.lower()
    raise RpcMalformedReply(f"malformed data for {field}: {_show(value)}")


def hex_string(value: object, field: str = "value") -> str:
    """Any ``0x`` hex string (a hash, an address, data), lowercased."""
    if isinstance(value, str) and _HEX.fullmatch(value):
        return value.lower()
    raise RpcMalformedReply(f"malformed hex string for {field}: {_show(value)}")


def hash32(value: object, field: str = "hash") -> str:
    """A 32-byte hash (``0x`` and 64 hex digits), lowercased."""
    if isinstance(value, str) and _HASH.fullmatch(value):
        return value.lower()
    raise RpcMalformedReply(f"malformed hash for {field}: {_show(value)}")


def mapping(value: object, what: str) -> Mapping[str, Any]:
    """A JSON object."""
    if isinstance(value, Mapping):
        return value
    raise RpcMalformedReply(f"expected {what} object, got {type(value).__name__}")


def sequence(value: object, what: str) -> list[Any]:
    """A JSON array."""
    if isinstance(value, list):
        return value
    raise RpcMalformedReply(f"expected a list of {what}, got {type(value).__name__}")


def field(obj: Mapping[str, Any], key: str, what: str) -> Any:
    """``obj[key]``, or ``RpcMalformedReply`` naming what lacks it."""
    try:
        return obj[key]
    except KeyError:
        raise RpcMalformedReply(f"{what} without {key!r}") from None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---- whole objects (validated, returned as they came) ------------------------------------

_HEADER_QUANTITIES = ("number", "timestamp", "gasLimit", "gasUsed")


def check_block(value: object, *, pending: bool = False) -> Mapping[str, Any]:
    """A block or header object; ``pending``: the pending block, whose hash may be null."""
    block = mapping(value, "a block")
    for key in _HEADER_QUANTITIES:
        quantity(field(block, key, "block"), key)
    for key in ("hash", "parentHash"):
        got = field(block, key, "block")
        if not (pending and got is None):
            hash32(got, key)
    if block.get("baseFeePerGas") is not None:
        quantity(block["baseFeePerGas"], "baseFeePerGas")
    txs = sequence(block.get("transactions", []), "transactions")
    for tx in txs:
        if isinstance(tx, Mapping):
            check_transaction(tx)
        else:
            hash32(tx, "transactions")
    return block


def check_log(value: object) -> Mapping[str, Any]:
    """An event log object."""
    log = mapping(value, "a log")
    if _well_formed_log(log):
        return log
    # Something is off: the checks one by one name the field at fault.
    hex_string(field(log, "address", "log"), "address")
    for topic in sequence(field(log, "topics", "log"), "topics"):
        hash32(topic, "topics")
    data(field(log, "data", "log"), "data")
    # Pending logs carry nulls here; the keeper only reads mined ones, but must not choke.
    for key in ("blockNumber", "logIndex"):
        if (got := log.get(key)) is not None:
            quantity(got, key)
    for key in ("blockHash", "transactionHash"):
        if (got := log.get(key)) is not None:
            hash32(got, key)
    return log


def _well_formed_log(log: Mapping[str, Any]) -> bool:
    """True when every field ``check_log`` checks is well formed, in one expression with no
    helper calls: our receipts' logs are checked on every read of a receipt (a batch of ten
    liquidations has ~90), and the checks one by one took ~11.7 us a log here, ~7.5 us this way.
    False for anything else (a value of another type included): then the slow path raises."""
    try:
        block_number, index = log.get("blockNumber"), log.get("logIndex")
        block_hash, tx_hash = log.get("blockHash"), log.get("transactionHash")
        topics, payload = log["topics"], log["data"]
        return bool(
            _HEX.fullmatch(log["address"])
            and isinstance(topics, list) and all(map(_HASH.fullmatch, topics))
            and len(payload) % 2 == 0 and _HEX.fullmatch(payload)
            and (block_number is None or _QUANTITY.fullmatch(block_number))
            and (index is None or _QUANTITY.fullmatch(index))
            and (block_hash is None or _HASH.fullmatch(block_hash))
            and (tx_hash is None or _HASH.fullmatch(tx_hash)))
    except (KeyError, TypeError):
        return False


def check_receipt(value: object) -> Mapping[str, Any]:
    """A transaction receipt."""
    receipt = mapping(value, "a receipt")
    hash32(field(receipt, "transactionHash", "receipt"), "transactionHash")
    hash32(field(receipt, "blockHash", "receipt"), "blockHash")
    for key in ("blockNumber", "gasUsed", "status"):
        quantity(field(receipt, key, "receipt"), key)
    if receipt.get("effectiveGasPrice") is not None:
        quantity(receipt["effectiveGasPrice"], "effectiveGasPrice")
    for log in sequence(receipt.get("logs", []), "logs"):
        check_log(log)
    return receipt


def check_transaction(value: object) -> Mapping[str, Any]:
    """A transaction object (eth_getTransactionByHash, full blocks)."""
    tx = mapping(value, "a transaction")
    hash32(field(tx, "hash", "transaction"), "hash")
    quantity(field(tx, "nonce", "transaction"), "nonce")
    hex_string(field(tx, "from", "transaction"), "from")
    if tx.get("blockNumber") is not None:
        quantity(tx["blockNumber"], "blockNumber")
    for key in ("gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value"):
        if tx.get(key) is not None:
            quantity(tx[key], key)
    for key in ("input", "data"):
        if tx.get(key) is not None:
            data(tx[key], key)
    return tx


def check_logs(value: object) -> list[Any]:
    """An eth_getLogs result: a list of logs (null is not an empty list)."""
    logs = sequence(value, "logs")
    for log in logs:
        check_log(log)
    return logs


def check_fee_history(value: object) -> Mapping[str, Any]:
    """An eth_feeHistory result."""
    history = mapping(value, "a fee history")
    quantity(field(history, "oldestBlock", "fee history"), "oldestBlock")
    for fee in sequence(field(history, "baseFeePerGas", "fee history"), "baseFeePerGas"):
        quantity(fee, "baseFeePerGas")
    for row in sequence(history.get("reward", []), "reward"):
        for reward in sequence(row, "reward"):
            quantity(reward, "reward")
    return history
