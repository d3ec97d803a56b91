"""`keeper devnet up|status|down` as a user runs them: from saved state, fast, leaving nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from keeper.devnet.anvil import is_anvil_pid
from tests.conftest import TEST_STATE_DIR

ROOT = Path(__file__).resolve().parents[2]


def keeper(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keeper", "devnet", "--state-dir", str(state), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_up_from_saved_state_status_down(tmp_path: Path, devnet_node: object) -> None:
    # devnet_node made sure the saved deploy exists; reuse it in a private state dir.
    state = tmp_path / "devnet"
    state.mkdir()
    for name in ("deployed-state.json", "deployed-manifest.json", "deployed-state.key"):
        shutil.copy(TEST_STATE_DIR / name, state / name)
    t0 = time.perf_counter()
    up = keeper(state, "up", "--aave", "3.0")  # the saved v3.0 deploy (3.6: test_devnet_v36)
    elapsed = time.perf_counter() - t0
    assert up.returncode == 0, up.stderr
    assert "loaded saved state" in up.stdout
    assert elapsed < 5.0
    assert "RPC URL:  http://127.0.0.1:" in up.stdout
    assert f"manifest: {state / 'manifest.json'}" in up.stdout
    pid = int((state / "anvil.pid").read_text())
    try:
        assert is_anvil_pid(pid)
        assert (state / "anvil-cache").is_dir()  # its persisted states, not ~/.foundry's
        status = keeper(state, "status")
        assert status.returncode == 0 and "devnet running" in status.stdout
        again = keeper(state, "up", "--aave", "3.0")  # idempotent: finds the running one
        assert again.returncode == 0 and int((state / "anvil.pid").read_text()) == pid
    finally:
        down = keeper(state, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not is_anvil_pid(pid)
    assert not (state / "anvil-cache").exists()
    assert keeper(state, "status").returncode == 1
    gone = keeper(state, "underwater")
    assert gone.returncode == 1 and "not running" in gone.stderr and "Traceback" not in gone.stderr
