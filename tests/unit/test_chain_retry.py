"""Retry allow-list and failover rules, with scripted fake endpoints (no network)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from keeper.chain.pool import RpcPool
from keeper.chain.retry import (
    IDEMPOTENT_METHODS,
    NO_RETRY,
    RetryingRpc,
    RetryPolicy,
    all_idempotent,
    is_idempotent,
    is_transport_error,
)
from keeper.errors import ConfigError, ExecutionReverted, RpcError, RpcResponseError, RpcTimeout

FAST = RetryPolicy(attempts=4, initial=0.001, max_wait=0.002, total=2.0)


class Scripted:
    """Answers from a script: each entry is a result or an exception to raise."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[str] = []

    async def call(self, method: str, params: Sequence[Any] = (), *, timeout: float | None = None) -> Any:
        self.calls.append(method)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, timeout: float | None = None,
                    return_exceptions: bool = False) -> list[Any]:
        return [await self.call(m, p) for m, p in calls]


def test_allow_list_has_reads_and_no_writes() -> None:
    for m in ("eth_call", "eth_getBlockByNumber", "eth_getLogs", "eth_blockNumber", "eth_getBalance",
              "eth_getTransactionCount", "eth_getTransactionReceipt", "eth_chainId", "eth_getCode",
              "eth_getStorageAt", "eth_feeHistory", "eth_gasPrice", "eth_maxPriorityFeePerGas",
              "eth_estimateGas"):
        assert is_idempotent(m)
    for m in ("eth_sendRawTransaction", "eth_sendTransaction", "eth_subscribe", "eth_newFilter",
              "anvil_mine", "evm_snapshot", "personal_sign"):
        assert not is_idempotent(m)
    assert all(not m.startswith(("eth_send", "anvil_", "evm_")) for m in IDEMPOTENT_METHODS)
    assert all_idempotent(["eth_call", "eth_chainId"])
    assert not all_idempotent(["eth_call", "eth_sendRawTransaction"])


def test_only_transport_errors_are_retryable() -> None:
    assert is_transport_error(RpcError("refused"))
    assert is_transport_error(RpcTimeout("slow"))
    assert not is_transport_error(ExecutionReverted("eth_call", 3, "execution reverted"))
    assert not is_transport_error(RpcResponseError("eth_call", -32602, "invalid params"))
    assert not is_transport_error(ValueError("x"))


async def test_reads_are_retried_on_transport_errors() -> None:
    node = Scripted(RpcError("a"), RpcTimeout("b"), "0x10")
    assert await RetryingRpc(node, FAST).call("eth_blockNumber") == "0x10"
    assert node.calls == ["eth_blockNumber"] * 3


async def test_retries_are_bounded() -> None:
    node = Scripted(RpcError("down"))
    with pytest.raises(RpcError, match="down"):
        await RetryingRpc(node, FAST).call("eth_call", [{}, "latest"])
    assert len(node.calls) == FAST.attempts


async def test_total_time_bounds_retries() -> None:
    node = Scripted(RpcError("down"))
    policy = RetryPolicy(attempts=1000, initial=0.01, max_wait=0.01, total=0.05)
    with pytest.raises(RpcError):
        await RetryingRpc(node, policy).call("eth_call")
    assert 2 <= len(node.calls) < 20


async def test_reverts_and_writes_are_never_retried() -> None:
    node = Scripted(ExecutionReverted("eth_call", 3, "execution reverted"), "0x")
    with pytest.raises(ExecutionReverted):
        await RetryingRpc(node, FAST).call("eth_call")
    assert len(node.calls) == 1
    node = Scripted(RpcTimeout("maybe sent"), "0xhash")
    with pytest.raises(RpcTimeout):
        await RetryingRpc(node, FAST).call("eth_sendRawTransaction", ["0x02"])
    assert node.calls == ["eth_sendRawTransaction"]


async def test_batch_with_a_write_is_not_retried() -> None:
    node = Scripted(RpcError("x"), "ok")
    with pytest.raises(RpcError):
        await RetryingRpc(node, FAST).batch([("eth_call", []), ("eth_sendRawTransaction", ["0x"])])
    node = Scripted(RpcError("x"), "ok")
    assert await RetryingRpc(node, FAST).batch([("eth_call", []), ("eth_chainId", [])]) == ["ok", "ok"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_pool_fails_over_and_cools_down() -> None:
    clock = Clock()
    a, b = Scripted(RpcError("a down")), Scripted("0x1")
    pool = RpcPool.of([("a", a), ("b", b)], cooldown=10.0, retry=NO_RETRY, clock=clock)
    assert await pool.call("eth_blockNumber") == "0x1"
    assert a.calls == ["eth_blockNumber"] and pool.current.name == "b"
    # While a cools down, calls go straight to b.
    assert await pool.call("eth_chainId") == "0x1"
    assert a.calls == ["eth_blockNumber"]
    clock.now += 11
    a.script = ["0x2"]
    assert pool.current.name == "a"
    assert await pool.call("eth_blockNumber") == "0x2"


async def test_pool_sends_a_write_once_and_surfaces_the_failure() -> None:
    a, b = Scripted(RpcTimeout("a slow")), Scripted("0xhash")
    pool = RpcPool.of([("a", a), ("b", b)], retry=FAST, clock=Clock())
    with pytest.raises(RpcTimeout):
        await pool.call("eth_sendRawTransaction", ["0x02"])
    assert a.calls == ["eth_sendRawTransaction"] and b.calls == []
    # a is cooling down now, so the next write goes to b.
    assert await pool.call("eth_sendRawTransaction", ["0x03"]) == "0xhash"


async def test_pool_does_not_fail_over_on_node_answers() -> None:
    a, b = Scripted(ExecutionReverted("eth_call", 3, "execution reverted")), Scripted("0x")
    pool = RpcPool.of([("a", a), ("b", b)], retry=FAST, clock=Clock())
    with pytest.raises(ExecutionReverted):
        await pool.call("eth_call")
    assert b.calls == [] and pool.current.name == "a"


async def test_pool_retries_rounds_when_all_are_down() -> None:
    a, b = Scripted(RpcError("a"), RpcError("a"), "0xa"), Scripted(RpcError("b"))
    pool = RpcPool.of([("a", a), ("b", b)], retry=FAST, clock=Clock())
    assert await pool.call("eth_blockNumber") == "0xa"
    assert len(a.calls) == 3 and len(b.calls) == 2


def test_pool_needs_an_endpoint() -> None:
    with pytest.raises(ConfigError):
        RpcPool([])


def test_endpoint_urls_lose_their_credentials_in_logs_and_errors() -> None:
    from keeper.chain.rpc import HttpRpc, public_url

    key = "f00dfeedf00dfeedf00dfeedf00dfeed"
    assert public_url(f"https://eth.example.org/v3/{key}") == "https://eth.example.org/…"
    assert public_url(f"wss://user:{key}@node.example:8546/ws?token={key}") == \
        "wss://node.example:8546/…"
    assert public_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert key not in HttpRpc(f"https://eth.example.org/v3/{key}").label


async def test_a_failing_endpoint_error_does_not_carry_its_api_key() -> None:
    from keeper.chain.rpc import HttpRpc
    from keeper.devnet.anvil import free_port

    key = "0123456789abcdef0123456789abcdef"
    async with HttpRpc(f"http://127.0.0.1:{free_port()}/v3/{key}", timeout=2) as rpc:
        with pytest.raises(RpcError) as info:
            await rpc.call("eth_blockNumber")
    assert key not in str(info.value) and "127.0.0.1" in str(info.value)
