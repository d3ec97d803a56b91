"""The lag watch: a stage that stops keeping up with an answering node is logged once, with
where the chain-following tasks wait."""

from __future__ import annotations

import asyncio
import io
import json

from keeper.app.lag_watch import STALL_SECONDS, LagWatch, task_stacks
from keeper.obs.logging import configure_logging


async def test_a_book_that_stops_while_the_head_goes_on_is_reported_once_per_episode() -> None:
    watch = LagWatch()
    # Blocks applied and the book keeping up: nothing.
    assert watch.observe(0.0, 100, 100, 50, 100, 7) == []
    # The head goes on, the book stays at 100 (no block applied).
    assert watch.observe(1.0, 104, 100, 51, 100, 8) == []
    assert watch.observe(1.0 + STALL_SECONDS - 0.1, 110, 100, 51, 100, 8) == []
    assert watch.observe(1.0 + STALL_SECONDS, 111, 100, 51, 100, 8) == ["sync"]
    assert watch.observe(30.0, 140, 100, 51, 100, 8) == []  # once per episode
    # It moves again: a new episode may be reported later.
    assert watch.observe(31.0, 141, 141, 92, 141, 9) == []
    assert watch.observe(32.0, 150, 141, 92, 141, 9) == []
    assert watch.observe(32.0 + STALL_SECONDS, 160, 141, 92, 141, 9) == ["sync"]


def test_a_book_a_block_or_two_behind_is_no_stall() -> None:
    watch = LagWatch()
    for t in range(60):  # a slow chain: the head two blocks ahead, nothing applied for a minute
        assert watch.observe(float(t), 102, 100, 5, 100, 3) == []
    assert watch.observe(61.0, None, 100, 5, 100, 3) == []  # no head read: nothing to compare


async def test_a_scan_that_stops_while_the_book_goes_on_is_reported() -> None:
    watch = LagWatch()
    assert watch.observe(0.0, 100, 100, 10, 100, 4) == []
    assert watch.observe(1.0, 120, 120, 30, 100, 5) == []
    assert watch.observe(1.0 + STALL_SECONDS, 131, 131, 41, 100, 5) == ["scan"]


async def test_the_warning_says_where_the_following_tasks_wait() -> None:
    release = asyncio.Event()

    async def waiting_for_a_head_that_never_comes() -> None:
        await release.wait()

    async def following() -> None:  # the await it is stuck at is one level down
        await waiting_for_a_head_that_never_comes()

    task = asyncio.create_task(following(), name="head batches")
    await asyncio.sleep(0)
    out = io.StringIO()
    handle = configure_logging("INFO", stream=out)
    try:
        assert "waiting_for_a_head_that_never_comes" in " ".join(task_stacks()["head batches"])
        watch = LagWatch()
        watch.observe(0.0, 100, 100, 1, 100, 1)
        assert watch.observe(STALL_SECONDS + 1, 120, 100, 1, 100, 1) == ["sync"]
    finally:
        handle.stop()
        release.set()
        await task
    [line] = [json.loads(x) for x in out.getvalue().splitlines()
              if '"chain_following_stalled"' in x]
    assert line["stage"] == "sync" and line["head"] == 120 and line["book_block"] == 100
    assert any("waiting_for_a_head_that_never_comes" in f for f in line["tasks"]["head batches"])
