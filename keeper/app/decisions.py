"""The daemon's decision record: per account and block, what the keeper knew and what it did.

``keeper forensics`` reads it to say why the keeper did not win a liquidation. Each record is
one ``Decision``: the account was flagged liquidatable (or left the candidates), held by the
oracle guard (or released), planned or skipped by the planner (with the reason and the
figure), a transaction handed out (hash, nonce, tip, head) and how it ended; keeper-wide
records (``user == ""``) say when sending was halted (kill switch, circuit breaker, gas budget)
and when it resumed.

The hot path only appends to a list on the event loop; ``DecisionLog.run`` flushes the list in
batches to a ``decisions`` table of the daemon's SQLite file, in a worker thread (its own
connection: the book's store keeps its own, and WAL lets the two take turns), and prunes
records older than ``keep_blocks`` blocks. The file outlives a restart and another process
(``keeper forensics``) can read it while the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from keeper.domain.plan import Plan, Rejection
from keeper.errors import KeeperError
from keeper.exec.tx import SendAttempt, TxOutcome, TxRequest
from keeper.obs.logging import get_logger

log = get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    block INTEGER NOT NULL,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL,
    head INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_block ON decisions (block);
"""
LABEL_PREFIX = "liquidate "  # the executor's request label: "liquidate <user>"
MAX_PENDING = 200_000  # records kept in memory while the file cannot be written


class DecisionStoreError(KeeperError, RuntimeError):
    """The decision record cannot be read."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One thing the keeper knew or did. ``block`` is the block its view was at (the scanned
    block, the head a transaction was handed out at, the block it was mined in); ``at`` is wall
    time (seconds); ``data`` the kind's figures; ``head`` the newest block applied then."""

    block: int
    user: str
    kind: str  # flagged cleared held released planned skipped sent outcome halt
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)
    head: int = -1  # the newest block the keeper had applied when it recorded this

    @property
    def known_at(self) -> int:
        """The block by which the keeper knew this: a verdict made after block B arrived
        was not the keeper's word on B, whatever block it planned on."""
        return max(self.block, self.head)


class DecisionLog:
    """Appends on the loop, writes in batches off it (see the module docstring)."""

    def __init__(self, path: Path | str, *, keep_blocks: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.keep_blocks = keep_blocks
        self.clock = clock
        self.pending: list[Decision] = []
        self.candidates: frozenset[str] = frozenset()
        self.held_users: frozenset[str] = frozenset()
        self.halted: tuple[str, ...] = ()
        self.newest_block = 0
        self.head: Callable[[], int] = lambda: -1  # the daemon's: the book's block
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def add(self, kind: str, block: int, user: str = "", *, seen: int | None = None,
            **data: Any) -> None:
        """Append one record (on the loop: no IO); ``seen``: a block the keeper is known to
        have had then, beyond the book's (a simulation's head)."""
        head = max(self.head(), seen if seen is not None else -1)
        self.pending.append(Decision(block, user, kind, self.clock(), data, head))
        self.newest_block = max(self.newest_block, block)
        if len(self.pending) > MAX_PENDING:
            del self.pending[:len(self.pending) - MAX_PENDING]

    # ---- what the daemon tells it ----------------------------------------------------------
    def scanned(self, block: int, users: Iterable[str], fresh: Iterable[str]) -> None:
        """The scan of ``block`` found ``users``; ``fresh`` are newly flagged (a new ``Seen``)."""
        now = frozenset(users)
        for user in fresh:
            self.add("flagged", block, user)
        for user in self.candidates - now:
            self.add("cleared", block, user)
        self.candidates = now

    def held(self, block: int, holding: Mapping[str, Iterable[str]]) -> None:
        """The oracle guard held these accounts at ``block`` (user -> halted assets)."""
        now = frozenset(holding)
        for user in now - self.held_users:
            self.add("held", block, user, assets=sorted(holding[user]))
        for user in self.held_users - now:
            self.add("released", block, user)
        self.held_users = now

    def halts(self, block: int, codes: Iterable[str], messages: Iterable[str]) -> None:
        """What halts every send (kill switch, breaker, gas budget); recorded on a change."""
        now = tuple(sorted(codes))
        if now != self.halted:
            self.add("halt", block, codes=list(now), messages=list(messages))
            self.halted = now

    def verdict(self, block: int, user: str, verdict: Plan | Rejection) -> None:
        """The planner's word on ``user`` at ``block``: a plan, or why not (with the figure)."""
        if isinstance(verdict, Plan):
            self.add("planned", block, user, net_usd=verdict.net_profit_usd)
        else:
            self.add("skipped", block, user, reason=verdict.reason.value, detail=verdict.detail,
                     best_net_usd=verdict.best_net_profit_usd)

    def handed_out(self, req: TxRequest, nonce: int, attempt: SendAttempt, sender: str) -> None:
        """A signed transaction for a liquidation went out (the sender's hook)."""
        user = req.label.removeprefix(LABEL_PREFIX) if req.label.startswith(LABEL_PREFIX) else ""
        if user:
            self.add("sent", attempt.block, user, tx_hash=attempt.tx_hash, nonce=nonce,
                     tip=attempt.fees.max_priority_fee_per_gas, attempt=attempt.kind,
                     sender=sender)

    def outcome(self, block: int, user: str, outcome: TxOutcome) -> None:
        """How a liquidation's request ended (``block``: mined in, else the keeper's view)."""
        self.add("outcome", outcome.block_number or block, user, seen=outcome.head,
                 status=outcome.status.value, reason=outcome.reason, hashes=list(outcome.hashes))

    # ---- the file --------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def _write(self, batch: list[Decision], prune_below: int) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO decisions (block, user, kind, at, data, head) VALUES (?, ?, ?, ?, ?, ?)",
                [(d.block, d.user, d.kind, d.at, json.dumps(dict(d.data), default=str), d.head)
                 for d in batch])
            if prune_below > 0:
                conn.execute("DELETE FROM decisions WHERE block < ?", (prune_below,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def flush(self) -> None:
        """Write what was appended since the last flush (in a worker thread).

        One write at a time: a cancelled caller still waits for its write in the thread, so
        the final flush never shares the connection with it."""
        async with self._lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, []
            task = asyncio.ensure_future(asyncio.to_thread(
                self._write, batch, self.newest_block - self.keep_blocks))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await task
                raise
            except sqlite3.Error as exc:
                # Kept for the next flush: the record is a report, never a reason to stop.
                self.pending[:0] = batch
                log.warning("decision_record_write_failed", path=str(self.path),
                            error=str(exc), pending=len(self.pending))

    async def run(self, interval: float) -> NoReturn:
        """Flush every ``interval`` seconds, for ever."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception as exc:  # a task boundary: the record never stops the keeper
                log.error("decision_record_flush_failed", error=f"{type(exc).__name__}: {exc}",
                          pending=len(self.pending))

    async def close(self) -> None:
        """The last flush, then the connection closes."""
        with contextlib.suppress(sqlite3.Error):
            await self.flush()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)


def read_decisions(path: Path | str, to_block: int | None = None) -> list[Decision]:
    """Every record up to ``to_block`` (all when None), oldest first: a read-only open, safe
    beside the running daemon."""
    p = Path(path)
    if not p.is_file():
        raise DecisionStoreError(f"state database {p} does not exist (is this the daemon's "
                                 "config?)")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise DecisionStoreError(f"state database {p}: {exc}") from None
    try:
        has = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND "
                           "name='decisions'").fetchone()
        if has is None:
            return []
        limit = to_block if to_block is not None else 2**62
        rows = conn.execute("SELECT block, user, kind, at, data, head FROM decisions "
                            "WHERE block <= ? ORDER BY id", (limit,)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise DecisionStoreError(f"state database {p}: {exc}") from None
    finally:
        conn.close()
    return [Decision(int(b), str(u), str(k), float(a), json.loads(d), int(h))
            for b, u, k, a, d, h in rows]
