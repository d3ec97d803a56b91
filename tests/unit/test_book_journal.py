"""The book's undo journal, holders index and derived configuration, without a chain."""

from __future__ import annotations

import pytest

from keeper.domain.account import ReserveState
from keeper.domain.reserve_config import ReserveConfiguration
from keeper.domain.wadray import RAY, percent_mul, wad_div
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3.book import BookBlock, BookRollbackError, PositionBook
from keeper.protocols.aave_v3.reader import MarketHints, MarketRead, ReserveTokens

ASSET = "0x" + "a0" * 20
A_TOKEN, S_TOKEN, V_TOKEN = ("0x" + c * 20 for c in ("a1", "a2", "a3"))
USER = "0x" + "01" * 20


def _read(price: int) -> MarketRead:
    cfg = ReserveConfiguration(ltv=8000, liquidation_threshold=8500, liquidation_bonus=10500,
                               decimals=18, active=True)
    return MarketRead((ASSET,), {ASSET: ReserveState(ASSET, 0, cfg)},
                      {ASSET: ReserveTokens(ASSET, A_TOKEN, S_TOKEN, V_TOKEN)}, {ASSET: price},
                      {ASSET: "0x" + "b0" * 20})


def _block(n: int) -> BookBlock:
    return BookBlock(n, f"0x{n:064x}", f"0x{n - 1:064x}", 1_000 + n)


def _apply(book: PositionBook, n: int, events: list[ev.AaveEvent], price: int) -> None:
    book.begin_block(_block(n))
    book.apply_all(events)
    book.set_market(_read(price), MarketHints((ASSET,)))
    book.end_block()


def test_rollback_restores_users_market_and_holders() -> None:
    book = PositionBook(window=8)
    book.register_reserves([ReserveTokens(ASSET, A_TOKEN, S_TOKEN, V_TOKEN)])
    supply = ev.ScaledMint(A_TOKEN, 1, 0, USER, USER, 10**18, 0, RAY)
    enable = ev.ReserveUsedAsCollateralEnabled("0xpool", 1, 1, ASSET, USER)
    _apply(book, 1, [supply, enable], 100)
    borrow = ev.ScaledMint(V_TOKEN, 2, 0, USER, USER, 5 * 10**17, 0, RAY)
    book.begin_block(_block(2))
    book.apply(borrow)
    book.set_market(_read(90), MarketHints((ASSET,)))
    update = book.end_block()
    assert update.touched_users == {USER}
    assert update.moved_assets == {ASSET}
    assert book.account(USER).configuration.data == 0b11  # borrowing + collateral, id 0
    # 1 unit of collateral at 90 (threshold 85%) against 0.5 unit of debt at 90.
    assert book.health_factor(USER) == wad_div(percent_mul(90, 8500), 45)

    book.rollback(1)
    assert book.block_number == 1
    assert book.account(USER).configuration.data == 0b10
    assert book.market().prices[ASSET] == 100
    assert book.holders(ASSET) == {USER}

    book.rollback(0)
    assert USER not in set(book.users())
    assert book.holders(ASSET) == set()


def test_rollback_below_the_journal_window_is_refused() -> None:
    book = PositionBook(window=1)
    book.register_reserves([ReserveTokens(ASSET, A_TOKEN, S_TOKEN, V_TOKEN)])
    _apply(book, 1, [ev.ScaledMint(A_TOKEN, 1, 0, USER, USER, 10, 0, RAY)], 100)
    _apply(book, 2, [], 100)
    book.rollback(1)
    _apply(book, 2, [], 100)
    _apply(book, 3, [], 100)
    with pytest.raises(BookRollbackError):
        book.rollback(1)


def test_abort_block_undoes_a_half_applied_block() -> None:
    book = PositionBook()
    book.register_reserves([ReserveTokens(ASSET, A_TOKEN, S_TOKEN, V_TOKEN)])
    _apply(book, 1, [ev.ScaledMint(A_TOKEN, 1, 0, USER, USER, 10, 0, RAY)], 100)
    book.begin_block(_block(2))
    book.apply(ev.ScaledMint(A_TOKEN, 2, 0, USER, USER, 10, 0, RAY))
    with pytest.raises(Exception, match="scaled balance"):
        book.apply(ev.ScaledBurn(A_TOKEN, 2, 1, USER, USER, 100, 0, RAY))
    book.abort_block()
    assert book.record(USER).positions[ASSET].scaled_a_token_balance == 10
    assert book.block_number == 1
