"""The race: our daemon against a naive keeper, on the same devnet, through the same crash.

Both live on one anvil started from a seeded population (``race_world``): ``keeper run`` as a
subprocess (its flash-loan liquidator contract, as on the devnet; its RPC calls counted by its
own ``keeper_rpc_requests_total``) and the naive keeper as another
subprocess, funded with every debt asset twice over. Anvil mines one block a second
(interval mining, blocks stamped one second apart as ``keeper devnet up`` sets them and
config/devnet.toml says): about the time the naive keeper's sequential sweep takes at 1,000
borrowers, so it is not handicapped by a block time shorter than its loop. Transactions are
ordered by fee (anvil's default). Once both are following the chain, WETH −30% and WBTC −20%
land in one block with the pools' arbitrage, and the race runs until no liquidation has
landed for ``QUIET_BLOCKS`` blocks. The chain then says who liquidated what (``race_tally``),
and ``keeper forensics`` why each of the naive keeper's wins was not ours.

The capture row compares what our daemon realised (its ``liquidation_mined`` events: proceeds
of the swap minus debt, flash fee and gas) with the offline optimum: on a replica of the same
chain at the crash block, ``keeper run --once --dry-run`` plans every liquidatable account
with the pure profit model, and the optimum is the sum of the positive planned net profits
(one liquidation per account at the close factor, as the first round of the race).

``make bench`` races the sizes ``BENCH_RACE_BORROWERS`` lists (default "1000 10000", the two
of issue 15's line, in one run), then those of ``BENCH_RACE_BUSY`` (default "10000"; "" for
none) once more with another process keeping one core busy from the crash on (a noisy
machine); ``python -m bench.bench_race 1000 10000:busy`` runs sizes by hand;
``BENCH_RACE_BLOCK_GAS`` sets the blocks' gas limit
(default 60M). Each run writes ``bench/results/race-N.md`` and
``bench/results/latest.md`` gathers them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import race_procs, race_report
from bench.naive_keeper import config_for, naive_address
from bench.race_procs import Racer
from bench.race_tally import LIQUIDATION_CALL, Tally, tally
from bench.race_world import CACHE, SeededWorld, crash_in_one_block, seeded_world, start_node
from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet.anvil import free_port
from keeper.devnet.driver import Devnet
from keeper.domain.wadray import WAD
from keeper.protocols.aave_v3.account_data import read_account_data

SEED = 1
MOVES = {"WETH": 0.70, "WBTC": 0.80}
INTERVAL = 1  # wall seconds per block (anvil takes whole seconds)
# Ethereum mainnet's block gas limit since November 2025 (anvil's default, 30M, is 2021's):
# ~255 of our batched liquidations a block. ``BENCH_RACE_BLOCK_GAS`` sets another (what the
# daemon does where blocks are not the bound).
BLOCK_GAS_LIMIT = int(os.environ.get("BENCH_RACE_BLOCK_GAS", "60000000"))
QUIET_BLOCKS = 10
DEFAULT_SIZES = "1000 10000"
DEFAULT_BUSY = "10000"
_MINT_TO = artifacts.aave("MintableERC20").abi["mint(address,uint256)"]


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    cpu: dict[str, float]
    rpc_calls: int  # ours, from its keeper_rpc_requests_total


@dataclass(frozen=True, slots=True)
class RaceRun:
    borrowers: int
    crash_block: int
    crash_wall: float
    end_block: int
    sunk: set[str]  # liquidatable (HF < 1, collateral left) at the crash block
    optimum: dict[str, float]  # user -> planned net profit USD, offline
    tally: Tally
    before: Sample
    after: Sample
    rss_mb: dict[str, float]
    ours_events: list[dict[str, Any]]
    naive_events: list[dict[str, Any]]
    forensics: dict[str, Any] = field(default_factory=dict)  # `keeper forensics --json`
    busy: bool = False  # another process kept one core busy from the crash on


async def fund_ours(devnet: Devnet, world: SeededWorld) -> None:
    """Our liquidator contract gets what the naive keeper holds: twice the population's debt
    in every asset."""
    for sym, amount in world.debt_by_symbol.items():
        await devnet.tx.transact(devnet.m.reserve(sym).address, _MINT_TO, devnet.m.liquidator,
                                 2 * amount)


async def offline_optimum(world: SeededWorld, work: Path) -> dict[str, float]:
    """Planned net profit (USD) per account on the chain at the crash block, never sent."""
    node, manifest = await start_node(world, gas_limit=BLOCK_GAS_LIMIT)
    try:
        async with HttpRpc(node.url, timeout=120) as rpc:
            await fund_ours(Devnet(rpc, manifest), world)
            await crash_in_one_block(Devnet(rpc, manifest), MOVES, 0)  # 0: the chain stays put
            manifest.save(work / "manifest.json")
            once = race_procs.daemon(work / "manifest.json", work, free_port(), "--once", "--dry-run",
                                     "--log-level", "INFO")
            await once.start()
            assert once.proc is not None
            code = await asyncio.wait_for(once.proc.wait(), 900)
            if code != 0:
                raise RuntimeError(f"keeper run --once --dry-run exited {code}:\n{once.tail()}")
    finally:
        await node.stop()
    plans: dict[str, float] = {}
    for e in once.events():
        if e.get("event") == "liquidation_planned":
            user = str(e["user"]).lower()
            plans[user] = max(plans.get(user, 0.0), float(e["net_profit_usd"]))
    return {u: p for u, p in plans.items() if p > 0}


async def race(borrowers: int, busy: bool = False) -> RaceRun:
    world = await seeded_world(borrowers, SEED)
    work = CACHE / f"run-{borrowers}{'-busy' if busy else ''}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "offline").mkdir()
    optimum = await offline_optimum(world, work / "offline")
    node, manifest = await start_node(world, gas_limit=BLOCK_GAS_LIMIT)
    racers: list[Racer] = []
    try:
        async with HttpRpc(node.url, timeout=120) as rpc:
            devnet = Devnet(rpc, manifest)
            naive = naive_address()
            await devnet.fund([naive])
            # Funded alike: each holds twice the population's debt in every asset (ours in its
            # liquidator contract, which then may keep the collateral as the naive keeper does).
            await devnet.send_many([devnet.users.tx_mint(naive, sym, 2 * amount)
                                    for sym, amount in world.debt_by_symbol.items()])
            await fund_ours(devnet, world)
            manifest.save(work / "manifest.json")
            config_for(manifest, list(world.borrowers), work / "naive.jsonl").save(work / "naive.json")
            port = free_port()
            ours = race_procs.daemon(work / "manifest.json", work, port)
            naive_racer = race_procs.naive(work / "naive.json", work)
            racers = [await ours.start(), await naive_racer.start()]
            await _until_ready(ours, naive_racer, port, work / "naive.jsonl")
            await rpc.call("evm_setIntervalMining", [INTERVAL])
            await asyncio.sleep(3 * INTERVAL)  # both follow a few blocks before the crash
            pids = {"ours": ours.pid, "naive": naive_racer.pid}
            if busy:
                racers.append(await race_procs.busy_core(work).start())
                pids["busy"] = racers[-1].pid
            before = await _sample(pids, port)
            crash = await crash_in_one_block(devnet, MOVES, INTERVAL)
            sunk = await _liquidatable(devnet, list(world.borrowers), crash.number)
            end_block = await _until_quiet(devnet, crash.number, timeout=90 + 0.06 * borrowers)
            for r in racers:
                if not r.running:
                    raise RuntimeError(f"a racer died during the race:\n{r.tail()}")
            after = await _sample(pids, port)
            # Kept beside the logs: the daemon's own counters (RPC calls by method, sends...).
            (work / "metrics.txt").write_text((await race_procs.http_get(port, "/metrics"))[1])
            rss = {k: race_procs.peak_rss_mb(p) for k, p in pids.items()}
            # Beside the running daemon, once its decision record is flushed (every second).
            await asyncio.sleep(1.5)
            forensics = await race_procs.forensics(work / "manifest.json", work, crash.number,
                                                   end_block)
            # Every verdict with its detail, beside the logs: the report shows only the counts.
            (work / "forensics.json").write_text(json.dumps(forensics, indent=1))
            await rpc.call("evm_setIntervalMining", [0])
            for r in racers:
                await r.stop()
            result = await tally(rpc, manifest, crash.number, end_block,
                                 {"ours": {manifest.keeper, manifest.liquidator}, "naive": {naive}},
                                 crash.prices)
    finally:
        for r in racers:
            await r.stop()
        await node.stop()
    return RaceRun(borrowers, crash.number, crash.wall_time, end_block, sunk, optimum, result,
                   before, after, rss, ours.events(), naive_racer.events(work / "naive.jsonl"),
                   forensics, busy)


async def _until_ready(ours: Racer, naive: Racer, port: int, naive_log: Path) -> None:
    deadline = time.monotonic() + 180
    while not (await race_procs.ready(port)
               and any(e.get("event") == "ready" for e in naive.events(naive_log))):
        for r in (ours, naive):
            if not r.running:
                raise RuntimeError(f"a racer exited before the race:\n{r.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"racers not ready in 180 s:\n{ours.tail()}\n{naive.tail()}")
        await asyncio.sleep(0.2)


async def _sample(pids: dict[str, int], port: int) -> Sample:
    calls = await race_procs.metric_sum(port, "keeper_rpc_requests_total")
    if calls is None:
        raise RuntimeError("our daemon's metrics did not answer")
    return Sample(time.time(), {k: race_procs.cpu_seconds(p) for k, p in pids.items()},
                  int(calls))


async def _liquidatable(devnet: Devnet, users: list[str], block: int) -> set[str]:
    data = await read_account_data(devnet.rpc, devnet.m.pool, users, block=hex(block),
                                   multicall=devnet.m.multicall3)
    return {u for u, a in zip(users, data, strict=True)
            if a is not None and a.total_debt_base > 0 and a.health_factor < WAD
            and a.total_collateral_base > 0}


async def _until_quiet(devnet: Devnet, crash_block: int, timeout: float) -> int:
    """The head once ``QUIET_BLOCKS`` blocks have passed without a liquidation (or at the
    timeout)."""
    deadline = time.monotonic() + timeout
    last_liquidation = crash_block
    while True:
        head = int(await devnet.rpc.call("eth_blockNumber"), 16)
        logs = await devnet.rpc.call("eth_getLogs", [{
            "address": devnet.m.pool, "fromBlock": hex(last_liquidation), "toBlock": hex(head),
            "topics": [LIQUIDATION_CALL.topic0]}])
        if logs:
            last_liquidation = max(int(lg["blockNumber"], 16) for lg in logs)
        if head - last_liquidation >= QUIET_BLOCKS or time.monotonic() > deadline:
            return head
        await asyncio.sleep(INTERVAL / 2)


def race_sizes(text: str) -> list[int]:
    """The borrower counts of ``BENCH_RACE_BORROWERS`` or the command line: whole numbers
    above 0, by spaces or commas."""
    words = text.replace(",", " ").split()
    if not words or not all(w.isdigit() and int(w) > 0 for w in words):
        raise ValueError(f"race sizes are borrower counts above 0 (e.g. '1000 10000'), "
                         f"not {text!r}")
    return [int(w) for w in words]


def race_specs(text: str) -> list[tuple[int, bool]]:
    """The races of the command line: a borrower count each, ``N:busy`` for one with a core
    kept busy."""
    words = text.replace(",", " ").split() or DEFAULT_SIZES.split()
    return [(n, w.endswith(":busy")) for w in words
            for n in race_sizes(w.removesuffix(":busy"))]


async def race_all(specs: list[tuple[int, bool]]) -> list[race_report.Report]:
    """A race for each of ``specs`` (borrowers, a core kept busy), one after the other on
    their own devnets; the table printed and written to bench/results/."""
    reports = [race_report.build(await race(n, busy), INTERVAL, MOVES, BLOCK_GAS_LIMIT)
               for n, busy in specs]
    race_report.write(reports)
    print(race_report.markdown(reports))
    return reports


async def run() -> list[tuple[str, str, str]]:
    """``make bench``: the sizes of ``BENCH_RACE_BORROWERS`` (default 1,000 and 10,000), then
    those of ``BENCH_RACE_BUSY`` with a core kept busy (default 10,000)."""
    sizes = race_sizes(os.environ.get("BENCH_RACE_BORROWERS", DEFAULT_SIZES))
    busy_text = os.environ.get("BENCH_RACE_BUSY", DEFAULT_BUSY)
    busy = race_sizes(busy_text) if busy_text.strip() else []
    return race_report.rows(await race_all([(n, False) for n in sizes]
                                           + [(n, True) for n in busy]))


def main() -> None:
    try:
        specs = race_specs(" ".join(sys.argv[1:]))
    except ValueError as exc:
        sys.exit(f"bench_race: {exc}")
    asyncio.run(race_all(specs))


if __name__ == "__main__":
    main()
