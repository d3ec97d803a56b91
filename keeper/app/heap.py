"""The daemon's long-lived heap, kept out of the cyclic collector's way (``gc.freeze``).

A full collection walks every object the collector tracks, and pauses the event loop for it.
With the 10,000-borrower book (~350 MB) each took 62-115 ms, five of them in the crash's first
ten seconds; once what survived the first scan was frozen, they took 5-18 ms (the bench's
race, two runs each way, timed with ``gc.callbacks``). Frozen objects are still freed by
reference counting; cyclic garbage among them (a finished task's exception and frames) waits
for the next freeze, which unfreezes and collects everything first. That full collection is
a pause too: a freeze waits for a moment just after a scan with nothing in flight, and is
made again every ``REFREEZE_SECONDS`` at such a moment (the book's records are replaced as
events come; the new ones would make full passes long again).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import NoReturn

from keeper.obs.logging import get_logger

log = get_logger(__name__)

REFREEZE_SECONDS = 600.0
POLL_SECONDS = 0.25


def freeze_heap() -> tuple[int, float]:
    """Collect everything (what an earlier freeze held too), then freeze what survived; the
    objects frozen and the seconds it took."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count(), time.perf_counter() - started


async def keep_heap_frozen(scans: Callable[[], int], idle: Callable[[], bool], *,
                           every: float = REFREEZE_SECONDS, poll: float = POLL_SECONDS,
                           freeze: Callable[[], tuple[int, float]] = freeze_heap) -> NoReturn:
    """Freeze the heap once a scan has finished, and again every ``every`` seconds, each time
    within ``poll`` seconds of a finished scan, when ``idle()`` (nothing in flight)."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    seen = scans()
    while True:
        await asyncio.sleep(poll)
        now, done = loop.time(), scans()
        just_scanned, seen = done > seen, done
        if now < due or not just_scanned or not idle():
            continue
        objects, seconds = freeze()
        log.info("heap_frozen", objects=objects, ms=round(seconds * 1000, 1))
        due = loop.time() + every
