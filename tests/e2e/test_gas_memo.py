"""A comfortable liquidation of a shape traced before goes out without a trace first, and its
accounts still hold the exact traced gas; a remembered figure too short for the call is
traced and tried again, never lost.

Three borrowers of one shape (WETH collateral, USDC debt, one swap route) on the devnet,
liquidated by ``run --once`` in-process; every call the keeper's node client makes is
recorded, in order.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from keeper.app import root as app
from keeper.app.config import load_config
from keeper.app.once import run_once
from keeper.commands.target import resolve_target
from keeper.devnet.driver import Devnet
from keeper.exec.executor import Execution
from keeper.exec.gas_memo import GasMemo, shape
from keeper.exec.tx import Status
from tests.e2e.test_run_once import (
    CONFIG,
    assert_keeper_never_reverted,
    block_number,
    keeper_env,
    open_positions,
    provide_liquidity,
    user,
)

pytestmark = pytest.mark.integration

USERS = [user(20), user(21), user(22)]


async def _crash_three(devnet: Devnet) -> None:
    await provide_liquidity(devnet)
    await open_positions(devnet, [(u, "WETH", 40_000 + 5_000 * i, "USDC", 32_000 + 4_000 * i)
                                  for i, u in enumerate(USERS)])
    prices = await devnet.prices()
    await devnet.set_price("WETH", prices["WETH"] * 92 // 100)
    await devnet.arbitrage(["WETH"])
    await devnet.rpc.call("anvil_setBlockTimestampInterval", [1])


def _record(keeper: Any) -> list[tuple[str, str]]:
    """(method, params as text) of every call the executor's node client makes, in order."""
    calls: list[tuple[str, str]] = []
    rpc = keeper.executor.rpc
    inner: Callable[..., Awaitable[Any]] = rpc.call
    inner_batch: Callable[..., Awaitable[Any]] = rpc.batch

    async def call(method: str, params: Any = (), **kw: Any) -> Any:
        calls.append((method, json.dumps(params).lower()))
        return await inner(method, params, **kw)

    async def batch(requests: Any, **kw: Any) -> Any:
        calls.extend((method, json.dumps(params).lower()) for method, params in requests)
        return await inner_batch(requests, **kw)

    rpc.call, rpc.batch = call, batch
    return calls


def _first(calls: list[tuple[str, str]], method: str, needle: str) -> int:
    return next(i for i, (m, p) in enumerate(calls) if m.lower() == method and needle in p)


def _mined(results: list[Execution]) -> list[Execution]:
    return [r for r in results if r.outcome is not None and r.outcome.status is Status.MINED]


async def test_a_shape_traced_once_sends_the_next_without_a_trace_first(
        devnet: Devnet, tmp_path: Path) -> None:
    await _crash_three(devnet)
    before = await block_number(devnet)
    cfg = load_config(CONFIG, keeper_env(devnet, tmp_path))
    async with app.build(cfg, resolve_target(cfg), dry_run=False) as keeper:
        calls = _record(keeper)
        results = await run_once(keeper)
        assert keeper.executor is not None
        memo = keeper.executor.gas_memo
    done = _mined(results)
    assert sorted(r.user for r in done) == sorted(USERS)
    plans = [r.plan for r in done]
    assert all(p is not None for p in plans) and len({shape(p) for p in plans if p}) == 1
    first, *rest = [r.user for r in done]
    # The first of the shape is traced before its send; the rest are sent, then traced.
    assert _first(calls, "debug_tracecall", first[2:]) \
        < _first(calls, "eth_sendrawtransaction", first[2:])
    for who in rest:
        assert _first(calls, "eth_sendrawtransaction", who[2:]) \
            < _first(calls, "debug_tracecall", who[2:]), who
    # Their accounts hold the traced figure, which is the receipt's.
    for r in done:
        assert r.outcome is not None and r.predicted_gas == r.outcome.gas_used, r.user
    assert len(memo) == 1
    assert len(await assert_keeper_never_reverted(devnet, before)) == 3


async def test_a_remembered_figure_too_short_is_traced_and_tried_again(
        devnet: Devnet, tmp_path: Path) -> None:
    await _crash_three(devnet)
    cfg = load_config(CONFIG, keeper_env(devnet, tmp_path))
    async with app.build(cfg, resolve_target(cfg), dry_run=False) as keeper:
        executor = keeper.executor
        assert executor is not None
        first = await run_once(keeper, max_rounds=1)
        (done,) = _mined(first)
        assert done.plan is not None
        executor.gas_memo = GasMemo()  # the shape's figures replaced by one:
        executor.gas_memo.learn(done.plan, 60_000)  # far below a flash liquidation
        calls = _record(keeper)
        results = first + await run_once(keeper)
    assert sorted(r.user for r in _mined(results)) == sorted(USERS)
    # The next one went to its simulation on the short figure (its limit: 130% of it),
    # was refused there, traced, and simulated again at the traced limit.
    limits = [json.loads(p)[0].get("gas") for m, p in calls if m == "eth_call"
              and '"gas"' in p and USERS[0][2:] not in p]
    assert hex(60_000 * 130 // 100) in limits, limits
    assert len(executor.gas_memo) == 1
