"""The typed decoders and the per-method reply checks: wrong types are ``RpcMalformedReply``
(an ``RpcError``, so transient), never a ``TypeError`` further in."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain import decode
from keeper.chain.replies import check_result
from keeper.chain.types import Head, Log, hex_to_int
from keeper.errors import RpcError, RpcMalformedReply

H = "0x" + "ab" * 32
BLOCK: dict[str, Any] = {
    "number": "0x10", "hash": H, "parentHash": "0x" + "cd" * 32, "timestamp": "0x64",
    "gasLimit": "0x1c9c380", "gasUsed": "0x0", "baseFeePerGas": "0x7", "transactions": [H],
}
LOG: dict[str, Any] = {
    "address": "0x" + "11" * 20, "topics": [H], "data": "0x", "blockNumber": "0x10",
    "blockHash": H, "transactionHash": H, "logIndex": "0x0", "removed": False,
}
RECEIPT: dict[str, Any] = {
    "transactionHash": H, "blockHash": H, "blockNumber": "0x10", "gasUsed": "0x5208",
    "status": "0x1", "effectiveGasPrice": "0x7", "logs": [LOG],
}
TX: dict[str, Any] = {"hash": H, "nonce": "0x0", "from": "0x" + "22" * 20, "blockNumber": None,
                      "gas": "0x5208", "input": "0x"}


def test_quantity() -> None:
    assert decode.quantity("0x1a") == 26
    assert decode.quantity("0X0") == 0
    assert hex_to_int is decode.quantity
    for bad in (26, None, "", "0x", "1a", "0xzz", ["0x1"], {"result": "0x1"}, True, "0x" + "f" * 65):
        with pytest.raises(RpcMalformedReply):
            decode.quantity(bad)


def test_data_and_hashes() -> None:
    assert decode.data("0xABcd") == "0xabcd"
    assert decode.data("0x") == "0x"
    for bad in ("0xabc", "abcd", 12, None, ["0x"]):
        with pytest.raises(RpcMalformedReply):
            decode.data(bad)
    assert decode.hash32(H) == H
    with pytest.raises(RpcMalformedReply):
        decode.hash32("0x" + "ab" * 31)


def test_a_malformed_reply_is_a_transient_rpc_error() -> None:
    err = RpcMalformedReply("x")
    assert isinstance(err, RpcError) and err.kind == "malformed"


@given(st.one_of(st.none(), st.integers(), st.booleans(), st.floats(allow_nan=False),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                     st.integers(), max_size=2)))
def test_wrong_types_never_escape_as_builtin_errors(value: object) -> None:
    for method, params in (("eth_blockNumber", []), ("eth_call", [{}, "latest"]),
                           ("eth_getLogs", [{}]), ("eth_getBlockByNumber", ["latest", False]),
                           ("eth_getTransactionCount", ["0x0", "latest"]),
                           ("eth_sendRawTransaction", ["0x00"]), ("eth_feeHistory", [])):
        if method == "eth_getLogs" and value == []:
            continue  # no logs: a real answer
        with pytest.raises(RpcMalformedReply):
            check_result(method, params, value)


@pytest.mark.parametrize("method, params, good", [
    ("eth_blockNumber", [], "0x10"),
    ("eth_call", [{}, "latest"], "0x" + "00" * 32),
    ("eth_getBlockByNumber", ["latest", False], BLOCK),
    ("eth_getBlockByNumber", ["0x99", False], None),  # not mined yet: a real answer
    ("eth_getBlockByHash", [H, False], None),
    ("eth_getTransactionReceipt", [H], RECEIPT),
    ("eth_getTransactionReceipt", [H], None),  # pending
    ("eth_getTransactionByHash", [H], TX),
    ("eth_getLogs", [{}], [LOG]),
    ("eth_getLogs", [{}], []),
    ("eth_sendRawTransaction", ["0x00"], H),
    ("eth_feeHistory", [], {"oldestBlock": "0x1", "baseFeePerGas": ["0x1"], "reward": [["0x1"]]}),
    ("debug_traceCall", [], {"gasUsed": "0x5208"}),
    ("anvil_mine", [], None),  # no check for methods the keeper does not decode
])
def test_well_typed_replies_pass_unchanged(method: str, params: list[Any], good: object) -> None:
    assert check_result(method, params, good) is good


@pytest.mark.parametrize("method, params, junk", [
    ("eth_getBlockByNumber", ["latest", False], None),  # the node always has a latest block
    ("eth_getBlockByNumber", ["latest", False], [BLOCK]),
    ("eth_getBlockByNumber", ["latest", False], BLOCK | {"number": 16}),
    ("eth_getBlockByNumber", ["latest", False], {k: v for k, v in BLOCK.items() if k != "hash"}),
    ("eth_getTransactionReceipt", [H], "0x"),
    ("eth_getTransactionReceipt", [H], RECEIPT | {"status": 1}),
    ("eth_getTransactionReceipt", [H], RECEIPT | {"logs": [LOG | {"topics": "x"}]}),
    ("eth_getLogs", [{}], {"items": [LOG]}),
    ("eth_getLogs", [{}], [LOG | {"data": None}]),
    ("eth_getTransactionByHash", [H], [TX]),
])
def test_wrong_typed_replies_are_malformed(method: str, params: list[Any], junk: object) -> None:
    with pytest.raises(RpcMalformedReply, match=method):
        check_result(method, params, junk)


def test_the_pending_block_may_have_no_hash() -> None:
    pending = BLOCK | {"hash": None}
    assert check_result("eth_getBlockByNumber", ["pending", False], pending) is pending
    with pytest.raises(RpcMalformedReply):
        check_result("eth_getBlockByNumber", ["latest", False], pending)


def test_typed_chain_data_raise_malformed() -> None:
    assert Head.from_json(BLOCK).number == 16
    assert Log.from_json(LOG).log_index == 0
    with pytest.raises(RpcMalformedReply):
        Head.from_json([BLOCK])  # type: ignore[arg-type]
    with pytest.raises(RpcMalformedReply):
        Log.from_json(LOG | {"topics": 5})


@pytest.mark.parametrize("key, bad", [
    ("address", "11" * 20), ("address", "0x1g"), ("address", 17),
    ("topics", [H[:-2]]), ("topics", [H, None]), ("topics", [H.upper().replace("X", "y")]),
    ("data", "0x1"), ("data", "0xzz"), ("data", None),
    ("blockNumber", "0x"), ("blockNumber", "0x" + "1" * 65), ("blockNumber", 16),
    ("logIndex", "10"), ("blockHash", H + "00"), ("transactionHash", "0x" + "g" * 64),
    # Other types where a string belongs (the one-expression check of a well-formed log must
    # pass them to the checks that name the field).
    ("address", b"0x00"), ("topics", H), ("data", b"0x00"), ("data", ["0x", "00"]),
    ("blockHash", 5),
])
def test_every_field_of_a_log_is_checked(key: str, bad: object) -> None:
    # Each field of a log goes through its decoder (one regex a value): a malformed one is
    # refused, and the error names the field.
    with pytest.raises(RpcMalformedReply, match=key):
        decode.check_log(LOG | {key: bad})
    assert decode.check_log(LOG | {"address": "0X" + "AB" * 20, "topics": [H.upper()[0] + "x"
                                   + H[2:].upper()], "blockNumber": None}) is not None
