"""Flights in the air that ask for their receipts in one turn of the event loop share one
batch and one nonce read; each hears its own answer, or the error that stands in for it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keeper.errors import RpcError, RpcResponseError
from keeper.exec.reads import ChainReads
from keeper.obs.metrics import Metrics

ACCOUNT = "0x" + "aa" * 20


class Node:
    def __init__(self, mined: dict[str, int], nonce: int, fail: Exception | None = None) -> None:
        self.mined = mined  # tx hash -> block
        self.nonce = nonce
        self.fail = fail
        self.batches: list[list[tuple[str, list[Any]]]] = []

    async def call(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("only batches expected")

    async def batch(self, calls: list[tuple[str, list[Any]]], **_: Any) -> list[Any]:
        self.batches.append(calls)
        if self.fail is not None:
            raise self.fail
        out: list[Any] = []
        for method, params in calls:
            if method == "eth_getTransactionCount":
                out.append(hex(self.nonce))
            elif params[0] == "0xbad":
                out.append(RpcResponseError("eth_getTransactionReceipt", -32000, "boom"))
            elif params[0] in self.mined:
                out.append({"transactionHash": params[0], "blockHash": "0xb",
                            "blockNumber": hex(self.mined[params[0]])})
            else:
                out.append(None)
        return out


def reads(node: Node) -> ChainReads:
    return ChainReads(node, ACCOUNT, Metrics(), timeout=1.0, poll_interval=0.1)  # type: ignore[arg-type]


async def test_flights_asking_together_share_one_batch() -> None:
    node = Node({"0x1": 7, "0x3b": 8}, nonce=12)
    r = reads(node)
    one, two, three = await asyncio.gather(
        r.receipt_and_nonce(["0x1"]), r.receipt_and_nonce(["0x2"]),
        r.receipt_and_nonce(["0x3a", "0x3b", "0x1"]))
    assert len(node.batches) == 1
    methods = [m for m, _ in node.batches[0]]
    # One mined count and one pending count (where the node's pool of ours ends) a round.
    assert [p[1] for m, p in node.batches[0] if m == "eth_getTransactionCount"] == [
        "latest", "pending"]
    assert r.pending_nonce == 12
    assert methods.count("eth_getTransactionReceipt") == 4  # 0x1 asked twice, read once
    assert one[0] is not None and one[0]["blockNumber"] == hex(7) and one[1] == 12
    assert two == (None, 12)
    assert three[0] is not None and three[0]["transactionHash"] == "0x3b"
    # A later turn of the loop is a new round.
    assert await r.receipt_and_nonce(["0x2"]) == (None, 12)
    assert len(node.batches) == 2


async def test_a_failed_read_reaches_only_the_flight_that_asked_it() -> None:
    node = Node({"0x1": 7}, nonce=3)
    r = reads(node)
    answers: list[Any] = await asyncio.gather(r.receipt_and_nonce(["0x1"]),
                                              r.receipt_and_nonce(["0xbad"]),
                                              return_exceptions=True)
    good, bad = answers
    assert isinstance(good, tuple) and good[1] == 3
    assert isinstance(bad, RpcResponseError)


async def test_a_transport_error_reaches_every_flight_of_the_round() -> None:
    node = Node({}, nonce=0, fail=RpcError("connection refused"))
    r = reads(node)
    answers = await asyncio.gather(r.receipt_and_nonce(["0x1"]), r.receipt_and_nonce(["0x2"]),
                                   return_exceptions=True)
    assert all(isinstance(a, RpcError) for a in answers)
    node.fail = None
    assert await r.receipt_and_nonce(["0x1"]) == (None, 0)  # the next round reads again


async def test_a_flight_cancelled_while_waiting_does_not_break_the_round() -> None:
    node = Node({"0x1": 5}, nonce=9)
    r = reads(node)
    gone = asyncio.ensure_future(r.receipt_and_nonce(["0x2"]))
    kept = asyncio.ensure_future(r.receipt_and_nonce(["0x1"]))
    await asyncio.sleep(0)
    gone.cancel()
    result = await kept
    assert result[0] is not None and result[1] == 9
    with pytest.raises(asyncio.CancelledError):
        await gone
