"""The daemon's heap freezes: only just after a finished scan, only with nothing in flight, and
again only once the interval has passed."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from keeper.app.heap import freeze_heap, keep_heap_frozen


def test_a_freeze_collects_then_leaves_the_survivors_out_of_later_collections() -> None:
    gc.unfreeze()
    try:
        survivor = [object() for _ in range(1_000)]
        objects, seconds = freeze_heap()
        assert objects == gc.get_freeze_count() >= len(survivor) and seconds >= 0
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


class _Node:
    other: _Node | None = None


def test_cyclic_garbage_a_freeze_held_goes_at_the_next_freeze() -> None:
    gc.unfreeze()
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        freeze_heap()
        del a, b
        gc.collect()
        assert ref() is not None  # frozen: the collector leaves the cycle alone
        freeze_heap()
        assert ref() is None  # unfrozen, collected, the survivors frozen again
    finally:
        gc.unfreeze()


async def test_freezes_wait_for_a_finished_scan_and_an_idle_lane() -> None:
    scans, busy = 0, False
    frozen: list[float] = []
    loop = asyncio.get_running_loop()

    def freeze() -> tuple[int, float]:
        frozen.append(loop.time())
        return 1, 0.0

    task = asyncio.create_task(keep_heap_frozen(lambda: scans, lambda: not busy, every=1.0,
                                                poll=0.01, freeze=freeze))
    try:
        await asyncio.sleep(0.05)
        assert frozen == []  # no scan has finished yet
        busy = True
        scans += 1
        await asyncio.sleep(0.05)
        assert frozen == []  # a scan, but a liquidation in flight
        busy = False
        await asyncio.sleep(0.05)
        assert frozen == []  # idle now, but no scan since: the next one may be under way
        scans += 1
        await asyncio.sleep(0.05)
        assert len(frozen) == 1  # just after a scan, nothing in flight
        scans += 1
        await asyncio.sleep(0.05)
        assert len(frozen) == 1  # not again before the interval
        await asyncio.sleep(1.0)
        scans += 1
        await asyncio.sleep(0.05)
        assert len(frozen) == 2 and frozen[1] - frozen[0] >= 1.0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
