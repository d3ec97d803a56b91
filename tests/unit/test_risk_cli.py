"""``keeper risk`` on bad input: one line on stderr, exit code 2, before any network."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_cli_errors import assert_one_line_error, run_keeper


def test_out_must_be_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "report.md"
    f.write_text("")
    assert_one_line_error(run_keeper("risk", "--out", str(f)), "--out", "not a directory")


def test_paths_must_be_enough(tmp_path: Path) -> None:
    assert_one_line_error(run_keeper("risk", "--paths", "5"), "--paths")
    assert_one_line_error(run_keeper("risk", "--paths", "many"), "--paths")


def test_risk_levels_are_price_drops(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[risk]\nlevels = [0.2, 1.5]\n")
    assert_one_line_error(run_keeper("risk", "-c", str(cfg)), "risk.levels")
