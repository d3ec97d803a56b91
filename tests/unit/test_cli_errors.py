"""Bad configuration and bad arguments: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keeper.app.config import load_config
from keeper.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def run_keeper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keeper", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_config_value_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[executor]\nmax_consecutive_failures = -3\n')
    assert_one_line_error(run_keeper("config", "-c", str(cfg)), "executor.max_consecutive_failures")


def test_unknown_config_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[network]\nrpc_url = "http://x"\n')
    assert_one_line_error(run_keeper("config", "-c", str(cfg)), "network.rpc_url", "unknown field")


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[network\n")
    assert_one_line_error(run_keeper("config", "-c", str(cfg)), "invalid TOML")
    assert_one_line_error(run_keeper("config", "-c", str(tmp_path / "nope.toml")), "not found")


def test_secret_in_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    secret = "0x" + "ab" * 32
    cfg.write_text(f'[account]\nprivate_key = "{secret}"\n')
    proc = run_keeper("config", "-c", str(cfg))
    assert_one_line_error(proc, "environment")
    assert secret not in proc.stderr + proc.stdout


def test_bad_cli_arguments() -> None:
    assert_one_line_error(run_keeper("devnet", "scenario", "--borrowers", "5"), "between 10 and 10000")
    assert_one_line_error(run_keeper("devnet", "up", "--port", "http"), "port must be an integer")
    assert_one_line_error(run_keeper("frobnicate"), "invalid choice")


def test_env_overrides_file_and_bad_env_is_a_config_error() -> None:
    base = ROOT / "config" / "devnet.toml"
    cfg = load_config(base, {"KEEPER_EXECUTOR__DRY_RUN": "true",
                             "KEEPER_NETWORK__RPC_URLS": "http://a:1, http://b:2"})
    assert cfg.executor.dry_run is True
    assert cfg.network.rpc_urls == ["http://a:1", "http://b:2"]
    with pytest.raises(ConfigError, match=r"^network\.rpc_urls\.0: "):
        load_config(base, {"KEEPER_NETWORK__RPC_URLS": "ftp://nope"})


def test_shipped_configs_are_valid() -> None:
    for name in ("devnet.toml", "example.mainnet.toml"):
        load_config(ROOT / "config" / name, {})


def test_secrets_from_env_and_file_are_hidden(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    key = "0x" + "11" * 32
    cfg = load_config(None, {"KEEPER_PRIVATE_KEY": key, "KEEPER_KEYSTORE_PASSWORD_FILE": str(pw)})
    assert cfg.secrets.private_key is not None
    assert cfg.secrets.private_key.get_secret_value() == key
    assert cfg.secrets.keystore_password is not None
    assert cfg.secrets.keystore_password.get_secret_value() == "hunter2"
    assert key not in repr(cfg) and "hunter2" not in repr(cfg)
