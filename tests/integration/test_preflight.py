"""A new user's first run (issue 10, "First run on a chain that is not the devnet"): every
command that talks to a node checks its chain id; a liquidator with no code, a young chain and
a chain that mines on demand are handled in one line or not at all."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keeper.app import root as app
from keeper.app.config import load_config
from keeper.commands.scan import scan
from keeper.commands.target import resolve_target
from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.manifest import MULTICALL3
from keeper.obs.logging import configure_logging

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "devnet.toml"
KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
NO_CODE = "0x00000000000000000000000000000000000000aa"


def env_for(devnet: Devnet, tmp_path: Path, **extra: str) -> dict[str, str]:
    manifest = tmp_path / "manifest.json"
    devnet.m.save(manifest)
    return {"KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
            "KEEPER_STATE__SQLITE": str(tmp_path / "keeper.sqlite"),
            "KEEPER_PRIVATE_KEY": KEY, **extra}


async def keeper_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keeper", *args, cwd=ROOT, env={**os.environ, **env},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


def one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("command", [["scan"], ["run", "--once"], ["run", "--once", "--dry-run"]])
async def test_every_command_checks_the_chain_id(devnet: Devnet, tmp_path: Path,
                                                 command: list[str]) -> None:
    env = env_for(devnet, tmp_path, KEEPER_NETWORK__CHAIN_ID="1")
    env.pop("KEEPER_PRIVATE_KEY")  # off the devnet's id a raw key is refused before the node
    code, err = await keeper_cli(env, *command, "-c", str(CONFIG))
    assert code == 2
    one_line(err, "network.chain_id", "chain 31337", "says 1")


async def test_a_liquidator_with_no_code_is_one_line(devnet: Devnet, tmp_path: Path) -> None:
    env = env_for(devnet, tmp_path, KEEPER_EXECUTOR__LIQUIDATOR=NO_CODE)
    code, err = await keeper_cli(env, "run", "--once", "-c", str(CONFIG))
    assert code == 2
    one_line(err, "executor.liquidator", "no contract at", NO_CODE)


async def test_a_young_chain_is_read_at_its_tip(devnet: Devnet, tmp_path: Path) -> None:
    # Multicall3 appears at the tip: `follow_depth` blocks below it, it is not there (as on
    # a chain younger than 32 blocks, or where it was deployed just now).
    rpc = devnet.rpc
    await rpc.call("anvil_setCode", [MULTICALL3, "0x"])
    await rpc.call("anvil_mine", [hex(40)])
    await rpc.call("anvil_setCode", [MULTICALL3, artifacts.ours_runtime("Multicall3")])
    await rpc.call("evm_mine")
    tip = int(await rpc.call("eth_blockNumber"), 16)
    cfg = load_config(CONFIG, env_for(devnet, tmp_path))
    report = await scan(cfg, progress=False)
    assert report.block == tip


async def test_confirmations_follow_a_chain_that_mines_on_demand(devnet: Devnet,
                                                                 tmp_path: Path) -> None:
    stream = io.StringIO()
    handle = configure_logging("DEBUG", stream=stream)
    try:
        for configured, expected in (("", 1), ("3", 1)):
            extra = {"KEEPER_EXECUTOR__CONFIRMATIONS": configured} if configured else {}
            cfg = load_config(CONFIG, env_for(devnet, tmp_path, **extra))
            async with app.build(cfg, resolve_target(cfg), dry_run=False) as keeper:
                assert keeper.executor is not None
                assert keeper.executor.sender.settings.confirmations == expected
        await devnet.rpc.call("evm_setAutomine", [False])
        try:
            cfg = load_config(CONFIG, env_for(devnet, tmp_path))
            async with app.build(cfg, resolve_target(cfg), dry_run=True) as keeper:
                assert keeper.executor is not None
                assert keeper.executor.sender.settings.confirmations == 2
        finally:
            await devnet.rpc.call("evm_setAutomine", [True])
    finally:
        handle.stop()
    warned = [json.loads(line) for line in stream.getvalue().splitlines()
              if "confirmations_lowered" in line]
    assert len(warned) == 1 and warned[0]["configured"] == 3
