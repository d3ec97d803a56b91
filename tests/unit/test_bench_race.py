"""The race's arithmetic, without a chain: percentiles, the naive keeper's config file, and the
table built from a made-up race."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench import race_report
from bench.bench_race import RaceRun, Sample, race_sizes, race_specs
from bench.naive_keeper import NaiveConfig, naive_address
from bench.race_report import Report, build, gas_bound, markdown, why_not_ours
from bench.race_tally import Side, Tally, percentile


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5], 50) == 5
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([3, 1, 2], 100) == 3


def test_race_sizes_are_counts_by_spaces_or_commas() -> None:
    assert race_sizes("1000 10000") == [1000, 10000]
    assert race_sizes(" 150,2000 ") == [150, 2000]
    for bad in ("", "1e4", "1000 -5", "0", "ten"):
        with pytest.raises(ValueError, match="borrower counts"):
            race_sizes(bad)


def test_race_specs_mark_the_races_with_a_busy_core() -> None:
    assert race_specs("1000 10000:busy") == [(1000, False), (10000, True)]
    assert race_specs("") == [(1000, False), (10000, False)]
    for bad in ("10000:idle", ":busy"):
        with pytest.raises(ValueError, match="borrower counts"):
            race_specs(bad)


def test_a_race_with_a_busy_core_says_so_and_gets_a_file_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = Report(10, "quiet machine", [("liquidations won", "3", "1")], [])
    busy = dataclasses.replace(plain, header="noisy machine", busy=True)
    monkeypatch.setattr(race_report, "RESULTS", tmp_path)
    race_report.write([busy, plain])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latest.md", "race-10-busy.md", "race-10.md"]
    latest = (tmp_path / "latest.md").read_text()
    assert latest.index("quiet machine") < latest.index("noisy machine")
    assert race_report.rows([plain, busy]) == [
        ("10: liquidations won", "3 | 1", "ours | naive"),
        ("10 busy: liquidations won", "3 | 1", "ours | naive")]


def test_naive_config_round_trips(tmp_path: Path) -> None:
    cfg = NaiveConfig("http://x", 31337, "0xpool", "0xoracle", "0xdp", (("USDC", "0xu", 6),),
                      ("0xa", "0xb"), "0xkey", str(tmp_path / "e.jsonl"))
    cfg.save(tmp_path / "c.json")
    assert NaiveConfig.load(tmp_path / "c.json") == cfg


def test_report_from_a_made_up_race() -> None:
    ours = Side(liquidations=3, debt_usd=300.0, bonus_usd=30.0, gas_usd=3.0, paid=3, txs=3,
                block_gas=180_000_000, first_block={"0x1": 101, "0x2": 101, "0x3": 102})
    naive = Side(liquidations=1, debt_usd=100.0, bonus_usd=10.0, gas_usd=1.0, paid=0, txs=2,
                 reverted=1, block_gas=6_000_000,
                 first_block={"0x4": 104})
    crash_wall = 1_000.0
    run = RaceRun(
        borrowers=10, crash_block=100, crash_wall=crash_wall, end_block=114,
        sunk={"0x1", "0x2", "0x3", "0x4"}, optimum={"0x1": 10.0, "0x2": 10.0, "0x4": 20.0},
        # Blocks 101-104 of 60M gas: 240M of room, 200M used (14M of it by someone else).
        tally=Tally({"ours": ours, "naive": naive}, others=0, last_block=104,
                    space=240_000_000, used=200_000_000),
        before=Sample(999.0, {"ours": 1.0, "naive": 2.0}, 100),
        after=Sample(1_020.0, {"ours": 2.5, "naive": 6.0}, 250),
        rss_mb={"ours": 100.0, "naive": 50.0},
        ours_events=[
            {"event": "liquidatable_accounts", "block": 99, "confirmed": 0, "ts": "1970-01-01T00:16:39Z"},
            {"event": "liquidatable_accounts", "block": 100, "confirmed": 4,
             "ts": "1970-01-01T00:16:40.250Z"},
            {"event": "liquidation_mined", "realised_net_usd": 15.0, "ts": "1970-01-01T00:16:41Z"},
        ],
        naive_events=[
            {"event": "sweep", "block": 99, "t": 998.0, "calls": 1000},
            {"event": "detected", "block": 100, "user": "0x4", "t": 1000.5},
            {"event": "sweep", "block": 100, "t": 1_001.5, "calls": 2010},
            {"event": "sweep", "block": 103, "t": 1_010.0, "calls": 4000},
        ],
    )
    report = build(run, 1, {"WETH": 0.7}, 60_000_000)
    rows = {m: (a, b) for m, a, b in report.rows}
    assert rows["liquidations won"] == ("3 (75.0%)", "1 (25.0%)")
    assert rows["of them, liquidations whose bonus paid their gas"] == ("3 (100.0%)", "0 (0.0%)")
    assert rows["debt repaid"] == ("$300 (75.0%)", "$100 (25.0%)")
    assert rows["reverted transactions"] == ("0 of 3", "1 of 2")
    assert rows["blocks crash → liquidation p50 / p99"] == ("1 / 2", "4 / 4")
    # 180M gas over 3 liquidations: one a 60M block; the 3 profitable accounts' firsts take
    # blocks +1, +2, +3.
    assert rows["the same, bound by block gas alone"] == (
        "2 / 3 (1 a block at 60,000,000 gas each)", "-")
    assert rows["block space taken, crash → last liquidation"] == ("75.0%", "2.5%")
    assert "4 blocks after the crash (their gas 83.3% used)" in report.header
    assert rows["crash block → all liquidatable flagged"] == ("+250 ms (4 of 4)", "+1500 ms (1 still open)")
    assert rows["RPC calls per block"] == ("10", "200")  # 150 and 3000 calls over 15 blocks
    assert rows["CPU seconds, crash → quiet"] == ("1.5", "4.0")
    assert rows["capture: realised / offline optimum"][0] == "$15 / $40 (37.5%)"
    assert "≤ 1 block: 2, ≤ 2 blocks: 2" in report.header
    assert "a block every 1 s of 60M gas" in report.header
    assert "| liquidations won | 3 (75.0%) | 1 (25.0%) |" in markdown([report])
    assert "busy" not in report.header
    # The same race with another process keeping a core busy: its CPU time in the header.
    noisy = build(dataclasses.replace(
        run, busy=True, before=Sample(999.0, {**run.before.cpu, "busy": 3.0}, 100),
        after=Sample(1_020.0, {**run.after.cpu, "busy": 23.5}, 250)),
        1, {"WETH": 0.7}, 60_000_000)
    assert noisy.busy and "busy from the crash on (20.5 CPU seconds, crash → quiet)." in noisy.header


def test_the_gas_bound_packs_the_first_liquidations_into_full_blocks() -> None:
    # The 10,000 race's figures: 2,330 liquidations in 526M gas (~226k each), 265 a 60M
    # block; the 882nd of 1,764 accounts (p50) in block +4, the 1,747th (p99) in block +7.
    ours = Side(liquidations=2_330, block_gas=526_000_000)
    assert gas_bound(ours, 1_764, 60_000_000) == "4 / 7 (265 a block at 225,751 gas each)"
    # Ten times the gas: 2,657 a block, every first within the block after the crash.
    assert gas_bound(ours, 1_764, 600_000_000).startswith("1 / 1 (2,657 a block")
    assert gas_bound(Side(), 1_764, 60_000_000) == "-"


def test_why_not_ours_counts_the_naive_keepers_wins_by_reason() -> None:
    naive = naive_address()
    forensics = {"reasons": {"queued": "queued: flagged but not yet planned",
                             "in_flight": "in flight"},
                 "liquidations": [{"liquidator": naive, "reason": "queued", "tx_hash": "0xA1"},
                                  {"liquidator": naive, "reason": "in_flight", "tx_hash": "0xb2"},
                                  {"liquidator": naive, "reason": "queued", "tx_hash": "0xc3"},
                                  {"liquidator": "0xother", "reason": "in_flight",
                                   "tx_hash": "0xd4"}]}
    assert why_not_ours(forensics) == [("queued: flagged but not yet planned", 2, 0),
                                       ("in flight", 1, 0)]
    # The naive keeper's transactions whose bonus did not pay their gas (the tally's hashes
    # are lower case); another liquidator's loss is not counted.
    assert why_not_ours(forensics, {"0xa1", "0xd4"}) == [
        ("queued: flagged but not yet planned", 2, 1), ("in flight", 1, 0)]


def test_the_report_says_how_many_of_the_naive_keepers_wins_cost_it_money() -> None:
    report = Report(10, "header", [], [("in flight", 3, 1), ("unprofitable by our model", 2, 2)])
    text = markdown([report])
    assert "| in flight | 3 | 1 |" in text
    assert "| unprofitable by our model | 2 | 2 |" in text
    assert "| total | 5 | 3 |" in text
