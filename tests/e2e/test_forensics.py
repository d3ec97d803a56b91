"""Forensics on the throughput race (issue 13): our daemon and the naive keeper race through one
crash on one devnet (the bench's world, smaller); then every liquidation the naive keeper took
is listed by ``keeper forensics`` with a reason, and the reasons add up."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from bench import race_procs
from bench.bench_race import MOVES, SEED
from bench.naive_keeper import config_for, naive_address
from bench.race_procs import Racer
from bench.race_tally import LIQUIDATION_CALL
from bench.race_world import crash_in_one_block, seeded_world, start_node
from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import free_port
from keeper.devnet.driver import Devnet

pytestmark = pytest.mark.integration

BORROWERS = 150
QUIET_BLOCKS = 5


async def _ready(ours: Racer, naive: Racer, port: int, naive_log: Path) -> None:
    deadline = time.monotonic() + 60
    while not (await race_procs.ready(port)
               and any(e.get("event") == "ready" for e in naive.events(naive_log))):
        for r in (ours, naive):
            assert r.running, f"a racer exited before the race:\n{r.tail()}"
        assert time.monotonic() < deadline, f"racers not ready:\n{ours.tail()}\n{naive.tail()}"
        await asyncio.sleep(0.2)


async def _liquidations(rpc: HttpRpc, pool: str, start: int, end: int) -> list[dict[str, str]]:
    logs: list[dict[str, str]] = await rpc.call("eth_getLogs", [{
        "address": pool, "fromBlock": hex(start), "toBlock": hex(end),
        "topics": [LIQUIDATION_CALL.topic0]}])
    return logs


async def _until_quiet(rpc: HttpRpc, pool: str, crash: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    last = crash
    while True:
        head = int(await rpc.call("eth_blockNumber"), 16)
        logs = await _liquidations(rpc, pool, last, head)
        if logs:
            last = max(int(lg["blockNumber"], 16) for lg in logs)
        if head - last >= QUIET_BLOCKS or time.monotonic() > deadline:
            return head
        await asyncio.sleep(0.5)


async def _cli(work: Path, *args: str, sqlite: Path | None = None) -> tuple[int, str]:
    """``keeper forensics`` with bad input: its exit code and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env.update({"KEEPER_NETWORK__DEVNET_MANIFEST": str(work / "manifest.json"),
                "KEEPER_STATE__SQLITE": str(sqlite or work / "keeper.sqlite")})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keeper", "forensics", "-c", str(race_procs.ROOT / "config" /
                                                               "devnet.toml"), *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, err.decode()


async def test_every_naive_liquidation_has_a_reason_and_they_add_up(tmp_path: Path) -> None:
    world = await seeded_world(BORROWERS, SEED)
    node, manifest = await start_node(world)
    racers: list[Racer] = []
    try:
        async with HttpRpc(node.url, timeout=60) as rpc:
            devnet = Devnet(rpc, manifest)
            naive = naive_address()
            await devnet.fund([naive])
            await devnet.send_many([devnet.users.tx_mint(naive, sym, 2 * amount)
                                    for sym, amount in world.debt_by_symbol.items()])
            manifest.save(tmp_path / "manifest.json")
            config_for(manifest, list(world.borrowers), tmp_path / "naive.jsonl").save(
                tmp_path / "naive.json")
            port = free_port()
            ours = race_procs.daemon(tmp_path / "manifest.json", tmp_path, port)
            naive_racer = race_procs.naive(tmp_path / "naive.json", tmp_path)
            racers = [await ours.start(), await naive_racer.start()]
            await _ready(ours, naive_racer, port, tmp_path / "naive.jsonl")
            await rpc.call("evm_setIntervalMining", [1])
            await asyncio.sleep(2)
            crash = await crash_in_one_block(devnet, MOVES, 1)
            end = await _until_quiet(rpc, manifest.pool, crash.number, timeout=40)
            for r in racers:
                assert r.running, f"a racer died during the race:\n{r.tail()}"
            # Beside the running daemon: the record is flushed every second.
            await asyncio.sleep(1.5)
            report = await race_procs.forensics(tmp_path / "manifest.json", tmp_path,
                                                crash.number, end)
            logs = await _liquidations(rpc, manifest.pool, crash.number, end)
            bad = [await _cli(tmp_path, "--from", "5", "--to", "3"),
                   await _cli(tmp_path, "--from", "1", "--to", str(end + 1000)),
                   await _cli(tmp_path, "--from", "1", "--to", "2",
                              sqlite=tmp_path / "none" / "k.sqlite")]
    finally:
        for r in racers:
            await r.stop()
        await node.stop()

    def liquidator(lg: dict[str, str]) -> str:
        return str(LIQUIDATION_CALL.decode(lg["topics"], lg["data"])["liquidator"]).lower()

    naive_logs = [lg for lg in logs if liquidator(lg) == naive]
    ours_logs = [lg for lg in logs
                 if liquidator(lg) in {manifest.keeper.lower(), manifest.liquidator.lower()}]
    assert naive_logs, "the naive keeper took nothing: no race to explain"
    rows = report["liquidations"]
    listed = {r["tx_hash"] for r in rows if r["liquidator"] == naive}
    assert listed == {lg["transactionHash"].lower() for lg in naive_logs}
    assert len([r for r in rows if r["liquidator"] == naive]) == len(naive_logs)
    assert report["total"] == len(rows) == len(logs) - len(ours_logs)
    assert report["ours_taken"] == len(ours_logs)
    assert all(r["reason"] in report["reasons"] and r["label"] and r["detail"] for r in rows)
    assert sum(report["summary"].values()) == report["total"]
    print("forensics:", report["summary"], "naive", len(naive_logs), "ours", len(ours_logs))
    # Bad input: one line, exit 2, no traceback.
    for code, err in bad:
        assert code == 2, err
        assert err.startswith("keeper: error: ") and err.count("\n") == 1, err
    assert "needs 0 <= N <= M" in bad[0][1]
    assert "the chain's head is" in bad[1][1]
    assert "does not exist" in bad[2][1]
