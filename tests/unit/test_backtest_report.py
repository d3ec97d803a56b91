"""The backtest report's verdicts: taken, or missed with the keeper's reason (no chain needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from keeper.app.backtest import Backtest, BlockState, KeeperTurn
from keeper.app.backtest_report import (
    NOT_SEEN,
    format_markdown,
    format_table,
    keeper_liquidations,
    source_rows,
    summary,
    to_json,
)
from keeper.app.replay import ReplayedBlock
from keeper.domain.plan import Plan, Rejection, RejectionReason
from keeper.exec.executor import Execution
from keeper.exec.tx import Status, TxOutcome
from keeper.protocols.aave_v3.events import LiquidationCall

COLL, DEBT, BOT = "0x" + "c" * 40, "0x" + "d" * 40, "0x" + "b" * 40
A, B, C, D, E = ("0x" + ch * 40 for ch in "12345")
SYMBOLS = {COLL: "WETH", DEBT: "USDC"}


def _mined(user: str, net_usd: int) -> Execution:
    plan = cast(Plan, SimpleNamespace(collateral_asset=COLL, debt_asset=DEBT, debt_to_cover=10))
    return Execution(user, plan=plan, realised_net_usd=net_usd, outcome=TxOutcome(
        Status.MINED, "liquidate", tx_hash="0xfeed", gas_used=500_000))


def _source(block: int, user: str) -> LiquidationCall:
    return LiquidationCall("0xpool", block, 0, COLL, DEBT, user, 7_000_000, 9, BOT, False)


def _state(block: int, *users: str) -> BlockState:
    return BlockState(block, 1000 + block, {COLL: 2000 * 10**8 - block, DEBT: 10**8}, users,
                      5 * 10**8)


def _backtest() -> Backtest:
    unprofitable = Rejection(C, RejectionReason.UNPROFITABLE, "net profit $-3.10 < minimum $1.00")
    turns = [
        KeeperTurn(11, (_mined(A, 123 * 10**8),)),
        KeeperTurn(12, (Execution(C, rejection=unprofitable),), held={D: (COLL,)}),
        KeeperTurn(13, (_mined(E, 5 * 10**8),)),
    ]
    blocks = [ReplayedBlock(b, 100 + b, 2, 2, 1 if b == 12 else 0, 0) for b in (11, 12, 13)]
    states = [_state(11, A, C, D), _state(12, C, D, E), _state(13)]
    sources = [_source(12, A), _source(12, B), _source(13, C), _source(13, D), _source(12, E)]
    return Backtest(10, 13, sources, turns, blocks, states, _state(10), {COLL: 18, DEBT: 6})


def test_every_source_liquidation_gets_a_verdict_with_the_keepers_reason() -> None:
    rows = {r.user: r for r in source_rows(_backtest(), SYMBOLS)}
    assert rows[A].taken and rows[A].reason == ""  # the keeper took A at block 11, before 12
    assert rows[A].debt_covered_usd == 7.0
    assert not rows[B].taken and rows[B].reason == NOT_SEEN  # never liquidatable at a turn
    assert rows[C].reason == "unprofitable: net profit $-3.10 < minimum $1.00"
    assert rows[D].reason.startswith("held by the oracle guard (WETH halted")
    # E: liquidatable after block 12, the source took it in 12 itself; the keeper only at 13.
    assert not rows[E].taken
    assert rows[E].reason == NOT_SEEN + " (the keeper took it later, at block 13)"


def test_totals_and_renderings_agree() -> None:
    bt = _backtest()
    total = summary(bt)
    assert total["source_liquidations"] == 5
    assert total["taken_by_keeper"] == 1 and total["missed"] == 4
    assert total["keeper_liquidations"] == 2 == len(keeper_liquidations(bt))
    assert total["keeper_profit_usd"] == 128.0
    assert total["keeper_gas_used"] == 1_000_000
    assert total["source_txs_reverted_on_replay"] == 1
    report: dict[str, Any] = to_json(bt, SYMBOLS)
    assert [b["keeper_liquidations"] for b in report["blocks"]] == [1, 0, 1]
    assert [b["liquidatable"] for b in report["blocks"]] == [3, 3, 0]
    table = format_table(bt, SYMBOLS)
    assert "WETH/USDC" in table and "TAKEN" in table
    assert "1 taken by the keeper, 4 missed" in table
    md = format_markdown(bt, SYMBOLS, "crash.png")
    assert "![the crash](crash.png)" in md and "| 7.0000 USDC | 7.00 |" in md


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    from keeper.app.backtest_chart import write_chart

    write_chart(_backtest(), SYMBOLS, tmp_path / "crash.png")
    assert (tmp_path / "crash.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
