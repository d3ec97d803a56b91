"""The book's checkpoint in SQLite: users, market state, journal and the last block, atomically.

One checkpoint is one transaction (WAL journal mode), so a crash leaves either the previous
checkpoint or the new one, never a mix. Only users changed since the last checkpoint are
written. The undo journal of the last blocks is saved too: after a restart the sync can still
roll back a reorg that happened while it was down, if it is shallow enough.

SQLite calls block, so every method that touches the database is a coroutine that runs it in
a worker thread (``asyncio.to_thread``); the snapshot of the book that a checkpoint writes is
taken on the event loop, before the thread starts, so the book may move on meanwhile.

Numbers are uint256: they are stored in JSON text (Python's json keeps big ints exact), not in
SQLite INTEGER columns (64-bit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.domain.account import EModeCategory, ReserveState, UserReserve
from keeper.domain.reserve_config import (
    decode_reserve_configuration,
    encode_reserve_configuration,
)
from keeper.domain.revision import AaveRevision
from keeper.errors import KeeperError
from keeper.protocols.aave_v3.book import (
    BlockJournal,
    BookBlock,
    MarketState,
    PositionBook,
    UserRecord,
)
from keeper.protocols.aave_v3.reader import MarketHints, MarketRead, ReserveTokens

SCHEMA_VERSION = 1


class StoreError(KeeperError, RuntimeError):
    """The checkpoint database is unreadable or belongs to another market."""


# ---- JSON forms of the book's types ------------------------------------------------------------
def _block_json(b: BookBlock) -> list[Any]:
    return [b.number, b.hash, b.parent_hash, b.timestamp]


def _block(d: list[Any]) -> BookBlock:
    return BookBlock(int(d[0]), str(d[1]), str(d[2]), int(d[3]))


def _user_json(rec: UserRecord) -> dict[str, Any]:
    return {
        "c": sorted(rec.collateral),
        "e": rec.emode_category,
        "p": {
            a: [p.scaled_a_token_balance, p.scaled_variable_debt, p.stable_debt_principal,
                p.stable_borrow_rate, p.stable_last_update_timestamp]
            for a, p in rec.positions.items()
        },
    }


def _user(d: Mapping[str, Any]) -> UserRecord:
    return UserRecord(
        frozenset(d["c"]), int(d["e"]), {a: UserReserve(*(int(x) for x in p)) for a, p in d["p"].items()}
    )


def _reserve_json(r: ReserveState) -> list[Any]:
    return [r.asset, r.id, encode_reserve_configuration(r.configuration), r.liquidity_index,
            r.current_liquidity_rate, r.variable_borrow_index, r.current_variable_borrow_rate,
            r.last_update_timestamp]


def _reserve(d: list[Any]) -> ReserveState:
    return ReserveState(str(d[0]), int(d[1]), decode_reserve_configuration(int(d[2])),
                        *(int(x) for x in d[3:8]))


def _read_json(r: MarketRead) -> dict[str, Any]:
    return {
        "list": list(r.reserves_list),
        "reserves": [_reserve_json(x) for x in r.reserves.values()],
        "tokens": [[t.asset, t.a_token, t.stable_debt_token, t.variable_debt_token]
                   for t in r.tokens.values()],
        "prices": dict(r.prices),
        "sources": dict(r.sources),
        "emodes": {str(i): [c.ltv, c.liquidation_threshold, c.liquidation_bonus, c.price_source,
                            c.label, c.collateral_bitmap, c.borrowable_bitmap, c.ltvzero_bitmap]
                   for i, c in r.emode_categories.items()},
        "virtual": dict(r.virtual_balances),
        "grace": dict(r.grace_periods),
        "deficits": dict(r.deficits),
    }


def _emode(c: list[Any]) -> EModeCategory:
    # Checkpoints written before liquid eMode have five fields: a v3.0 category.
    bitmaps = [*c[5:8], None, None, 0][:3]
    return EModeCategory(int(c[0]), int(c[1]), int(c[2]), str(c[3]), str(c[4]),
                         None if bitmaps[0] is None else int(bitmaps[0]),
                         None if bitmaps[1] is None else int(bitmaps[1]), int(bitmaps[2] or 0))


def _ints(d: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in (d or {}).items()}


def _read(d: Mapping[str, Any]) -> MarketRead:
    reserves = [_reserve(x) for x in d["reserves"]]
    tokens = [ReserveTokens(*x) for x in d["tokens"]]
    return MarketRead(
        reserves_list=tuple(d["list"]),
        reserves={r.asset: r for r in reserves},
        tokens={t.asset: t for t in tokens},
        prices={k: int(v) for k, v in d["prices"].items()},
        sources=dict(d["sources"]),
        emode_categories={int(i): _emode(c) for i, c in d["emodes"].items()},
        virtual_balances=_ints(d.get("virtual")),
        grace_periods=_ints(d.get("grace")),
        deficits=_ints(d.get("deficits")),
    )


def state_json(s: MarketState) -> dict[str, Any]:
    return {
        "read": None if s.read is None else _read_json(s.read),
        "hints": [list(s.hints.assets), sorted(s.hints.emode_ids), sorted(s.hints.emode_sources)],
        "tokens": [[t.asset, t.a_token, t.stable_debt_token, t.variable_debt_token]
                   for t in s.tokens.values()],
        "aggregators": {a: sorted(v) for a, v in s.aggregators.items()},
        "proxies": sorted(s.proxies),
        "revision": int(s.revision),
    }


def state(d: Mapping[str, Any]) -> MarketState:
    assets, ids, sources = d["hints"]
    tokens = [ReserveTokens(*x) for x in d["tokens"]]
    return MarketState(
        read=None if d["read"] is None else _read(d["read"]),
        hints=MarketHints(tuple(assets), frozenset(int(i) for i in ids), frozenset(sources)),
        tokens={t.asset: t for t in tokens},
        aggregators={a: frozenset(v) for a, v in d["aggregators"].items()},
        proxies=frozenset(d["proxies"]),
        revision=AaveRevision(int(d.get("revision", AaveRevision.V3_0))),
    )


def _journal_json(j: BlockJournal) -> str:
    return json.dumps({
        "block": _block_json(j.block),
        "previous": _block_json(j.previous_block),
        "state": state_json(j.previous_state),
        "users": {u: _user_json(r) for u, r in j.users.items()},
    })


def _journal(text: str) -> BlockJournal:
    d = json.loads(text)
    return BlockJournal(_block(d["block"]), _block(d["previous"]), state(d["state"]),
                        {u: _user(r) for u, r in d["users"].items()})


# ---- the database ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What one checkpoint writes, taken from the book on the event loop."""

    block: BookBlock
    state: str
    upserts: tuple[tuple[str, str], ...]
    deletes: tuple[str, ...]
    journal: tuple[tuple[int, str, str], ...]  # (number, hash, JSON): entries not written yet
    keep_journal: tuple[int, ...]  # every journaled block number now in the book


@dataclass(frozen=True, slots=True)
class Loaded:
    """A checkpoint read back: enough to ``PositionBook.load``."""

    block: BookBlock
    state: MarketState
    users: dict[str, UserRecord]
    journal: list[BlockJournal]
    meta: dict[str, Any]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (user TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (number INTEGER PRIMARY KEY, data TEXT NOT NULL);
"""


class BookStore:
    """A SQLite file holding one market's book. ``identity`` (the market's addresses and the
    start block) is stored with it: a file written for another market is refused."""

    def __init__(self, path: Path | str, identity: Mapping[str, Any]) -> None:
        self.path = Path(path)
        # Checked up front (a stat, no IO worth a thread): the keeper must stop with one line
        # before it starts, not create a directory tree where a typo pointed.
        if self.path.is_dir():
            raise StoreError(f"state database {self.path} is a directory")
        if not self.path.parent.is_dir():
            raise StoreError(f"state database {self.path}: directory {self.path.parent} does "
                             "not exist (create it first)")
        self.identity = dict(identity)
        self._conn: sqlite3.Connection | None = None
        self._written: dict[int, str] = {}  # journal rows on disk: number -> block hash
        self._lock = asyncio.Lock()

    # The synchronous halves run in a worker thread; only one runs at a time because every
    # caller awaits the previous operation (the sync owns the store).
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            except sqlite3.Error as exc:
                raise StoreError(f"state database {self.path}: {exc}") from None
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:  # "file is not a database", read-only, ...
                conn.close()
                raise StoreError(f"state database {self.path}: {exc}") from None
            self._conn = conn
        return self._conn

    def _load(self) -> Loaded | None:
        conn = self._connect()
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        if "block" not in meta:
            return None
        if meta.get("version") != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema {meta.get('version')}, expected {SCHEMA_VERSION}")
        if meta.get("identity") != self.identity:
            raise StoreError(
                f"{self.path} holds the book of another market or start block "
                f"({meta.get('identity')}); use another file or delete it"
            )
        users = {u: _user(json.loads(d)) for u, d in conn.execute("SELECT user, data FROM users")}
        rows = conn.execute("SELECT number, data FROM journal ORDER BY number").fetchall()
        journal = [_journal(d) for _, d in rows]
        self._written = {j.block.number: j.block.hash for j in journal}
        return Loaded(_block(meta["block"]), state(meta["state"]), users, journal, meta)

    def _write(self, cp: Checkpoint) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO users (user, data) VALUES (?, ?)", cp.upserts)
            conn.executemany("DELETE FROM users WHERE user = ?", [(u,) for u in cp.deletes])
            keep = set(cp.keep_journal)
            stale = [(n,) for n in self._written if n not in keep]
            conn.executemany("DELETE FROM journal WHERE number = ?", stale)
            conn.executemany(
                "INSERT OR REPLACE INTO journal (number, data) VALUES (?, ?)",
                [(n, text) for n, _, text in cp.journal],
            )
            meta = {
                "version": SCHEMA_VERSION,
                "identity": self.identity,
                "block": _block_json(cp.block),
            }
            rows = [(k, json.dumps(v)) for k, v in meta.items()] + [("state", cp.state)]
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _clear(self) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM users")
        conn.execute("DELETE FROM journal")
        conn.execute("DELETE FROM meta")
        conn.execute("COMMIT")
        self._written = {}

    # ---- the async API ----------------------------------------------------------------------
    async def load(self) -> Loaded | None:
        """The last checkpoint, or None for a new file."""
        return await asyncio.to_thread(self._load)

    def snapshot(self, book: PositionBook, *, full: bool = False) -> Checkpoint:
        """What to write for ``book`` now; clears the book's dirty set. Runs on the loop."""
        users = book.users() if full else book.dirty
        upserts: list[tuple[str, str]] = []
        deletes: list[str] = []
        for u in list(users):
            rec = book.record(u)
            if rec.is_empty():
                deletes.append(u)
            else:
                upserts.append((u, json.dumps(_user_json(rec))))
        book.dirty = set()
        journal = tuple(
            (n, j.block.hash, _journal_json(j)) for n, j in book.journal.items()
            if self._written.get(n) != j.block.hash
        )
        return Checkpoint(
            block=book.block,
            state=json.dumps(state_json(book.state)),
            upserts=tuple(upserts),
            deletes=tuple(deletes),
            journal=journal,
            keep_journal=tuple(book.journal),
        )

    async def write(self, cp: Checkpoint) -> None:
        """Write a checkpoint in one transaction (in a worker thread).

        A cancelled caller still waits for a write already in the thread to finish: the
        connection serves one thread at a time, and the next write (the final checkpoint of
        a cancelled sync) must not start beside it.
        """
        async with self._lock:
            task = asyncio.ensure_future(asyncio.to_thread(self._write, cp))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await task
                if task.done() and not task.cancelled() and task.exception() is None:
                    self._written_ok(cp)
                raise
            self._written_ok(cp)

    def _written_ok(self, cp: Checkpoint) -> None:
        # Only after the commit: a failed write must be retried in full next time.
        keep = set(cp.keep_journal)
        self._written = {n: h for n, h in self._written.items() if n in keep}
        self._written.update((n, h) for n, h, _ in cp.journal)

    async def checkpoint(self, book: PositionBook, *, full: bool = False) -> None:
        """Snapshot ``book`` and write it."""
        cp = self.snapshot(book, full=full)
        try:
            await self.write(cp)
        except BaseException:
            # Not written: those users must go out with the next checkpoint.
            book.dirty |= {u for u, _ in cp.upserts} | set(cp.deletes)
            raise

    async def clear(self) -> None:
        """Forget everything (before a re-index)."""
        await asyncio.to_thread(self._clear)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)
