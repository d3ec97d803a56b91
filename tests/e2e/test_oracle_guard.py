"""The oracle guard in the daemon, on the devnet (issue 10: "no oracle guard").

An aggregator moved −50% in one block with the pools untouched must not be liquidated on: the
daemon halts the asset (metric, log line) and liquidates nobody who uses it; once the market
agrees (the pools arbitraged to the new price, as ``keeper devnet crash`` does) the asset
resumes and the crash's liquidations go through. ``keeper breaker reset`` resumes at once.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from keeper.app import daemon
from keeper.app import root as app
from keeper.app.config import load_config
from keeper.commands import cli
from keeper.commands.target import resolve_target
from keeper.contracts import artifacts
from keeper.devnet.anvil import free_port
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.obs.logging import configure_logging
from tests.e2e.test_run_once import CONFIG, block_number, keeper_env

pytestmark = pytest.mark.integration

_LIQUIDATION_CALL = artifacts.aave("Pool").abi.event("LiquidationCall").topic0


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(devnet: Devnet, tmp_path: Path) -> AsyncIterator[tuple[app.Keeper, io.StringIO]]:
    env = keeper_env(devnet, tmp_path) | {"KEEPER_METRICS__PORT": str(free_port())}
    cfg = load_config(CONFIG, env)
    stream = io.StringIO()
    handle = configure_logging("DEBUG", stream=stream)
    try:
        async with app.build(cfg, resolve_target(cfg), dry_run=False) as keeper:
            d = daemon.Daemon(keeper)
            task = asyncio.create_task(d.run())
            try:
                head = await block_number(devnet)

                async def scanned() -> bool:
                    if task.done():
                        task.result()
                    return d.scanned_block is not None and d.scanned_block >= head

                await until("the daemon to scan the head", scanned)
                yield keeper, stream
            finally:
                d.stop.set()
                await asyncio.wait_for(task, 60)
    finally:
        handle.stop()


async def crashed_alone(devnet: Devnet) -> tuple[str, str]:
    """Borrowers seeded, then WETH's aggregator −50% with every pool untouched."""
    await devnet.rpc.call("anvil_setBlockTimestampInterval", [1])
    prices = await devnet.prices()
    await seed_population(devnet, plan_population(11, 60, devnet.m, prices))
    await devnet.set_price("WETH", prices["WETH"] // 2)
    return devnet.m.reserve("WETH").address, devnet.m.reserve("wstETH").address


async def liquidations(devnet: Devnet, after: int) -> list[dict[str, Any]]:
    logs = await devnet.rpc.call("eth_getLogs", [{
        "address": devnet.m.pool, "fromBlock": hex(after + 1), "toBlock": "latest",
        "topics": [_LIQUIDATION_CALL]}])
    return list(logs)


def _topic_address(topic: str) -> str:
    return "0x" + topic[-40:]


def events(stream: io.StringIO, name: str) -> list[dict[str, Any]]:
    out = []
    for line in stream.getvalue().splitlines():
        if line.strip():
            e = json.loads(line)
            if e.get("event") == name:
                out.append(e)
    return out


def halted_metric(keeper: app.Keeper, symbol: str, reason: str) -> float | None:
    return keeper.metrics.registry.get_sample_value(
        "keeper_oracle_guard_halted", {"asset": symbol, "reason": reason})


async def test_aggregator_alone_is_halted_and_the_arbitraged_crash_goes_through(
        devnet: Devnet, tmp_path: Path) -> None:
    weth, wsteth = await crashed_alone(devnet)
    start = await block_number(devnet)
    async with running(devnet, tmp_path) as (keeper, stream):
        guard = keeper.oracle_guard
        assert guard is not None
        assert set(guard.halted) >= {weth, wsteth}
        assert halted_metric(keeper, "WETH", "dex") == 1.0
        halted = {e["symbol"] for e in events(stream, "oracle_guard_halted")}
        assert {"WETH", "wstETH"} <= halted and not halted & {"USDC", "DAI", "WBTC", "LINK"}
        # Blocks go by; still halted, nobody using WETH liquidated.
        for _ in range(5):
            await devnet.rpc.call("evm_mine")
        await asyncio.sleep(1.0)
        assert weth in guard.halted
        held = events(stream, "liquidations_held_by_oracle_guard")
        assert held and held[-1]["accounts"] > 0
        for lg in await liquidations(devnet, start):
            assets = {_topic_address(lg["topics"][1]), _topic_address(lg["topics"][2])}
            assert not assets & {weth, wsteth}, lg

        # `keeper devnet crash`: the price moves on and the pools follow it (arbitraged), as
        # in a real crash; the market now agrees with the oracle.
        await crash(devnet, {"WETH": 0.9}, blocks=1)

        async def liquidated_weth() -> bool:
            return any(_topic_address(lg["topics"][1]) in (weth, wsteth)
                       or _topic_address(lg["topics"][2]) in (weth, wsteth)
                       for lg in await liquidations(devnet, start))

        await until("a liquidation using WETH after the market agreed", liquidated_weth, 60)
        assert weth not in guard.halted
        assert halted_metric(keeper, "WETH", "dex") == 0.0
        assert any(e["symbol"] == "WETH" for e in events(stream, "oracle_guard_resumed"))


async def test_breaker_reset_resumes_a_halted_asset(devnet: Devnet, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    weth, _ = await crashed_alone(devnet)
    start = await block_number(devnet)
    async with running(devnet, tmp_path) as (keeper, stream):
        guard = keeper.oracle_guard
        assert guard is not None and weth in guard.halted
        for k, v in keeper_env(devnet, tmp_path).items():
            monkeypatch.setenv(k, v)
        with pytest.raises(SystemExit) as exit_:
            await asyncio.to_thread(cli.main, ["breaker", "reset", "-c", str(CONFIG),
                                               "--asset", "WETH"])
        assert exit_.value.code == 0
        await devnet.rpc.call("evm_mine")  # the daemon takes the request at its next block

        async def liquidated_weth() -> bool:
            return any(weth in (_topic_address(lg["topics"][1]), _topic_address(lg["topics"][2]))
                       for lg in await liquidations(devnet, start))

        await until("a liquidation using WETH after the reset", liquidated_weth, 60)
        assert events(stream, "oracle_guard_reset")
        assert halted_metric(keeper, "WETH", "dex") == 0.0
