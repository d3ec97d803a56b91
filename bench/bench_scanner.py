"""The health scanner: prefilter speed and memory at 100k and 1M accounts, on-chain confirmation
throughput and backfill speed on a devnet this bench starts and stops itself.

Prefilter rows run in a subprocess each (``python -m bench.bench_scanner N``) so that the RSS
delta of building the scanner is clean. Their book is synthetic and lazy: accounts are made
on demand from compact numpy columns (devnet-like: 1-2 collateral and 1-2 debt reserves of 6,
some eMode), so the delta counts the scanner's own structures, not the book's.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from keeper.chain.logs import get_logs
from keeper.chain.rpc import HttpRpc
from keeper.devnet import lifecycle
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.account import (
    EModeCategory,
    Market,
    ReserveState,
    UserAccount,
    UserReserve,
)
from keeper.domain.reserve_config import ReserveConfiguration, UserConfiguration
from keeper.domain.wadray import RAY
from keeper.obs.logging import configure_logging
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3.reader import AaveV3Contracts
from keeper.scanner import HealthScanner, read_account_data
from keeper.sync import BookSync, SyncConfig, decode_logs

Row = tuple[str, str, str]

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / "build" / "bench-scanner-devnet"
BORROWERS = 2_000
CONFIRM_ROUNDS = 5

# A devnet-like market: (asset, decimals, ltv, threshold, eMode category, price in base units).
_RESERVES = (
    ("0x" + "e1" * 20, 18, 8000, 8250, 2, 2_000 * 10**8),
    ("0x" + "b7" * 20, 8, 7000, 7500, 0, 40_000 * 10**8),
    ("0x" + "05" * 20, 6, 7700, 8000, 1, 10**8),
    ("0x" + "da" * 20, 18, 7500, 8000, 1, 10**8),
    ("0x" + "e2" * 20, 18, 6900, 7900, 2, 2_300 * 10**8),
    ("0x" + "11" * 20, 18, 5000, 6500, 0, 15 * 10**8),
)


class SyntheticBook:
    """A BookView of ``n`` accounts made on demand from a few numpy columns."""

    def __init__(self, n: int, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.block_number = 1
        self.block_timestamp = 1_700_000_000
        m = len(_RESERVES)
        self._prices = {a: p for a, _, _, _, _, p in _RESERVES}
        self._reserves = {
            i: ReserveState(a, i, ReserveConfiguration(
                ltv=ltv, liquidation_threshold=lt, liquidation_bonus=10500, decimals=dec,
                active=True, borrowing_enabled=True, emode_category=cat),
                liquidity_index=RAY * 102 // 100, variable_borrow_index=RAY * 105 // 100,
                last_update_timestamp=self.block_timestamp)
            for i, (a, dec, ltv, lt, cat, _) in enumerate(_RESERVES)
        }
        self._emodes = {1: EModeCategory(9300, 9500, 10100), 2: EModeCategory(9000, 9300, 10100)}
        self._users = [f"0x{i:040x}" for i in range(n)]
        # Per account: two collateral and two debt slots (reserve id or -1, USD value).
        self._coll = rng.integers(0, m, (n, 2)).astype(np.int8)
        self._coll[rng.random(n) < 0.6, 1] = -1
        self._debt = rng.integers(0, m, (n, 2)).astype(np.int8)
        self._debt[rng.random(n) < 0.7, 1] = -1
        usd = 10 ** rng.uniform(3, 6, n)
        self._coll_usd = usd.astype(np.float32)
        # About 1% under water, the rest spread over HF 1.02..3 (before eMode and interest).
        lt = np.array([r[3] for r in _RESERVES]) / 1e4
        slots = (self._coll >= 0).sum(axis=1)
        weighted = (lt[self._coll[:, 0]] + np.where(self._coll[:, 1] >= 0,
                                                     lt[self._coll[:, 1]], 0.0)) / slots
        hf = np.where(rng.random(n) < 0.01, rng.uniform(0.85, 1.0, n), rng.uniform(1.02, 3.0, n))
        self._debt_usd = (usd * weighted / hf).astype(np.float32)
        self._emode = np.where(rng.random(n) < 0.1, 1, 0).astype(np.int8)

    def market(self) -> Market:
        return Market(self._reserves, self._prices, self.block_timestamp, self._emodes)

    def move(self, asset: str, factor: float) -> None:
        self._prices = {**self._prices, asset: int(self._prices[asset] * factor)}

    def account(self, user: str) -> UserAccount:
        i = int(user, 16)
        config = UserConfiguration()
        positions: dict[str, UserReserve] = {}
        coll = [int(r) for r in self._coll[i] if r >= 0]
        debt = [int(r) for r in self._debt[i] if r >= 0]
        emode = int(self._emode[i])
        if emode and not all(_RESERVES[r][4] == emode for r in coll + debt):
            emode = 0
        for r in set(coll + debt):
            asset, dec, *_, price = _RESERVES[r]
            supplied = float(self._coll_usd[i]) / len(coll) if r in coll else 0.0
            owed = float(self._debt_usd[i]) / len(debt) if r in debt else 0.0
            unit = 10**dec * 10**8 / price
            positions[asset] = UserReserve(int(supplied * unit), int(owed * unit))
            if r in coll:
                config = config.with_collateral(r, True)
            if r in debt:
                config = config.with_borrowing(r, True)
        return UserAccount(config, emode, positions)

    def users(self) -> Iterable[str]:
        return self._users

    def holders(self, asset: str) -> set[str]:
        rid = next(i for i, r in enumerate(_RESERVES) if r[0] == asset)
        hit = (self._coll == rid).any(axis=1) | (self._debt == rid).any(axis=1)
        return {self._users[i] for i in np.flatnonzero(hit)}

    def health_factor(self, user: str) -> int:
        raise NotImplementedError


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _best_ms(runs: int, fn: Callable[[int], object]) -> float:
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def measure_prefilter(n: int) -> dict[str, float]:
    """Build a scanner over ``n`` synthetic accounts and time its steps (run in a subprocess)."""
    book = SyntheticBook(n)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    scanner = HealthScanner(book)
    build = time.perf_counter() - t0
    pf = scanner.prefilter
    for j in range(len(_RESERVES)):
        pf.holders(j)  # the per-asset holder caches, built once per book (steady state)
    rss = _rss_mb() - rss0
    full = _best_ms(10, lambda _: pf.recompute())
    weth = _RESERVES[0][0]
    holders = int(pf.holders(0).size)

    def tick(i: int) -> None:
        book.move(weth, 0.999 if i % 2 else 1.001)
        scanner.update_prices()

    ticks = [_best_ms(1, tick) for _ in range(9)]
    select = _best_ms(5, lambda _: scanner.prefilter_candidates())
    touched = book._users[:100]
    touch = _best_ms(5, lambda _: scanner.touch(touched))
    return {"n": n, "build_s": build, "rss_mb": rss, "full_ms": full,
            "tick_ms": statistics.median(ticks), "holders": holders, "select_ms": select,
            "candidates": len(scanner.prefilter_candidates()), "touch100_ms": touch}


async def _prefilter_rows(n: int) -> list[Row]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_scanner", str(n),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"prefilter worker ({n}) failed: {err.decode()[-300:]}")
    r = json.loads(out)
    k = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}M"
    return [
        (f"full re-evaluation, {k} accounts", f"{r['full_ms']:.1f} ms",
         "target 1M <= 50 ms" if n >= 1_000_000 else "numpy, 6 price columns"),
        (f"price tick (WETH, {r['holders']:,} holders), {k}", f"{r['tick_ms']:.1f} ms",
         "target <= 10 ms (median of 9)"),
        (f"candidate selection, {k}", f"{r['select_ms']:.1f} ms",
         f"{r['candidates']:,} under HF 1.001"),
        (f"touch 100 accounts (events), {k}", f"{r['touch100_ms']:.1f} ms", "rows re-set"),
        (f"scanner build from book, {k}", f"{r['build_s']:.1f} s", "start-up, once"),
        (f"scanner memory (RSS delta), {k}", f"{r['rss_mb']:.0f} MB",
         "target 1M <= 500 MB" if n >= 1_000_000 else ""),
    ]


async def _devnet_rows() -> list[Row]:
    logs = configure_logging("WARNING")  # stderr, warnings only: the table is on stdout
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(STATE_DIR))
    try:
        async with HttpRpc(node.url, timeout=120) as rpc:
            devnet = Devnet(rpc, manifest)
            plans = plan_population(3, BORROWERS, manifest, await devnet.prices())
            t0 = time.perf_counter()
            await seed_population(devnet, plans)
            seeded = time.perf_counter() - t0
            await crash(devnet, {"WETH": 0.8}, blocks=2)
            users = [p.address for p in plans]
            rows: list[Row] = [("devnet borrowers seeded", f"{BORROWERS:,}",
                                f"{seeded:.1f} s")]

            # Confirmation: getUserAccountData through Multicall3 (500 per aggregate3).
            block = int(await rpc.call("eth_blockNumber"), 16)
            await read_account_data(rpc, manifest.pool, users[:10], block=block)  # warm up
            t0 = time.perf_counter()
            once = await read_account_data(rpc, manifest.pool, users, block=block)
            one = time.perf_counter() - t0
            many = users * CONFIRM_ROUNDS
            t0 = time.perf_counter()
            again = await read_account_data(rpc, manifest.pool, many, block=block)
            rounds = time.perf_counter() - t0
            failed = sum(a is None for a in once) + sum(a is None for a in again)
            rows += [
                (f"on-chain confirmation, {len(users):,} accounts", f"{len(users) / one:,.0f} /s",
                 f"{one * 1e3:.0f} ms; target >= 10k/s"),
                (f"on-chain confirmation, {len(many):,} accounts", f"{len(many) / rounds:,.0f} /s",
                 f"{rounds * 1e3:.0f} ms; {failed} failed calls"),
            ]

            # Backfill with the book's sync, then one full scan of the synced book.
            contracts = AaveV3Contracts(manifest.pool, manifest.oracle,
                                        manifest.pool_configurator,
                                        manifest.pool_addresses_provider, manifest.multicall3)
            sync = BookSync(rpc, contracts, SyncConfig(start_block=manifest.deploy_block,
                                                       progress=False))
            t0 = time.perf_counter()
            tip = await sync.catch_up()
            backfill = time.perf_counter() - t0
            # The addresses and topics the sync asks logs of, to count the events it applied.
            addresses = [contracts.pool, contracts.pool_configurator, contracts.oracle,
                         *sync.book.watched_addresses(feeds=False)]
            found_logs = await get_logs(rpc, addresses, [list(ev.topics().positions)],
                                        manifest.deploy_block, tip)
            events = len(decode_logs(found_logs))
            rows.append(("backfill (BookSync.catch_up)", f"{events / backfill:,.0f} events/s",
                         f"{events:,} events, {tip - manifest.deploy_block:,} blocks, "
                         f"{backfill:.2f} s"))
            t0 = time.perf_counter()
            scanner = HealthScanner(sync.book)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = await scanner.scan(rpc, manifest.pool)
            scan = time.perf_counter() - t0
            rows.append((f"scan of the synced book ({len(sync.book):,} accounts)",
                         f"{scan * 1e3:.0f} ms",
                         f"build {build * 1e3:.0f} ms; {len(found)} liquidatable, "
                         f"{scanner.stats.mismatches} book/chain mismatches"))
            return rows
    finally:
        await node.stop()
        logs.stop()


async def run() -> list[Row]:
    """The bench rows (see the module docstring)."""
    rows: list[Row] = []
    for n in (100_000, 1_000_000):
        rows += await _prefilter_rows(n)
    rows += await _devnet_rows()
    return rows


if __name__ == "__main__":
    print(json.dumps(measure_prefilter(int(sys.argv[1]))))
