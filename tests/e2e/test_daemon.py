"""`keeper run` as an operator runs it: a subprocess against a devnet, watched from outside.

One long story on one node (each step needs the state the previous one left):

1. The daemon starts, backfills and becomes ready; borrowers are seeded and WETH crashes.
   Every account the crash put under water is liquidated by the daemon (accounts the close
   factor left under 1 are tried again on later blocks), and /metrics says so.
2. With automine off, a second crash makes the daemon send a liquidation that stays pending;
   SIGTERM then does not stop it until that transaction is mined: it drains, checkpoints and
   exits 0.
3. A restart resumes from the SQLite checkpoint (no backfill).
4. The node goes away: the daemon logs, keeps retrying without a traceback, and when a node
   comes back on the same port (from a dump of the same chain) it follows it again.

Plus: a bad configuration is one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_utils import keccak
from prometheus_client.parser import text_string_to_metric_families

from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet.anvil import PROJECT_ROOT, Anvil, AnvilOptions, free_port
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.wadray import WAD
from keeper.pipeline.sync import SyncConfig
from keeper.protocols.aave_v3.account_data import read_account_data
from tests.e2e import races

pytestmark = pytest.mark.integration

KEEPER_DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
LIQUIDATION_CALL = "0x" + keccak(
    text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()
_FEED = artifacts.ours("PriceFeed").abi


class KeeperProcess:
    """`python -m keeper run` in a subprocess; stderr (JSON log lines) goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, metrics_port: int,
                 config: Path = PROJECT_ROOT / "config" / "devnet.toml") -> None:
        self.env = env
        self.log_path = log_path
        self.metrics_port = metrics_port
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> KeeperProcess:
        with self.log_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "keeper", "run", "-c", str(self.config),
                env=self.env, cwd=PROJECT_ROOT, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=err)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def lines(self) -> list[str]:
        """The complete lines of the log: the last one may be half written while it runs."""
        text = self.log_path.read_text(errors="replace")
        return text[:text.rfind("\n") + 1].splitlines()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines() if line.startswith("{")]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    async def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(2)) as r:
            return r.status, await r.text()

    async def metric(self, name: str) -> float | None:
        _, body = await self.get("/metrics")
        for line in body.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    async def metric_total(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        _, body = await self.get("/metrics")
        return sum(sample.value for family in text_string_to_metric_families(body)
                   for sample in family.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    async def ready(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            return (await self.get("/readyz"))[0] == 200
        return False

    async def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        """Only this process, only if it still runs (test clean-up)."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float,
                keeper: KeeperProcess | None = None, interval: float = 0.1) -> float:
    """Poll ``check`` until true; the seconds it took. Fails with the keeper's log tail."""
    t0 = time.monotonic()
    while not await check():
        if keeper is not None and not keeper.running:
            pytest.fail(f"keeper exited while waiting for {what}:\n" + "\n".join(keeper.lines()[-15:]))
        if time.monotonic() - t0 > timeout:
            tail = "\n".join(keeper.lines()[-15:]) if keeper else ""
            unsettled = f"accounts without a verdict: {sorted(UNSETTLED)}\n" if UNSETTLED else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{unsettled}{tail}")
        await asyncio.sleep(interval)
    return time.monotonic() - t0


def keeper_env(manifest: Path, sqlite: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env.update({
        "KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
        "KEEPER_STATE__SQLITE": str(sqlite),
        "KEEPER_PRIVATE_KEY": KEEPER_DEV_KEY,
        "KEEPER_METRICS__PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    })
    return env


@contextlib.asynccontextmanager
async def running_keeper(env: dict[str, str], log_path: Path) -> AsyncIterator[KeeperProcess]:
    proc = await KeeperProcess(env, log_path, int(env["KEEPER_METRICS__PORT"])).start()
    try:
        yield proc
    finally:
        await proc.kill()


async def liquidated_users(devnet: Devnet, from_block: int) -> dict[str, int]:
    """User -> number of LiquidationCall events since ``from_block``."""
    logs = await devnet.rpc.call("eth_getLogs", [{
        "address": devnet.m.pool, "topics": [LIQUIDATION_CALL],
        "fromBlock": hex(from_block), "toBlock": "latest"}])
    out: dict[str, int] = {}
    for lg in logs:
        user = "0x" + lg["topics"][3][-40:]
        out[user] = out.get(user, 0) + 1
    return out


async def under_water(devnet: Devnet, users: list[str]) -> set[str]:
    """Users whose ``getUserAccountData`` says HF < 1 (a reverting read counts as not)."""
    data = await read_account_data(devnet.rpc, devnet.m.pool, users, multicall=devnet.m.multicall3)
    return {u.lower() for u, a in zip(users, data, strict=True)
            if a is not None and a.total_debt_base > 0 and a.health_factor < WAD}


async def liquidatable(devnet: Devnet, users: list[str]) -> set[str]:
    """Under water with collateral left to seize: an account with debt and no collateral is
    bad debt, which no liquidation can touch (the keeper reports it apart)."""
    data = await read_account_data(devnet.rpc, devnet.m.pool, users, multicall=devnet.m.multicall3)
    return {u.lower() for u, a in zip(users, data, strict=True)
            if a is not None and a.total_debt_base > 0 and a.health_factor < WAD
            and a.total_collateral_base > 0}


def declined(keeper: KeeperProcess) -> set[str]:
    """Accounts the daemon looked at and left alone, with a reason (unprofitable: gas over
    the bonus; dust: the amounts round to zero; ...)."""
    return {e["user"] for e in keeper.named("liquidation_skipped")}


async def settled(devnet: Devnet, keeper: KeeperProcess, users: list[str], since: int,
                  sunk: set[str]) -> bool:
    """Every account in ``sunk`` was liquidated at least once since block ``since`` or declined;
    none still liquidatable lacks such a verdict (the close factor can leave it under 1; one left
    with debt and no collateral is bad debt, which no liquidation can touch); and the daemon has
    no transaction pending."""
    handled = set(await liquidated_users(devnet, since)) | declined(keeper)
    left = await liquidatable(devnet, users)
    UNSETTLED.clear()
    UNSETTLED.update((sunk | left) - handled)
    return not UNSETTLED and not await pending(devnet, devnet.m.keeper)


# What the last ``settled`` found without a verdict: a timeout names these accounts.
UNSETTLED: set[str] = set()


async def block_number(rpc: HttpRpc) -> int:
    return int(await rpc.call("eth_blockNumber"), 16)


def assert_clean_log(keeper: KeeperProcess) -> None:
    """Every stderr line is a JSON log event: no bare traceback, no stray print."""
    bad = [line for line in keeper.lines() if line.strip() and not line.startswith("{")]
    assert not bad, "non-JSON output on stderr:\n" + "\n".join(bad[:20])


async def test_daemon_liquidates_drains_resumes_and_survives_the_node(
    devnet_node: tuple[Anvil, Devnet], tmp_path: Path
) -> None:
    node, devnet = devnet_node
    m = devnet.m
    manifest = tmp_path / "manifest.json"
    m.save(manifest)
    sqlite = tmp_path / "keeper.sqlite"
    env = keeper_env(manifest, sqlite, free_port())
    timings: dict[str, float] = {}
    # A node started from a saved state has no state before it; the backfill reads the market
    # ``follow_depth`` blocks below the tip.
    await devnet.mine(SyncConfig(start_block=0).follow_depth + 1)

    # ---- 1. follow, seed, crash: the daemon liquidates -------------------------------------
    async with running_keeper(env, tmp_path / "keeper-1.log") as keeper:
        timings["ready"] = await until("/readyz", keeper.ready, 20, keeper)
        plans = plan_population(11, 80, m, await devnet.prices())
        await seed_population(devnet, plans)
        users = [p.address for p in plans]
        crash_from = await block_number(devnet.rpc) + 1
        t0 = time.monotonic()
        await crash(devnet, {"WETH": 0.72}, blocks=2)
        crashed = await under_water(devnet, users) | set(await liquidated_users(devnet, crash_from))
        assert len(crashed) >= 5, "the crash should put several accounts under water"

        async def all_handled() -> bool:
            return await settled(devnet, keeper, users, crash_from, crashed)

        timings["liquidated"] = await until("every underwater account liquidated", all_handled,
                                            20, keeper)
        done = await liquidated_users(devnet, crash_from)
        left = await liquidatable(devnet, users)
        timings["liquidated_after_crash"] = time.monotonic() - t0

        async def metrics_agree() -> bool:
            nonlocal done, left
            head = await block_number(devnet.rpc)
            # With several liquidations in flight, accounts the close factor left under 1 may
            # still be liquidated again after every account had its first verdict: compare
            # with the chain's counts as of now, once the daemon has gone quiet.
            done = await liquidated_users(devnet, crash_from)
            left = await liquidatable(devnet, users)
            # The receipt of the last liquidation can reach the chain before the daemon counts it.
            return (await keeper.metric("keeper_liquidatable") == len(left)
                    and await keeper.metric("keeper_synced_block") == head
                    and await keeper.metric("keeper_head_block") == head
                    and await keeper.metric("keeper_txs_mined_total") == sum(done.values()))

        await until("keeper_liquidatable and keeper_txs_mined_total == the chain's counts",
                    metrics_agree, 10, keeper)
        assert (await keeper.metric("keeper_blocks_processed_total") or 0) >= 3
        # A revert is the keeper's fault unless the crash driver's own transactions landed
        # between our simulation and our inclusion (the profit floor then reverts ours, as
        # designed): ``races.explain_revert`` replays the call block by block to tell.
        reverted = [e["tx_hash"] for e in keeper.named("tx_final") if e["status"] == "reverted"]
        assert await keeper.metric("keeper_txs_reverted_total") == len(reverted)
        for tx_hash in reverted:
            raced, why = await races.explain_revert(devnet, [keeper], tx_hash)
            assert raced, f"a keeper transaction reverted by its own doing:\n{why}"
        assert await keeper.metric("keeper_circuit_breaker_open") == 0
        # Exported as counted (the book's accuracy itself is the book's tests' business).
        mismatches = len(keeper.named("book_mismatch"))
        for e in keeper.named("book_mismatch")[:3]:
            print("book_mismatch:", {k: v for k, v in e.items() if k not in ("ts", "logger")})
        assert await keeper.metric("keeper_book_mismatches_total") == mismatches
        assert not keeper.named("task_failed")
        assert len(done) >= len(crashed) // 2, "most of the crash's accounts were worth it"
        print(f"\ncrash sank {len(crashed)} accounts; {len(done)} liquidated "
              f"({sum(done.values())} txs, {sum(1 for n in done.values() if n > 1)} more than "
              f"once); {len(left)} still under 1 (declined); book mismatches: {mismatches}")

        # ---- 2. SIGTERM with a liquidation in flight: it finishes first --------------------
        # Counted by nonce from here: a follow-up of the crash's (what the close factor left)
        # may still be in flight now and be seen mined during the drain (a CI run counted one
        # final more than the mined counter read here plus the pending count below).
        first_nonce = int(await devnet.rpc.call("eth_getTransactionCount",
                                                [m.keeper, "latest"]), 16)
        await devnet.rpc.call("anvil_setAutomine", [False])
        try:
            price = (await devnet.prices())["WETH"] * 80 // 100
            feed = m.reserve("WETH").aggregator
            await devnet.rpc.call("eth_sendTransaction", [{
                "from": m.deployer, "to": feed,
                "data": "0x" + _FEED["updateAnswer"].encode(price).hex()}])
            await devnet.rpc.call("evm_mine")

            async def keeper_tx_pending() -> bool:
                return await pending(devnet, m.keeper)

            await until("the keeper's liquidation in the mempool", keeper_tx_pending, 15, keeper)
            await keeper.signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert keeper.running, "the daemon exited with its transaction still pending"
            assert keeper.named("draining_liquidation_in_flight")
            # Several liquidations may be in flight at once (consecutive nonces); none starts
            # after the signal, and each of those in flight must be seen mined.
            latest, pend = await devnet.rpc.batch([
                ("eth_getTransactionCount", [m.keeper, "latest"]),
                ("eth_getTransactionCount", [m.keeper, "pending"])])
            in_flight = int(pend, 16) - int(latest, 16)
            assert in_flight >= 1
            await devnet.rpc.call("evm_mine")
            t0 = time.monotonic()
            assert await keeper.wait(10) == 0
            timings["drain_exit"] = time.monotonic() - t0
        finally:
            await devnet.rpc.call("anvil_setAutomine", [True])
        assert not await pending(devnet, m.keeper)
        mined = {e.get("nonce") for e in keeper.named("tx_final") if e.get("status") == "mined"}
        last_nonce = int(await devnet.rpc.call("eth_getTransactionCount",
                                               [m.keeper, "latest"]), 16)
        assert last_nonce - first_nonce >= in_flight
        assert set(range(first_nonce, last_nonce)) <= mined, \
            "the in-flight liquidations were seen mined"
        stopped = keeper.named("keeper_stopped")
        # The last block (our liquidation's) may come after the sync was stopped: the restart
        # catches up from the checkpoint.
        assert stopped and stopped[-1]["checkpoint_block"] >= await block_number(devnet.rpc) - 1
        assert_clean_log(keeper)

    # ---- 3. restart: resume from the checkpoint ------------------------------------------
    checkpoint = stopped[-1]["checkpoint_block"]
    env["KEEPER_METRICS__PORT"] = str(free_port())
    async with running_keeper(env, tmp_path / "keeper-2.log") as keeper:
        t0 = time.monotonic()
        await until("/readyz after restart", keeper.ready, 20, keeper)
        timings["restart_ready"] = time.monotonic() - t0
        resumed = keeper.named("sync_resumed_from_checkpoint")
        assert resumed and resumed[0]["block"] == checkpoint
        assert not keeper.named("sync_backfilled")
        # The second crash left accounts under water: the resumed daemon takes them on.
        sunk = await liquidatable(devnet, users) | set(await liquidated_users(devnet, checkpoint))

        async def second_crash_handled() -> bool:
            return await settled(devnet, keeper, users, checkpoint, sunk)

        await until("the second crash's accounts handled", second_crash_handled, 20, keeper)
        quiet = Quiet(devnet, keeper)
        await until("the daemon idle at the chain's head", quiet.check, 10, keeper)
        synced_before = await keeper.metric("keeper_synced_block")

        # ---- 4. the node goes away and comes back on the same port -----------------------
        dump = await devnet.rpc.call("anvil_dumpState")
        state = tmp_path / "chain-state.json"
        state.write_bytes(gzip.decompress(bytes.fromhex(dump[2:])))
        port = node.port
        await node.stop()
        outage = time.monotonic()
        await until("the daemon noticing the node is gone",
                    _async(lambda: bool(keeper.named("node_unreachable"))), 15, keeper)
        await asyncio.sleep(2.0)  # a few retry rounds with nobody answering
        assert keeper.running
        status, body = await keeper.get("/readyz")
        assert status == 503 and "node unreachable" in body
        revived = await Anvil.start(AnvilOptions(port=port, load_state=state))
        try:
            t0 = time.monotonic()
            async with HttpRpc(revived.url, timeout=30) as rpc:
                assert await block_number(rpc) == synced_before, "the dump is the chain we left"
                # Blocks mined back to back run the chain's clock ahead of the wall clock; a
                # node loaded from a dump starts again from the wall clock, which would put
                # its next block before its parent. Keep time monotonic, as a real chain does.
                latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
                await rpc.call("evm_setNextBlockTimestamp", [hex(int(latest["timestamp"], 16) + 1)])
                await rpc.call("anvil_mine", [hex(3)])
                head = await block_number(rpc)

                async def caught_up() -> bool:
                    return await keeper.metric("keeper_synced_block") == head

                await until("the daemon following the revived node", caught_up, 20, keeper)
                timings["recovered"] = time.monotonic() - t0
                await until("/readyz after the outage", keeper.ready, 10, keeper)
                assert keeper.named("node_reachable_again")
                timings["outage"] = time.monotonic() - outage
                # Counted by kind of failure (connection, timeout, ...); any kind will do.
                assert await keeper.metric_total("keeper_rpc_errors_total",
                                                 method="eth_blockNumber") >= 1
                await keeper.signal(signal.SIGTERM)
                assert await keeper.wait(10) == 0
        finally:
            await revived.stop()
        assert not keeper.named("task_failed")
        assert_clean_log(keeper)
    print("timings (s):", {k: round(v, 2) for k, v in timings.items()})


class Quiet:
    """True once the daemon has synced the chain's head, which has not moved for a second,
    with nothing of ours pending."""

    def __init__(self, devnet: Devnet, keeper: KeeperProcess) -> None:
        self.devnet = devnet
        self.keeper = keeper
        self.since: tuple[int, float] | None = None

    async def check(self) -> bool:
        head = await block_number(self.devnet.rpc)
        if self.since is None or self.since[0] != head:
            self.since = (head, time.monotonic())
        return (time.monotonic() - self.since[1] >= 1.0
                and await self.keeper.metric("keeper_synced_block") == head
                and not await pending(self.devnet, self.devnet.m.keeper))


async def pending(devnet: Devnet, account: str) -> bool:
    latest, pend = await devnet.rpc.batch([
        ("eth_getTransactionCount", [account, "latest"]),
        ("eth_getTransactionCount", [account, "pending"])])
    return bool(int(pend, 16) > int(latest, 16))


def _async(fn: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return fn()
    return check


async def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\nchain_id = -1\n[metrics]\nport = 9108\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keeper", "run", "-c", str(bad), env=env, cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keeper: error: network.chain_id"), lines
    assert out == b""
