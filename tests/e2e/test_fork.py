"""`keeper run --fork-url`: the keeper runs against an Anvil fork; the forked chain is untouched."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from keeper.devnet.anvil import Anvil
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population

ROOT = Path(__file__).resolve().parents[2]
KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil account 1


async def test_run_once_on_a_fork_liquidates_there_and_leaves_the_chain_alone(
        devnet_node: tuple[Anvil, Devnet], tmp_path: Path) -> None:
    node, devnet = devnet_node
    plans = plan_population(11, 120, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    await crash(devnet, {"WETH": 0.72}, blocks=2)
    under = [a for a in await devnet.account_data([p.address for p in plans])
             if a.health_factor < 10**18]
    assert under
    manifest = tmp_path / "manifest.json"
    devnet.m.save(manifest)
    head_before = int(await devnet.rpc.call("eth_blockNumber"), 16)
    nonce_before = await devnet.rpc.call("eth_getTransactionCount", [devnet.m.keeper, "latest"])

    env = {**os.environ, "KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
           "KEEPER_STATE__SQLITE": str(tmp_path / "real.sqlite"), "KEEPER_PRIVATE_KEY": KEY}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "keeper", "run", "-c", str(ROOT / "config" / "devnet.toml"),
         "--once", "--fork-url", node.url],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"(\d+) liquidatable account\(s\): (\d+) liquidated", proc.stdout)
    assert found is not None, proc.stdout
    assert int(found.group(2)) >= len(under) // 2 > 0

    # Nothing reached the forked chain, and the fork's book did not become its checkpoint.
    assert int(await devnet.rpc.call("eth_blockNumber"), 16) == head_before
    assert await devnet.rpc.call("eth_getTransactionCount",
                                 [devnet.m.keeper, "latest"]) == nonce_before
    still = [a for a in await devnet.account_data([p.address for p in plans])
             if a.health_factor < 10**18]
    assert len(still) == len(under)
    assert not (tmp_path / "real.sqlite").exists()
    assert KEY[2:] not in proc.stdout + proc.stderr


async def test_rehearsal_on_a_fork_needs_nothing_deployed(
        devnet_node: tuple[Anvil, Devnet], tmp_path: Path) -> None:
    """No manifest, no liquidator, no key: the config names only the market and the DEX, as a
    new user's would for any chain. The keeper deploys its own liquidator on the fork from a
    throwaway key and reports by symbol and in dollars."""
    node, devnet = devnet_node
    m = devnet.m
    plans = plan_population(13, 80, m, await devnet.prices())
    await seed_population(devnet, plans)
    await crash(devnet, {"WETH": 0.7}, blocks=2)
    head_before = int(await devnet.rpc.call("eth_blockNumber"), 16)
    config = tmp_path / "market.toml"
    config.write_text(f"""
[network]
chain_id = 31337
rpc_urls = ["{node.url}"]

[aave]
pool_addresses_provider = "{m.pool_addresses_provider}"
start_block = {m.deploy_block}

[dex]
uniswap_v2_factory = "{m.uniswap_factory}"
native_asset = "{m.reserve("WETH").address}"
hubs = ["{m.reserve("WETH").address}", "{m.reserve("USDC").address}"]

[state]
sqlite = "{tmp_path / "real.sqlite"}"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "keeper", "run", "-c", str(config), "--once", "--dry-run",
         "--fork-url", node.url],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fork: deployed a liquidator of ours" in proc.stdout, proc.stdout
    found = re.search(r"(\d+) liquidatable account\(s\)", proc.stdout)
    assert found is not None and int(found.group(1)) > 0, proc.stdout
    # Pairs and amounts by symbol (read from the tokens on chain), reasons in dollars.
    assert re.search(r"\b(WETH|WBTC|wstETH|LINK|DAI|USDC)/(WETH|WBTC|DAI|USDC|USDT)\b",
                     proc.stdout), proc.stdout
    assert "would send" in proc.stdout, proc.stdout
    assert re.search(r"[\d,.]+ (USDC|DAI|USDT|WETH|WBTC)\b", proc.stdout), proc.stdout
    assert "8 decimals" not in proc.stdout and "0x5fbdb2315678" not in proc.stdout.lower()
    # Nothing reached the forked chain.
    assert int(await devnet.rpc.call("eth_blockNumber"), 16) == head_before
