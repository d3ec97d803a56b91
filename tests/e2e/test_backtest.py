"""``keeper backtest`` on a recorded devnet crash (issue 13's "done when").

Two devnets start from the same saved market and get the same borrowers. On the first (the
source) a WETH crash runs over a few blocks and a naive liquidator, a plain account holding the
debt tokens and calling ``Pool.liquidationCall`` itself, takes every other liquidatable account
after each step. ``keeper backtest`` then replays that stretch on a fork, the keeper racing.

On the second devnet the same scenario runs live, with the keeper in it: one ``run_once``
pass before each of the scenario's transactions (the replay's rule: the keeper's turn comes
after one block's transactions and before the next's) and the naive liquidator making the
same calls. The keeper's replayed profit must equal its live profit within 0.1%.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from fractions import Fraction
from pathlib import Path

import pytest

from keeper.app import root as app
from keeper.app.config import load_config
from keeper.app.once import run_once
from keeper.commands.target import resolve_target
from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import BorrowerPlan, plan_population, seed_population
from keeper.exec.executor import Execution
from keeper.exec.tx import Status
from tests.conftest import running_devnet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "devnet.toml"
KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil account 1
BOT = "0x00000000000000000000000000000000000b0b01"  # the naive liquidator (impersonated)
SEED, BORROWERS, STEPS, DROP = 21, 60, 3, 0.30
_POOL = artifacts.aave("Pool").abi
_LIQUIDATION_CALL = _POOL.event("LiquidationCall").topic0
MAX_UINT = 2**256 - 1

Pass = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


async def _setup(devnet: Devnet) -> list[BorrowerPlan]:
    await devnet.rpc.call("anvil_setBlockTimestampInterval", [1])
    plans = plan_population(SEED, BORROWERS, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    await devnet.fund([BOT])
    txs = []
    for r in devnet.m.reserves:
        txs += [devnet.users.tx_mint(BOT, r.symbol, 10**9 * 10**r.decimals),
                devnet.users.tx_approve(BOT, r.symbol)]
    await devnet.send_many(txs)
    return plans


async def _bot_liquidates(devnet: Devnet, plan: BorrowerPlan) -> None:
    """The naive liquidator: its own balance, the first collateral and debt, the close factor's
    worth; a revert (someone was faster) is its loss, not an error."""
    coll, debt = (devnet.m.reserve(s).address for s in (plan.supplies[0][0], plan.borrows[0][0]))
    data = _POOL["liquidationCall"].encode(coll, debt, plan.address, MAX_UINT, False)
    tx_hash = await devnet.rpc.call("eth_sendTransaction", [{
        "from": BOT, "to": devnet.m.pool, "data": "0x" + data.hex(), "gas": hex(1_500_000)}])
    await devnet.tx.wait_receipt(tx_hash)


async def _drive(devnet: Devnet, plans: list[BorrowerPlan], keeper_pass: Pass,
                 bot_targets: list[list[str]] | None) -> list[list[str]]:
    """The crash; ``keeper_pass`` runs before each of its transactions. Returns the accounts
    the bot went for at each step (recorded on the source, replayed on the live run)."""
    by_address = {p.address: p for p in plans}
    start = (await devnet.prices())["WETH"]
    chosen: list[list[str]] = []
    for step in range(1, STEPS + 1):
        await keeper_pass()
        await devnet.set_price("WETH", int(start * (1 - DROP * step / STEPS)))
        await keeper_pass()
        await devnet.arbitrage({"WETH"})
        if bot_targets is None:
            data = await devnet.account_data([p.address for p in plans])
            under = [p.address for p, a in zip(plans, data, strict=True)
                     if a.health_factor < 10**18]
            targets = under[::2]
        else:
            targets = bot_targets[step - 1]
        for user in targets:
            await keeper_pass()
            await _bot_liquidates(devnet, by_address[user])
        chosen.append(targets)
    await keeper_pass()
    return chosen


async def _head(devnet: Devnet) -> int:
    return int(await devnet.rpc.call("eth_blockNumber"), 16)


async def test_backtest_reports_every_source_liquidation_and_matches_a_live_run(
        tmp_path: Path) -> None:
    # ---- the source: a crash, and a naive liquidator taking some accounts --------------
    async with running_devnet("3.0") as source:
        plans = await _setup(source)
        before = await _head(source)
        targets = await _drive(source, plans, _nothing, None)
        head = await _head(source)
        logs = await source.rpc.call("eth_getLogs", [{
            "address": source.m.pool, "topics": [_LIQUIDATION_CALL],
            "fromBlock": hex(before + 1), "toBlock": hex(head)}])
        assert logs, "the naive liquidator took nothing: no race to replay"
        manifest = tmp_path / "manifest.json"
        source.m.save(manifest)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")},
               "KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
               "KEEPER_STATE__SQLITE": str(tmp_path / "unused.sqlite"), "KEEPER_PRIVATE_KEY": KEY}
        out = tmp_path / "report"
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "keeper", "backtest", "-c", str(CONFIG),
             "--fork-url", source.rpc.url, "--from", str(before), "--to", str(head),
             "--json", "--out", str(out)],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert await _head(source) == head  # nothing reached the source
    report = json.loads(proc.stdout)

    # Every LiquidationCall of the source chain is in the report, taken or missed with a reason.
    rows = report["source_liquidations"]
    expected = sorted((int(lg["blockNumber"], 16), "0x" + lg["topics"][3][-40:]) for lg in logs)
    assert sorted((r["block"], r["user"]) for r in rows) == expected
    assert all(r["taken"] or r["reason"] for r in rows), rows
    assert any(r["taken"] for r in rows), rows
    assert report["summary"]["keeper_liquidations"] > 0
    assert (out / "crash.png").stat().st_size > 10_000
    assert "| block | user |" in (out / "report.md").read_text()

    # ---- the live run: the same scenario with the keeper in it ---------------------------
    results: list[Execution] = []
    async with running_devnet("3.0") as live:
        await _setup(live)
        cfg = load_config(CONFIG, {"KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
                                   "KEEPER_STATE__SQLITE": str(tmp_path / "live.sqlite"),
                                   "KEEPER_PRIVATE_KEY": KEY})
        cfg = cfg.model_copy(update={"network": cfg.network.model_copy(
            update={"rpc_urls": [live.rpc.url], "ws_url": None})})
        async with app.build(cfg, resolve_target(cfg), dry_run=False) as keeper:
            async def keeper_pass() -> None:
                results.extend(await run_once(keeper))

            await _drive(live, plans, keeper_pass, targets)
    live_profit = sum(Fraction(r.realised_net_usd or 0, 10**8) for r in results
                      if r.outcome is not None and r.outcome.status is Status.MINED)
    replayed = sum(Fraction(k["profit_usd"]).limit_denominator(10**8)
                   for k in report["keeper_liquidations"])
    print(f"replayed profit ${float(replayed):,.2f}, live ${float(live_profit):,.2f}, "
          f"{len(report['keeper_liquidations'])} replayed liquidations, "
          f"{sum(r.outcome is not None and r.outcome.status is Status.MINED for r in results)} live")
    assert live_profit > 0
    assert abs(replayed - live_profit) <= live_profit / 1000, (replayed, live_profit)
