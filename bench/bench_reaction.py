"""Reaction: from an oracle price update on chain to the daemon's liquidation being mined.

The daemon runs in-process against its own devnet node (heads over WebSocket, as configured
from the devnet manifest). Each round opens a fresh position just above health factor 1,
moves WETH down with one aggregator update (one block), and measures the wall time from that
transaction's receipt until the block holding the keeper's LiquidationCall is pushed over a
WebSocket subscription of its own (the logs are asked once a new block). The sender's own
detection→send histogram is reported next to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.race_tally import percentile
from keeper.app import root as app
from keeper.app.config import load_config
from keeper.app.daemon import Daemon
from keeper.chain.rpc import HttpRpc
from keeper.chain.subscription import Subscription
from keeper.chain.ws import WsRpc
from keeper.commands.target import resolve_target
from keeper.contracts import artifacts
from keeper.devnet import lifecycle
from keeper.devnet.driver import Devnet
from keeper.obs.logging import configure_logging

ROOT = Path(__file__).resolve().parents[1]
KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil account 1
ROUNDS = 30
_LIQUIDATION_CALL = artifacts.aave("Pool").abi.event("LiquidationCall").topic0


async def _liquidated(rpc: HttpRpc, pool: str, user: str, from_block: int) -> bool:
    topic_user = "0x" + "00" * 12 + user[2:]
    logs = await rpc.call("eth_getLogs", [{"address": pool, "fromBlock": hex(from_block),
                                           "toBlock": "latest",
                                           "topics": [_LIQUIDATION_CALL, None, None, topic_user]}])
    return bool(logs)


async def run() -> list[tuple[str, str, str]]:
    sends: list[float] = []
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(ROOT / "build" / "bench-devnet"), aave="3.0")
    handle = configure_logging("ERROR")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest_path = Path(tmp) / "manifest.json"
            manifest.save(manifest_path)
            cfg = load_config(ROOT / "config" / "devnet.toml", {
                "KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest_path),
                "KEEPER_STATE__SQLITE": str(Path(tmp) / "keeper.sqlite"),
                "KEEPER_METRICS__PORT": "0",
                "KEEPER_PRIVATE_KEY": KEY,
            })
            async with HttpRpc(node.url, timeout=60) as rpc:
                devnet = Devnet(rpc, manifest)
                await devnet.send_many(devnet.users.deposit_txs(manifest.deployer, "USDC",
                                                          50_000_000 * 10**6))
                async with app.build(cfg, resolve_target(cfg), dry_run=False) as keeper:
                    # Each observation of the sender's histogram, for its quantiles.
                    histogram = keeper.metrics.detection_to_send_seconds
                    observe = histogram.observe

                    def record(value: float, *args: Any, **kw: Any) -> None:
                        sends.append(value)
                        observe(value, *args, **kw)

                    histogram.observe = record  # type: ignore[method-assign,assignment]
                    daemon = Daemon(keeper)
                    task = asyncio.create_task(daemon.run())
                    try:
                        latencies = await _rounds(devnet, node.ws_url)
                    finally:
                        daemon.stop.set()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
    finally:
        handle.stop()
        await node.stop()
    ms = sorted(x * 1000 for x in latencies)
    p90 = ms[int(len(ms) * 0.9) - 1] if ms else float("nan")
    sent = sorted(x * 1000 for x in sends)
    return [
        ("price update → liquidation mined, median", f"{statistics.median(ms):.1f} ms",
         f"{len(ms)} rounds, one block after the update (anvil automine)"),
        ("price update → liquidation mined, p90", f"{p90:.1f} ms", ""),
        ("detection → tx handed to the node, p50 / p99",
         f"{statistics.median(sent):.1f} / {percentile(sent, 99):.1f} ms" if sent else "-",
         f"the sender's histogram, {len(sent)} sends: plan, simulate, sign, send"),
    ]


async def _rounds(devnet: Devnet, ws_url: str) -> list[float]:
    out: list[float] = []
    # The bench learns of each block as the daemon does, pushed over WebSocket: a poll of the
    # head every millisecond ran in the daemon's own event loop (the daemon runs in-process)
    # and took its turns on the path it measures.
    async with WsRpc(ws_url, timeout=10) as ws:
        heads = await ws.subscribe("newHeads")
        for i in range(ROUNDS):
            user = f"0x{0xbe0000 + i:040x}"
            await devnet.fund([user])
            prices = await devnet.prices()
            # 10 WETH borrowed against up to the 80% LTV: HF = 82.5% / 79.9% ≈ 1.03.
            weth_usd = 10 * prices["WETH"] // 10**8
            debt = int(weth_usd * 0.799) * 10**6
            await devnet.send_many([*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                                    devnet.users.tx_borrow(user, "USDC", debt)])
            await asyncio.sleep(0.3)  # let the daemon settle on the new block
            start_block = int(await devnet.rpc.call("eth_blockNumber"), 16)
            await devnet.set_price("WETH", prices["WETH"] * 95 // 100)
            t_update = time.perf_counter()
            mined = await _mined_at(devnet, heads, user, start_block, t_update + 10)
            if mined is not None:
                out.append(mined - t_update)
            # Restore the price and the AMM for the next round.
            await devnet.set_price("WETH", prices["WETH"])
            await devnet.arbitrage(["WETH"])
    return out


async def _mined_at(devnet: Devnet, heads: Subscription, user: str, start_block: int,
                    deadline: float) -> float | None:
    """When the head that holds ``user``'s liquidation arrived (perf_counter), or None if
    none came before ``deadline``; the logs are asked once a new block. Heads of the round's
    set-up, still queued, are at or below ``start_block`` and passed over."""
    seen = start_block + 1  # the price update's block
    while (left := deadline - time.perf_counter()) > 0:
        try:
            head = await asyncio.wait_for(anext(heads), left)
        except TimeoutError:
            return None
        arrived = time.perf_counter()
        if not isinstance(head, dict) or int(head["number"], 16) <= seen:
            continue
        if await _liquidated(devnet.rpc, devnet.m.pool, user, start_block):
            return arrived
        seen = int(head["number"], 16)
    return None
