"""``keeper breaker reset``: a request the daemon takes at its next block; bad input is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from keeper.pipeline.guard_resets import resets_dir, take_resets

ROOT = Path(__file__).resolve().parents[2]


def breaker(tmp_path: Path, *args: str, state: Path | None = None) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "keeper.toml"
    sqlite = state if state is not None else tmp_path / "keeper.sqlite"
    cfg.write_text(f'[network]\nname = "devnet"\nchain_id = 31337\n'
                   f'[state]\nsqlite = "{sqlite}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    return subprocess.run([sys.executable, "-m", "keeper", "breaker", "reset", "-c", str(cfg),
                           *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=60, check=False)


def test_reset_leaves_a_request_for_the_daemon(tmp_path: Path) -> None:
    proc = breaker(tmp_path, "--asset", "WETH")
    assert proc.returncode == 0, proc.stderr
    assert "WETH" in proc.stdout
    proc = breaker(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(take_resets(resets_dir(tmp_path / "keeper.sqlite"))) == ["*", "weth"]


def test_bad_asset_and_missing_state_dir_are_one_line(tmp_path: Path) -> None:
    for args, state, needle in (
            (["--asset", "0x12"], None, "--asset"),
            (["--asset", "two words"], None, "--asset"),
            ([], tmp_path / "nowhere" / "keeper.sqlite", "state.sqlite")):
        proc = breaker(tmp_path, *args, state=state)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
