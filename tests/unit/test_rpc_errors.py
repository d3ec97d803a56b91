"""The error taxonomy: which node answers are transient (retried, never a breaker's business)
and which are answers about the request; per-call retries inside a batch of reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from keeper.chain.pool import RpcPool
from keeper.chain.replies import is_too_many_results, response_error
from keeper.chain.retry import RetryingRpc, RetryPolicy, is_transport_error
from keeper.chain.rpc import JsonParams
from keeper.errors import (
    ExecutionReverted,
    RpcError,
    RpcErrorReply,
    RpcMalformedReply,
    RpcNotAvailable,
    RpcResponseError,
    RpcTimeout,
)

FAST = RetryPolicy(attempts=4, initial=0.0, max_wait=0.0, total=5.0)


@pytest.mark.parametrize("error, kind", [
    ({"code": -32000, "message": "fault proxy: injected error (overloaded)"}, RpcErrorReply),
    ({"code": -32005, "message": "daily request count exceeded, request rate limited"},
     RpcErrorReply),
    ({"code": -32603, "message": "internal error"}, RpcErrorReply),
    ({"code": -32000, "message": "header not found"}, RpcErrorReply),
    ({"code": 429, "message": "Too Many Requests"}, RpcErrorReply),
    ({"message": "no code at all"}, RpcErrorReply),
    ({"code": 3, "message": "execution reverted", "data": "0x08c379a0"}, ExecutionReverted),
    ({"code": -32000, "message": "execution reverted"}, ExecutionReverted),
    ({"code": -32602, "message": "invalid argument 0: hex string"}, RpcResponseError),
    ({"code": -32601, "message": "the method eth_foo does not exist"}, RpcResponseError),
    ({"code": -32000, "message": "nonce too low"}, RpcResponseError),
    ({"code": -32000, "message": "insufficient funds for gas * price + value"}, RpcResponseError),
    ({"code": -32000, "message": "already known"}, RpcResponseError),
    ({"code": -32003, "message": "invalid chain id for signer"}, RpcResponseError),
    ({"code": -32603, "message": "EVM error OutOfGas"}, RpcResponseError),
    # revm's halt when an SSTORE finds 2,300 gas or less left: a gas limit too low, definite
    ({"code": -32603, "message": "EVM error ReentrancySentryOOG"}, RpcResponseError),
])
def test_error_objects_are_classified_in_one_place(error: dict[str, Any], kind: type) -> None:
    exc = response_error("eth_call", error)
    assert type(exc) is kind
    transient = kind is RpcErrorReply
    assert is_transport_error(exc) is transient
    assert isinstance(exc, RpcError) is transient
    assert isinstance(exc, RpcResponseError)  # callers reading code / rpc_message still can


def test_too_many_logs_is_an_answer_only_for_get_logs() -> None:
    msg = {"code": -32005, "message": "query returned more than 10000 results"}
    exc = response_error("eth_getLogs", msg)
    assert type(exc) is RpcResponseError and is_too_many_results(exc)


def test_a_malformed_error_object_is_still_an_error() -> None:
    exc = response_error("eth_call", "junk")
    assert isinstance(exc, RpcErrorReply)
    assert response_error("eth_call", {"code": "x", "message": 5}).code == 0


def test_kinds_label_the_metric() -> None:
    assert RpcError("x").kind == "connection"
    assert RpcTimeout("x").kind == "timeout"
    assert RpcMalformedReply("x").kind == "malformed"
    assert RpcNotAvailable("x").kind == "not_available"
    assert RpcErrorReply("eth_call", -32000, "busy").kind == "error_reply"


class PerCall:
    """A fake node answering each call from a script: method -> answers in order."""

    def __init__(self, script: dict[str, list[Any]]) -> None:
        self.script = {m: list(a) for m, a in script.items()}
        self.batches: list[list[str]] = []

    def _answer(self, method: str) -> Any:
        return self.script[method].pop(0)

    async def call(self, method: str, params: JsonParams = (), *,
                   timeout: float | None = None) -> Any:
        answer = self._answer(method)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def batch(self, calls: Sequence[tuple[str, JsonParams]], *,
                    timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        self.batches.append([m for m, _ in calls])
        out = [self._answer(m) for m, _ in calls]
        if not return_exceptions:
            for o in out:
                if isinstance(o, BaseException):
                    raise o
        return out


def busy(method: str) -> RpcErrorReply:
    return RpcErrorReply(method, -32000, "overloaded")


async def test_only_the_failed_calls_of_a_batch_of_reads_are_sent_again() -> None:
    node = PerCall({"eth_call": ["0x01", busy("eth_call")], "eth_getBalance": [
        RpcMalformedReply("junk"), "0x5"], "eth_blockNumber": ["0x9"]})
    node.script["eth_call"].append("0x02")
    seen: list[tuple[str, str]] = []
    pool = RpcPool.of([("a", node)], retry=FAST)
    pool.on_error = lambda method, exc: seen.append((method, exc.kind))
    got = await pool.batch([("eth_call", []), ("eth_call", []), ("eth_getBalance", []),
                            ("eth_blockNumber", [])])
    assert got == ["0x01", "0x02", "0x5", "0x9"]
    assert node.batches == [["eth_call", "eth_call", "eth_getBalance", "eth_blockNumber"],
                            ["eth_call", "eth_getBalance"]]
    assert seen == [("eth_call", "error_reply"), ("eth_getBalance", "malformed")]


async def test_definite_answers_in_a_batch_are_kept_not_retried() -> None:
    revert = ExecutionReverted("eth_call", 3, "execution reverted")
    node = PerCall({"eth_call": [revert], "eth_blockNumber": ["0x9"]})
    rpc = RetryingRpc(node, FAST)
    got = await rpc.batch([("eth_call", []), ("eth_blockNumber", [])], return_exceptions=True)
    assert got == [revert, "0x9"] and len(node.batches) == 1
    node = PerCall({"eth_call": [revert], "eth_blockNumber": ["0x9"]})
    with pytest.raises(ExecutionReverted):
        await RetryingRpc(node, FAST).batch([("eth_call", []), ("eth_blockNumber", [])])


async def test_a_batch_that_stays_transient_raises_after_the_policy() -> None:
    node = PerCall({"eth_call": [busy("eth_call")] * 4})
    with pytest.raises(RpcErrorReply):
        await RetryingRpc(node, FAST).batch([("eth_call", [])], return_exceptions=True)
    assert len(node.batches) == 4


async def test_a_batch_with_a_write_is_sent_once() -> None:
    node = PerCall({"eth_sendRawTransaction": [busy("eth_sendRawTransaction")],
                    "eth_blockNumber": ["0x1"]})
    got = await RpcPool.of([("a", node)], retry=FAST).batch(
        [("eth_sendRawTransaction", []), ("eth_blockNumber", [])], return_exceptions=True)
    assert isinstance(got[0], RpcErrorReply) and got[1] == "0x1" and len(node.batches) == 1


async def test_an_error_reply_to_a_read_is_retried() -> None:
    node = PerCall({"eth_blockNumber": [busy("eth_blockNumber"), RpcMalformedReply("x"), "0x7"]})
    assert await RpcPool.of([("a", node)], retry=FAST).call("eth_blockNumber") == "0x7"
