"""Drive ``keeper run`` through the fault proxy during a crash, and judge what it left behind.

``FaultRun`` owns one devnet node (with the market), one ``FaultProxy`` in front of it, a
manifest whose URLs point at the proxy (so the daemon sees only the proxy, while the test reads
and drives anvil directly), a ticker that mines a block every ``block_time`` seconds (anvil
also mines each transaction at once, as the devnet config expects), and the daemon processes
it starts (one at a time; a restart keeps the SQLite checkpoint).

The judge of "a profitable account left under water" is the keeper's own planner, run apart
from the daemon under test: ``keeper run --once --dry-run`` against anvil directly, from a fresh
book; the accounts it would liquidate that ``Pool.getUserAccountData`` (read on anvil) still
says are under water. A size threshold is not a judge: deep under water, DEX slippage makes
$5k-$10k accounts unprofitable (the planner says so), while smaller ones still pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeper.chain.rpc import HttpRpc
from keeper.devnet import lifecycle
from keeper.devnet.anvil import PROJECT_ROOT, Anvil, free_port
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.wadray import WAD
from keeper.pipeline.sync import SyncConfig
from keeper.protocols.aave_v3.account_data import read_account_data
from tests.conftest import TEST_STATE_DIR
from tests.e2e import races
from tests.e2e.test_daemon import (
    LIQUIDATION_CALL,
    KeeperProcess,
    block_number,
    keeper_env,
    liquidated_users,
)
from tests.faults.proxy import FaultProxy

CRASH: Mapping[str, float] = {"WETH": 0.62, "WBTC": 0.8}


async def poll(check: Callable[[], Awaitable[bool]], timeout: float,
               interval: float = 0.1) -> bool:
    """Until ``check()`` is true (True) or ``timeout`` seconds passed (False)."""
    t0 = time.monotonic()
    while True:
        if await check():
            return True
        if time.monotonic() - t0 > timeout:
            return False
        await asyncio.sleep(interval)


def event_name(e: dict[str, Any]) -> str:
    """Event names are being moved to snake_case: compare them in that form."""
    return str(e.get("event", "")).replace(" ", "_").replace("-", "_").lower()


def named(keeper: KeeperProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in events(keeper) if event_name(e) == name]


def events(keeper: KeeperProcess) -> list[dict[str, Any]]:
    out = []
    for line in keeper.lines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def tracebacks(keeper: KeeperProcess) -> list[str]:
    """Log lines that carry a traceback (a bare one, or inside a JSON event)."""
    return [line[:600] for line in keeper.lines() if "Traceback (most recent call last)" in line]


def tail(keeper: KeeperProcess, n: int = 25) -> str:
    return "\n".join(line[:400] for line in keeper.lines()[-n:])


@dataclass
class ReadyProbe:
    """``/readyz`` sampled every ``interval`` seconds: (monotonic time, status, body)."""

    keeper: KeeperProcess
    interval: float = 0.1
    samples: list[tuple[float, int, str]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> ReadyProbe:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            try:
                status, body = await self.keeper.get("/readyz")
            except Exception as exc:  # the daemon is down or slow: record it, keep probing
                status, body = 0, f"{type(exc).__name__}: {exc}"
            self.samples.append((time.monotonic(), status, body.strip()))
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def first(self, status: int, after: float) -> float | None:
        """When ``/readyz`` first answered ``status`` at or after ``after``."""
        return next((t for t, s, _ in self.samples if t >= after and s == status), None)


class FaultRun:
    """One devnet + proxy + ticker + daemon; ``async with FaultRun.open(tmp) as run``."""

    def __init__(self, node: Anvil, devnet: Devnet, proxy: FaultProxy, tmp: Path,
                 block_time: float) -> None:
        self.node = node
        self.devnet = devnet
        self.proxy = proxy
        self.tmp = tmp
        self.block_time = block_time
        self.users: list[str] = []
        self.keeper: KeeperProcess | None = None
        self.keepers: list[KeeperProcess] = []
        self.ticking = asyncio.Event()
        self.manifest = tmp / "manifest.json"
        self.sqlite = tmp / "keeper.sqlite"
        devnet.m.with_urls(proxy.url, proxy.ws_url).save(self.manifest)
        self._ticker: asyncio.Task[None] | None = None
        self._mining = asyncio.Lock()  # held by the ticker's evm_mine and by ``restore``

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, tmp: Path, *, seed: int = 1, block_time: float = 1.0
                   ) -> AsyncIterator[FaultRun]:
        node, manifest, _ = await lifecycle.start(lifecycle.StateDir(TEST_STATE_DIR), aave="3.0")
        try:
            async with HttpRpc(node.url, timeout=120) as rpc, \
                    FaultProxy(node.url, node.ws_url, seed=seed) as proxy:
                run = cls(node, Devnet(rpc, manifest), proxy, tmp, block_time)
                # The backfill reads the market ``follow_depth`` blocks below the tip.
                await run.devnet.mine(SyncConfig(start_block=0).follow_depth + 1)
                run._ticker = asyncio.create_task(run._tick())
                try:
                    yield run
                finally:
                    run._ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await run._ticker
                    for k in run.keepers:
                        await k.kill()
        finally:
            await node.stop()

    async def _tick(self) -> None:
        """A block every ``block_time`` while ticking (a chain does not wait for the keeper)."""
        while True:
            await self.ticking.wait()
            await asyncio.sleep(self.block_time)
            if self.ticking.is_set():
                async with self._mining:
                    with contextlib.suppress(Exception):
                        await self.devnet.rpc.call("evm_mine")

    async def restore(self, snapshot: str) -> None:
        """The node goes back to ``snapshot`` (``evm_revert``) with nothing mined meanwhile.

        anvil 1.7 does not revert atomically: a block mined while it reverts (the ticker's, or
        one it mines at once for a keeper transaction) leaves a chain with blocks missing under
        its head, by number and by parent hash (seen here: a head at 644 over a hole from 302
        to 643), which no real node restored from a backup serves. So the ticker waits, anvil
        stops mining transactions as they come for the moment of the revert (those sent then
        wait in its pool for the next block), and the chain is checked whole afterwards.
        """
        rpc = self.devnet.rpc
        async with self._mining:
            await rpc.call("evm_setAutomine", [False])
            try:
                # A transaction whose automine began before the switch may still be mining.
                await asyncio.sleep(0.2)
                assert await rpc.call("evm_revert", [snapshot]), "evm_revert refused"
            finally:
                await rpc.call("evm_setAutomine", [True])
        head = await rpc.call("eth_getBlockByNumber", ["latest", False])
        for _ in range(3):  # the head and its parents are there, by hash and by number
            broken = f"anvil's chain is broken after evm_revert under block {head['number']}"
            parent = await rpc.call("eth_getBlockByHash", [head["parentHash"], False])
            assert parent is not None, broken
            by_number = await rpc.call("eth_getBlockByNumber", [parent["number"], False])
            assert by_number is not None and by_number["hash"] == parent["hash"], broken
            head = parent

    # ---- the market ----------------------------------------------------------------------
    async def seed(self, borrowers: int, seed: int = 11) -> None:
        """Open ``borrowers`` positions (automine off while seeding: the ticker must wait)."""
        was = self.ticking.is_set()
        self.ticking.clear()
        plans = plan_population(seed, borrowers, self.devnet.m, await self.devnet.prices())
        await seed_population(self.devnet, plans)
        self.users = [p.address for p in plans]
        if was:
            self.ticking.set()

    async def crash(self, moves: Mapping[str, float] = CRASH, steps: int = 3) -> int:
        """The crash, one step per block; returns the first block of it."""
        first = await self.head() + 1
        await crash(self.devnet, moves, blocks=steps)
        return first

    async def head(self) -> int:
        return await block_number(self.devnet.rpc)

    async def wait_blocks(self, after: int, blocks: int, timeout: float = 60) -> int:
        """Until ``blocks`` blocks were mined after ``after`` and as many block times passed
        (the keeper's own transactions also make blocks); returns the head."""
        t0 = time.monotonic()
        while True:
            head = await self.head()
            if head >= after + blocks and time.monotonic() - t0 >= blocks * self.block_time:
                return head
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"the chain did not pass block {after + blocks}")
            await asyncio.sleep(0.1)

    async def under_water(self, users: list[str] | None = None) -> dict[str, Any]:
        """Every account with debt and HF < 1, read on anvil directly: user -> data."""
        users = self.users if users is None else users
        data = await read_account_data(self.devnet.rpc, self.devnet.m.pool, users,
                                       multicall=self.devnet.m.multicall3)
        return {u.lower(): a for u, a in zip(users, data, strict=True)
                if a is not None and a.total_debt_base > 0 and a.health_factor < WAD}

    async def liquidations(self, since: int) -> dict[str, int]:
        return await liquidated_users(self.devnet, since)

    async def liquidation_blocks(self, since: int) -> list[tuple[int, str, str]]:
        """(block, user, tx hash) of every LiquidationCall since ``since``."""
        logs = await self.devnet.rpc.call("eth_getLogs", [{
            "address": self.devnet.m.pool, "topics": [LIQUIDATION_CALL],
            "fromBlock": hex(since), "toBlock": "latest"}])
        return [(int(lg["blockNumber"], 16), "0x" + lg["topics"][3][-40:],
                 lg["transactionHash"]) for lg in logs]

    # ---- the keeper's account ------------------------------------------------------------
    async def nonces(self) -> tuple[int, int]:
        """The keeper's (latest, pending) transaction counts on the chain."""
        latest, pend = await self.devnet.rpc.batch([
            ("eth_getTransactionCount", [self.devnet.m.keeper, "latest"]),
            ("eth_getTransactionCount", [self.devnet.m.keeper, "pending"])])
        return int(latest, 16), int(pend, 16)

    async def queued(self) -> list[int]:
        """Nonces of the keeper's transactions the node holds behind a gap (never minable)."""
        content = await self.devnet.rpc.call("txpool_content")
        out: list[int] = []
        for section in ("queued",):
            for sender, txs in (content.get(section) or {}).items():
                if sender.lower() == self.devnet.m.keeper.lower():
                    out += [int(n) for n in txs]
        return sorted(out)

    async def reverted_keeper_txs(self, since: int) -> list[str]:
        """Hashes of the keeper's transactions mined with status 0 since block ``since``."""
        head = await self.head()
        keeper = self.devnet.m.keeper.lower()
        blocks = await self.devnet.rpc.batch([
            ("eth_getBlockByNumber", [hex(b), True]) for b in range(since, head + 1)])
        hashes = [tx["hash"] for b in blocks if b for tx in b["transactions"]
                  if str(tx.get("from", "")).lower() == keeper]
        if not hashes:
            return []
        receipts = await self.devnet.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        return [h for h, r in zip(hashes, receipts, strict=True)
                if r is not None and int(r["status"], 16) == 0]

    # ---- the daemon ----------------------------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        env = keeper_env(self.manifest, self.sqlite, free_port())
        env.update(overrides)
        return env

    async def start_keeper(self, name: str = "keeper", **overrides: str) -> KeeperProcess:
        """Start ``keeper run`` (against the proxy) and wait for it to be ready."""
        env = self.env(**overrides)
        k = await KeeperProcess(env, self.tmp / f"{name}.log",
                                int(env["KEEPER_METRICS__PORT"])).start()
        self.keeper = k
        self.keepers.append(k)
        t0 = time.monotonic()
        while not await k.ready():
            if not k.running:
                raise AssertionError(f"{name} exited before it was ready:\n{tail(k)}")
            if time.monotonic() - t0 > 60:
                raise AssertionError(f"{name} not ready within 60 s:\n{tail(k)}")
            await asyncio.sleep(0.1)
        return k


async def judge_profitable(run: FaultRun, name: str = "judge") -> set[str]:
    """Accounts the keeper's own planner would liquidate now: ``keeper run --once --dry-run``
    against anvil directly (not the proxy), from a fresh book; its "liquidation planned" users
    that the chain still says are under water."""
    manifest = run.tmp / f"{name}-manifest.json"
    run.devnet.m.with_urls(run.node.url, run.node.ws_url).save(manifest)
    sqlite = run.tmp / f"{name}.sqlite"
    for path in run.tmp.glob(f"{name}.sqlite*"):
        path.unlink()
    env = keeper_env(manifest, sqlite, free_port())
    log = run.tmp / f"{name}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "keeper", "run", "-c", str(PROJECT_ROOT / "config" / "devnet.toml"),
            "--once", "--dry-run", "--log-level", "INFO", env=env, cwd=PROJECT_ROOT,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err)
        try:
            code = await asyncio.wait_for(proc.wait(), 180)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    planned: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            e = json.loads(line)
            if isinstance(e, dict) and event_name(e) == "liquidation_planned":
                planned.add(str(e["user"]).lower())
    if code != 0:
        raise AssertionError(f"the judge (keeper run --once --dry-run) exited {code}: {log}")
    return planned & set(await run.under_water())


def exit_report(keeper: KeeperProcess) -> str:
    """What went wrong, for an assertion message: exit code, failures, the log's tail."""
    code = keeper.proc.returncode if keeper.proc is not None else None
    failed = [f"{e.get('task')}: {e.get('error')}" for e in named(keeper, "task_failed")][:5]
    return f"exit code {code}; task failures {failed}\n--- log tail ---\n{tail(keeper)}"



async def explain_revert(run: FaultRun, tx_hash: str) -> tuple[bool, str]:
    """``tests.e2e.races.explain_revert`` for a fault run's devnet and keepers."""
    return await races.explain_revert(run.devnet, run.keepers, tx_hash)
