"""The risk lab at scale: a 100-point shock grid over 1M positions, and 10,000 Monte Carlo paths
over 100k positions, on synthetic books (6 assets, 1-2 collateral assets and one debt asset per
account, health factors spread over 1 … 3).

Each measure runs in a subprocess (``python -m bench.bench_risk grid|var``) so its memory is its
own: the peak of Python and numpy allocations (tracemalloc) and the process's max RSS.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import tracemalloc
from typing import Any

import numpy as np

from keeper.domain.risk_book import synthetic_book
from keeper.domain.risk_shock import Shock, evaluate_grid
from keeper.domain.risk_var import MarketModel, monte_carlo

Row = tuple[str, str, str]
ASSETS = ("weth", "wbtc", "link", "wsteth", "usdc", "dai")
PRICES = (2000e8, 40000e8, 15e8, 2300e8, 1e8, 1e8)


def measure_grid(n: int = 1_000_000, points: int = 100) -> dict[str, Any]:
    """A joint shock grid of ``points`` levels (−0.6% … −60%) over ``n`` accounts."""
    book = synthetic_book(np.random.default_rng(1), n, ASSETS, PRICES)
    volatile = ASSETS[:4]
    shocks = [Shock(f"-{k * 0.6 / points:.1%}", {a: 1 - k * 0.6 / points for a in volatile})
              for k in range(1, points + 1)]
    tracemalloc.start()
    t0 = time.perf_counter()
    out = evaluate_grid(book, shocks)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "peak_mb": peak / 2**20, "rss_mb": _rss_mb(),
            "liquidatable_at_60": out[-1].liquidatable}


def measure_var(n: int = 100_000, paths: int = 10_000) -> dict[str, Any]:
    """``paths`` correlated Student-t paths over ``n`` accounts."""
    book = synthetic_book(np.random.default_rng(2), n, ASSETS, PRICES)
    corr = tuple(tuple(1.0 if i == j else 0.7 for j in range(4)) for i in range(4))
    model = MarketModel(ASSETS[:4], (0.8, 0.7, 1.0, 0.8), corr, df=4.0)
    tracemalloc.start()
    t0 = time.perf_counter()
    out = monte_carlo(book, model, horizon_days=7, paths=paths, rng=np.random.default_rng(3))
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "peak_mb": peak / 2**20, "rss_mb": _rss_mb(),
            "var99": out.bad_debt_tail[1].var / 1e8}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _child(what: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_risk", what, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.bench_risk {what} exited {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


async def run() -> list[Row]:
    """The bench rows (see the module docstring)."""
    grid = await _child("grid")
    var = await _child("var")
    return [
        ("shock grid 100 points × 1M positions", f"{grid['seconds']:.2f} s", "≤ 10 s"),
        ("  memory: peak allocations / max RSS",
         f"{grid['peak_mb']:.0f} / {grid['rss_mb']:.0f} MB", ""),
        ("Monte Carlo 10,000 paths × 100k positions", f"{var['seconds']:.2f} s", "≤ 60 s"),
        ("  memory: peak allocations / max RSS",
         f"{var['peak_mb']:.0f} / {var['rss_mb']:.0f} MB", ""),
    ]


if __name__ == "__main__":
    print(json.dumps(measure_grid() if sys.argv[1] == "grid" else measure_var()))
