"""The position book for one-shot commands: synced to the tip, from a private copy of the
daemon's checkpoint when there is one (else a backfill from the market's start block)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from keeper.app.config import KeeperConfig
from keeper.app.root import sync_config
from keeper.app.target import Target
from keeper.chain.rpc import JsonRpc
from keeper.obs.logging import get_logger
from keeper.pipeline.store import BookStore, StoreError
from keeper.pipeline.sync import BookSync
from keeper.protocols.aave_v3.book import PositionBook
from keeper.protocols.aave_v3.reader import AaveV3Contracts

log = get_logger(__name__)


async def synced_book(cfg: KeeperConfig, rpc: JsonRpc, target: Target,
                      contracts: AaveV3Contracts, *, progress: bool
                      ) -> tuple[PositionBook, int | None]:
    """The book at the chain's tip, and the checkpoint block it resumed from (None: a full
    backfill). The daemon's checkpoint is only ever read, through a copy."""
    with tempfile.TemporaryDirectory(prefix="keeper-book-") as tmp:
        # A one-shot command must never write to (or lock) the daemon's state.
        store = await asyncio.to_thread(
            checkpoint_copy, cfg.state.sqlite, Path(tmp) / "book.sqlite",
            {"pool": contracts.pool, "start_block": target.start_block})
        config = await sync_config(rpc, cfg, target, contracts, progress=progress)
        sync = BookSync(rpc, contracts, config, store=store)
        try:
            await sync.catch_up()
        except StoreError as exc:  # a checkpoint of another market or schema
            log.warning("checkpoint_unusable_full_backfill", error=str(exc))
            sync = BookSync(rpc, contracts, config)
            await sync.catch_up()
        finally:
            await sync.close()
    return sync.book, sync.resumed_from


def checkpoint_copy(source: Path, copy: Path, identity: dict[str, Any]) -> BookStore | None:
    """A consistent copy of the checkpoint at ``source`` (SQLite's online backup, safe while
    the daemon writes), as a store of its own; None when there is no usable checkpoint."""
    if not source.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src, \
                contextlib.closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)
    except sqlite3.Error as exc:
        log.warning("checkpoint_unreadable_full_backfill", path=str(source), error=str(exc))
        return None
    return BookStore(copy, identity=identity)
