"""The SQLite checkpoint: a round trip gives the same book; another market's file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.domain.wadray import RAY
from keeper.pipeline.store import BookStore, StoreError
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3.book import PositionBook
from keeper.protocols.aave_v3.reader import ReserveTokens
from tests.unit.test_book_journal import A_TOKEN, ASSET, S_TOKEN, USER, V_TOKEN, _apply


async def test_checkpoint_round_trip_with_journal(tmp_path: Path) -> None:
    book = PositionBook()
    book.register_reserves([ReserveTokens(ASSET, A_TOKEN, S_TOKEN, V_TOKEN)])
    _apply(book, 1, [ev.ScaledMint(A_TOKEN, 1, 0, USER, USER, 2**120, 0, RAY)], 100)
    _apply(book, 2, [ev.ReserveUsedAsCollateralEnabled("0xpool", 2, 0, ASSET, USER)], 99)
    store = BookStore(tmp_path / "b.sqlite", {"pool": "0xpool", "start_block": 0})
    await store.checkpoint(book)
    _apply(book, 3, [ev.ScaledMint(V_TOKEN, 3, 0, USER, USER, 7, 0, RAY)], 98)
    await store.checkpoint(book)  # incremental: only the dirty user and the new journal entry
    await store.close()

    again = BookStore(tmp_path / "b.sqlite", {"pool": "0xpool", "start_block": 0})
    loaded = await again.load()
    assert loaded is not None
    other = PositionBook()
    other.load(loaded.block, loaded.state, loaded.users, loaded.journal)
    assert other.block == book.block
    assert other.record(USER) == book.record(USER)
    assert other.market() == book.market()
    other.rollback(1)  # the saved journal works after a restart
    assert other.record(USER).collateral == frozenset()
    await again.close()

    with pytest.raises(StoreError, match="another market"):
        await BookStore(tmp_path / "b.sqlite", {"pool": "0xother", "start_block": 0}).load()


async def test_bad_state_paths_are_refused_with_one_line(tmp_path: Path) -> None:
    identity = {"pool": "0xpool", "start_block": 0}
    with pytest.raises(StoreError, match="does not exist"):
        BookStore(tmp_path / "missing" / "b.sqlite", identity)
    assert not (tmp_path / "missing").exists()  # never created silently
    with pytest.raises(StoreError, match="is a directory"):
        BookStore(tmp_path, identity)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all, just some text" * 10)
    with pytest.raises(StoreError, match="not a database") as err:
        await BookStore(junk, identity).load()
    assert "\n" not in str(err.value)
