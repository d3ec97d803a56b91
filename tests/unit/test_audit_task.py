"""The book audit: one slice per finished scan while idle, every account in turn, a new pass
picking up new accounts, and a slice read while the book moved on restoring nothing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from keeper.app.audit_task import BookAuditTask
from keeper.obs.metrics import Metrics


class FakeBook:
    def __init__(self, users: list[str]) -> None:
        self._users = users
        self.block_number = 1

    def users(self) -> list[str]:
        return list(self._users)


class FakeRepair:
    """Restores the accounts in ``wrong``; answers None (the book moved on) when ``moved``."""

    def __init__(self, wrong: set[str]) -> None:
        self.wrong = wrong
        self.moved = False
        self.read: list[list[str]] = []

    async def restore(self, book: Any, reader: Any, users: list[str]) -> list[str] | None:
        self.read.append(list(users))
        return None if self.moved else [u for u in users if u in self.wrong]


def _audit(book: FakeBook, repair: FakeRepair, scans: list[int], idle: list[bool],
           restored: list[str]) -> BookAuditTask:
    keeper = SimpleNamespace(sync=SimpleNamespace(book=book, reader=None), metrics=Metrics())
    return BookAuditTask(keeper, repair, 2, 0.001, scans=lambda: scans[0],  # type: ignore[arg-type]
                         idle=lambda: idle[0], restored=restored.extend)


async def test_one_slice_per_finished_scan_and_only_while_idle() -> None:
    book, repair, scans, idle = FakeBook(list("abcde")), FakeRepair({"d"}), [0], [True]
    restored: list[str] = []
    audit = _audit(book, repair, scans, idle, restored)
    prepared = asyncio.Event()
    prepared.set()
    task = asyncio.create_task(audit.run(prepared))
    await asyncio.sleep(0.02)
    assert repair.read == [["a", "b"]]  # one slice for the scan seen, however long it waits
    idle[0], scans[0] = False, 1  # a scan that found something to liquidate
    await asyncio.sleep(0.02)
    assert repair.read == [["a", "b"]]
    idle[0] = True
    await asyncio.sleep(0.02)
    assert repair.read == [["a", "b"], ["c", "d"]] and restored == ["d"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_every_account_in_turn_and_new_ones_in_the_next_pass() -> None:
    book, repair = FakeBook(list("abc")), FakeRepair(set())
    restored: list[str] = []
    audit = _audit(book, repair, [0], [True], restored)
    await audit.step()
    book._users.append("z")  # a new account mid-pass
    await audit.step()
    assert repair.read == [["a", "b"], ["c"]] and audit.passes == 0
    repair.moved = True  # the book moved on during this read: nothing restored
    assert await audit.step() == [] and audit.passes == 1
    assert repair.read[-1] == ["a", "b"]
    repair.moved = False
    await audit.step()
    assert repair.read[-1] == ["c", "z"] and audit.audited == 5  # the moved slice unchecked
