"""Range chunking and adaptive splitting of eth_getLogs, against a fake node with a result cap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.logs import (
    chunk_ranges,
    get_block_logs,
    get_logs,
    is_too_many_results,
    log_filter,
    split_range,
)
from keeper.chain.types import Log
from keeper.errors import RpcError, RpcResponseError

ADDR = "0x" + "11" * 20
TOPIC = "0x" + "22" * 32


def raw_log(block: int, index: int) -> dict[str, Any]:
    return {"address": ADDR, "topics": [TOPIC], "data": "0x" + f"{block:064x}",
            "blockNumber": hex(block), "blockHash": "0x" + f"{block:064x}",
            "transactionHash": "0x" + f"{block * 1000 + index:064x}", "logIndex": hex(index),
            "removed": False}


class CappedNode:
    """Serves eth_getLogs from ``per_block`` log counts; refuses answers above ``cap``."""

    def __init__(self, per_block: Sequence[int], cap: int,
                 message: str = "query returned more than 10000 results", code: int = -32005) -> None:
        self.logs = [raw_log(b, i) for b, n in enumerate(per_block) for i in range(n)]
        self.cap = cap
        self.message = message
        self.code = code
        self.ranges: list[tuple[int, int]] = []

    async def call(self, method: str, params: Sequence[Any] = (), *, timeout: float | None = None) -> Any:
        assert method == "eth_getLogs"
        flt = params[0]
        if "blockHash" in flt:
            return [lg for lg in self.logs if lg["blockHash"] == flt["blockHash"]]
        lo, hi = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        self.ranges.append((lo, hi))
        found = [lg for lg in self.logs if lo <= int(lg["blockNumber"], 16) <= hi]
        if len(found) > self.cap:
            raise RpcResponseError(method, self.code, self.message)
        return list(reversed(found))  # out of order on purpose: get_logs sorts

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, timeout: float | None = None,
                    return_exceptions: bool = False) -> list[Any]:
        raise AssertionError("not used")


@given(st.integers(0, 10_000), st.integers(0, 500), st.integers(1, 300))
def test_chunk_ranges_cover_the_range_exactly_once(lo: int, length: int, size: int) -> None:
    hi = lo + length
    ranges = chunk_ranges(lo, hi, size)
    blocks = [b for a, z in ranges for b in range(a, z + 1)]
    assert blocks == list(range(lo, hi + 1))
    assert all(z - a + 1 <= size for a, z in ranges)


@given(st.integers(0, 10_000), st.integers(1, 500))
def test_split_range_halves(lo: int, length: int) -> None:
    (a, b), (c, d) = split_range(lo, lo + length)
    assert a == lo and d == lo + length and c == b + 1 and abs((b - a) - (d - c)) <= 1


def test_split_single_block_refused() -> None:
    with pytest.raises(ValueError):
        split_range(5, 5)


@pytest.mark.parametrize("message", [
    "query returned more than 10000 results",
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
    "exceed maximum block range: 5000",
    "too many logs",
    "response is too big",
])
def test_too_many_results_wordings(message: str) -> None:
    assert is_too_many_results(RpcResponseError("eth_getLogs", -32000, message))


def test_other_errors_are_not_too_many() -> None:
    assert not is_too_many_results(RpcResponseError("eth_getLogs", -32602, "invalid argument 0: hex string"))


@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.integers(6, 30), st.integers(1, 64))
async def test_adaptive_split_returns_every_log_once_in_order(per_block: list[int], cap: int, chunk: int) -> None:
    node = CappedNode(per_block, cap)
    logs = await get_logs(node, ADDR, [TOPIC], 0, len(per_block) - 1, chunk=chunk)
    assert [lg.key for lg in logs] == [(int(r["blockNumber"], 16), int(r["logIndex"], 16)) for r in node.logs]
    assert all(isinstance(lg, Log) for lg in logs)


async def test_a_single_block_over_the_cap_raises() -> None:
    node = CappedNode([0, 9, 0], cap=5)
    with pytest.raises(RpcResponseError):
        await get_logs(node, ADDR, None, 0, 2, chunk=3)
    assert node.ranges[-1] == (1, 1)


async def test_other_response_errors_are_not_split() -> None:
    node = CappedNode([9, 9], cap=1, message="invalid params", code=-32602)
    with pytest.raises(RpcResponseError):
        await get_logs(node, ADDR, None, 0, 1)
    assert node.ranges == [(0, 1)]


async def test_block_logs_by_hash() -> None:
    node = CappedNode([1, 3], cap=100)
    logs = await get_block_logs(node, "0x" + f"{1:064x}", ADDR, None)
    assert [lg.log_index for lg in logs] == [0, 1, 2] and logs[0].block_number == 1


def test_log_filter_shapes() -> None:
    assert log_filter([ADDR], [TOPIC, None, [TOPIC, TOPIC]], from_block=1, to_block=16) == {
        "address": [ADDR], "topics": [TOPIC, None, [TOPIC, TOPIC]], "fromBlock": "0x1", "toBlock": "0x10"}
    assert log_filter(None, None, block_hash="0xab") == {"blockHash": "0xab"}


def test_log_parsing_rejects_malformed() -> None:
    bad = raw_log(1, 0)
    del bad["logIndex"]
    with pytest.raises(RpcError):
        Log.from_json(bad)
