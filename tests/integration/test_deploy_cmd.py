"""`keeper deploy-liquidator`: a signed creation transaction, owned by the configured key."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet

ROOT = Path(__file__).resolve().parents[2]
DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil account 1


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keeper", "deploy-liquidator", "-c",
                           str(ROOT / "config" / "devnet.toml")], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120, check=False)


async def test_deploy_liquidator_signs_and_prints_the_address(devnet: Devnet, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    devnet.m.save(manifest)
    env = {**os.environ, "KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
           "KEEPER_PRIVATE_KEY": DEV_KEY}
    before = int(await devnet.rpc.call("eth_getTransactionCount", [devnet.m.keeper, "latest"]), 16)
    proc = await asyncio.to_thread(_run, env)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"deployed at (0x[0-9a-fA-F]{40}) \(owner (0x[0-9a-f]{40})\)", proc.stdout)
    assert found is not None, proc.stdout
    address, owner = found.group(1).lower(), found.group(2)
    assert owner == devnet.m.keeper
    (on_chain_owner,) = await devnet.tx.call(address, artifacts.ours("FlashLiquidator").abi["owner"])
    assert on_chain_owner.lower() == devnet.m.keeper
    after = int(await devnet.rpc.call("eth_getTransactionCount", [devnet.m.keeper, "latest"]), 16)
    assert after == before + 1  # signed and sent by the keeper's key, once
    assert DEV_KEY[2:] not in proc.stdout + proc.stderr

    # Without a key: one line, nothing sent.
    no_key = {k: v for k, v in env.items() if k != "KEEPER_PRIVATE_KEY"}
    proc = await asyncio.to_thread(_run, no_key)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "no signing key" in proc.stderr
