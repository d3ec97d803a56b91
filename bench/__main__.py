"""`make bench`: run every bench/bench_*.py and print one table.

Each module exposes ``async def run() -> list[tuple[str, str, str]]``: rows of
(metric, measured value, target or note). A module that fails prints its error as a row and
the others still run; the exit code is then 1. ``python -m bench race reaction`` runs only
those. The race (bench_race.py: our daemon against the naive keeper of naive_keeper.py through
one crash) runs ``BENCH_RACE_BORROWERS`` borrowers (default 1000), prints its table and writes
it to bench/results/; ``python -m bench.bench_race 1000 10000`` runs several sizes.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

Row = tuple[str, str, str]
HERE = Path(__file__).resolve().parent


async def _run_all(only: set[str]) -> tuple[list[tuple[str, list[Row]]], bool]:
    results: list[tuple[str, list[Row]]] = []
    ok = True
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda i: i.name):
        if not info.name.startswith("bench_"):
            continue
        name = info.name.removeprefix("bench_")
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{info.name}")
            run = cast(Callable[[], Awaitable[list[Row]]], module.run)
            rows = await run()
        except Exception as exc:  # a bench boundary: report and go on with the others
            rows = [("error", f"{type(exc).__name__}: {exc}", "")]
            ok = False
        rows.append(("(bench wall time)", f"{time.perf_counter() - t0:.1f} s", ""))
        results.append((name, rows))
    return results, ok


def main() -> None:
    only = set(sys.argv[1:])
    results, ok = asyncio.run(_run_all(only))
    width = max([len(m) for _, rows in results for m, _, _ in rows] + [20])
    vwidth = max([len(v) for _, rows in results for _, v, _ in rows] + [12])
    print(f"{'bench':12s} {'metric':{width}s} {'value':>{vwidth}s}  target / note")
    print("-" * (width + vwidth + 40))
    for name, rows in results:
        for metric, value, note in rows:
            print(f"{name:12s} {metric:{width}s} {value:>{vwidth}s}  {note}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
