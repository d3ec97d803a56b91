"""A book snapshot is frozen at its block while the live book moves on."""

from __future__ import annotations

import pytest

from keeper.protocols.aave_v3.book import BookError, PositionBook


def test_snapshot_copies_containers_and_refuses_an_open_block() -> None:
    book = PositionBook()
    snap = book.snapshot()
    assert snap is not book
    assert snap.block == book.block and snap.state is book.state
    assert snap._users is not book._users and snap._holders is not book._holders
    book._holders["0xasset"] = {"0xuser"}
    assert "0xasset" not in snap._holders  # the live book's changes do not leak in
    book._open_block = book.block
    with pytest.raises(BookError):
        book.snapshot()
