"""The health scanner: prefilter speed and memory at 100k and 1M accounts, on-chain confirmation
throughput and backfill speed on a devnet this bench starts and stops itself.

Prefilter rows run in a subprocess each (``python -m bench.bench_scanner N``) so that the RSS
delta of building the scanner is clean. Their book is a real ``PositionBook`` (what the keeper
builds the scanner from) loaded with generated accounts (devnet-like: 1-2 collateral and 1-2
debt reserves of 6, some eMode) before the clock and the RSS baseline start, so the build time
and the delta are the scanner's own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from keeper.chain.logs import get_logs
from keeper.chain.rpc import HttpRpc
from keeper.devnet import lifecycle
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.account import EModeCategory, ReserveState, UserReserve
from keeper.domain.reserve_config import ReserveConfiguration
from keeper.domain.wadray import RAY
from keeper.obs.logging import configure_logging
from keeper.pipeline.block_events import decode_logs
from keeper.pipeline.scan import HealthScanner
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3 import decoding
from keeper.protocols.aave_v3.account_data import read_account_data
from keeper.protocols.aave_v3.book import BookBlock, MarketState, PositionBook, UserRecord
from keeper.protocols.aave_v3.reader import AaveV3Contracts, MarketRead

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


def synthetic_book(n: int, seed: int = 1) -> PositionBook:
    """A ``PositionBook`` (the scanner's input in the keeper) of ``n`` generated accounts.

    Devnet-like: 1-2 collateral and 1-2 debt reserves of 6, about 10% in eMode 1 (when all
    their reserves are in it), about 1% under water and the rest at HF 1.02..3.
    """
    rng = np.random.default_rng(seed)
    timestamp = 1_700_000_000
    m = len(_RESERVES)
    reserves = {
        a: ReserveState(a, i, ReserveConfiguration(
            ltv=ltv, liquidation_threshold=lt, liquidation_bonus=10500, decimals=dec,
            active=True, borrowing_enabled=True, emode_category=cat),
            liquidity_index=RAY * 102 // 100, variable_borrow_index=RAY * 105 // 100,
            last_update_timestamp=timestamp)
        for i, (a, dec, ltv, lt, cat, _) in enumerate(_RESERVES)
    }
    read = MarketRead(
        reserves_list=tuple(reserves), reserves=reserves, tokens={},
        prices={a: p for a, _, _, _, _, p in _RESERVES}, sources={},
        emode_categories={1: EModeCategory(9300, 9500, 10100), 2: EModeCategory(9000, 9300, 10100)},
    )
    # Per account: two collateral and two debt slots (reserve id or -1, USD value).
    coll = rng.integers(0, m, (n, 2))
    coll[rng.random(n) < 0.6, 1] = -1
    debt = rng.integers(0, m, (n, 2))
    debt[rng.random(n) < 0.7, 1] = -1
    usd = 10 ** rng.uniform(3, 6, n)
    lt = np.array([r[3] for r in _RESERVES]) / 1e4
    slots = (coll >= 0).sum(axis=1)
    weighted = (lt[coll[:, 0]] + np.where(coll[:, 1] >= 0, lt[coll[:, 1]], 0.0)) / slots
    hf = np.where(rng.random(n) < 0.01, rng.uniform(0.85, 1.0, n), rng.uniform(1.02, 3.0, n))
    debt_usd = usd * weighted / hf
    emode = np.where(rng.random(n) < 0.1, 1, 0)
    # Base units -> token units of each reserve.
    unit = [10**dec * 10**8 / price for _, dec, _, _, _, price in _RESERVES]
    assets = [r[0] for r in _RESERVES]
    users: dict[str, UserRecord] = {}
    for i, (c, d, supplied, owed, e) in enumerate(zip(
            coll.tolist(), debt.tolist(), usd.tolist(), debt_usd.tolist(), emode.tolist(),
            strict=True)):
        cs = [r for r in c if r >= 0]
        ds = [r for r in d if r >= 0]
        if e and not all(_RESERVES[r][4] == e for r in cs + ds):
            e = 0
        positions = {}
        for r in set(cs + ds):
            a = supplied / len(cs) if r in cs else 0.0
            v = owed / len(ds) if r in ds else 0.0
            positions[assets[r]] = UserReserve(int(a * unit[r]), int(v * unit[r]))
        users[f"0x{i:040x}"] = UserRecord(frozenset(assets[r] for r in cs), e, positions)
    book = PositionBook()
    book.load(BookBlock(1, "0x01", "0x00", timestamp), MarketState(read=read), users)
    return book


def move_price(book: PositionBook, asset: str, factor: float) -> None:
    """A block that moves one price by ``factor`` (and changes nothing else)."""
    read = book.state.read
    assert read is not None
    prices = {**read.prices, asset: int(read.prices[asset] * factor)}
    b = book.block
    book.begin_block(BookBlock(b.number + 1, hex(b.number + 1), b.hash, b.timestamp),
                     journal=False)
    book.set_market(replace(read, prices=prices), book.state.hints)
    book.end_block()


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
    book = synthetic_book(n)
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
        move_price(book, weth, 0.999 if i % 2 else 1.001)
        scanner.update_prices()

    ticks = [_best_ms(1, tick) for _ in range(9)]
    select = _best_ms(5, lambda _: scanner.prefilter_candidates())
    touched = list(itertools.islice(book.users(), 100))
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
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(STATE_DIR), aave="3.0")
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
            found_logs = await get_logs(rpc, addresses, [list(decoding.topics().positions)],
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
