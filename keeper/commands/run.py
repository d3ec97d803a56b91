"""``keeper run``: the daemon, or one pass with ``--once``; ``--dry-run`` signs nothing;
``--fork-url URL`` runs against an Anvil fork of that chain (nothing reaches the real one)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from keeper.app.cluster import cluster_node, run_clustered
from keeper.app.config import KeeperConfig, load_config
from keeper.app.daemon import run_daemon
from keeper.app.daemon_settings import DaemonSettings
from keeper.app.once import run_once
from keeper.app.report import asset_symbols, format_executions
from keeper.app.root import build
from keeper.chain.rpc import public_url
from keeper.commands.rehearsal import own_liquidator
from keeper.commands.target import resolve_target
from keeper.devnet.anvil import Anvil, AnvilOptions
from keeper.errors import UsageError
from keeper.obs.logging import configure_logging, get_logger

log = get_logger(__name__)


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("run", help="follow the chain and liquidate (the daemon)")
    p.add_argument("-c", "--config", type=Path, help="TOML config (env KEEPER_* overrides it)")
    p.add_argument("--once", action="store_true",
                   help="one pass: sync, scan, liquidate, wait for receipts, print a table, exit")
    p.add_argument("--dry-run", action="store_true",
                   help="simulate everything; never sign or send (also executor.dry_run)")
    p.add_argument("--fork-url", metavar="URL",
                   help="start an Anvil fork of this chain and run against the fork")
    p.add_argument("--fork-block", type=int, metavar="N", help="fork at this block (default: tip)")
    p.add_argument("--cluster", action="store_true",
                   help="run as one replica of a keeper network coordinated through etcd "
                        "(the [cluster] section; also cluster.enabled)")
    p.add_argument("--log-level", default=None,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="default INFO for the daemon, WARNING with --once")


async def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    dry_run = bool(args.dry_run or cfg.executor.dry_run)
    clustered = bool(getattr(args, "cluster", False) or cfg.cluster.enabled)
    if clustered and args.once:
        raise UsageError("--cluster runs the daemon; it does not go with --once")
    if clustered:  # --cluster means [cluster] enabled, for everything built from the config
        cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"enabled": True})})
    level = args.log_level or ("WARNING" if args.once else "INFO")
    handle = configure_logging(level)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if args.fork_url:
                cfg = await stack.enter_async_context(_forked(cfg, args.fork_url, args.fork_block))
            node = await stack.enter_async_context(cluster_node(cfg)) if clustered else None
            target = resolve_target(cfg)  # after the fork: its endpoints win
            if args.fork_url and target.liquidator is None:
                target = await own_liquidator(cfg, target, target.rpc_urls[0])
                print(f"fork: deployed a liquidator of ours at {target.liquidator} "
                      "(owned by a throwaway key, on the fork only)", flush=True)
            async with build(cfg, target, dry_run=dry_run, progress=sys.stderr.isatty(),
                             gate=node.gate if node is not None else None) as keeper:
                if args.once:
                    results = await run_once(keeper)
                    symbols = await asset_symbols(keeper, {
                        a for r in results if r.plan is not None
                        for a in (r.plan.collateral_asset, r.plan.debt_asset)}
                        | {res.asset for res in keeper.sync.book.market().reserves.values()})
                    print(format_executions(keeper, results, dry_run=dry_run, symbols=symbols))
                    sys.stdout.flush()
                    return 0
                if node is not None:
                    await run_clustered(keeper, node)
                else:
                    # The daemon owns this process: it may freeze its heap (keeper.app.heap).
                    await run_daemon(keeper, replace(DaemonSettings.from_config(keeper.cfg),
                                                     freeze_heap=True))
                return 0
    finally:
        handle.stop()
    return 0


@contextlib.asynccontextmanager
async def _forked(cfg: KeeperConfig, url: str, block: int | None) -> AsyncIterator[KeeperConfig]:
    """An Anvil fork of ``url`` for the run, and the config pointed at it.

    The fork keeps the chain's id (so keys and guards behave as on that chain) and gets its own
    state file: a fork's book must never become the real chain's checkpoint.
    """
    node = await Anvil.start(AnvilOptions(chain_id=cfg.network.chain_id, fork_url=url,
                                          fork_block=block), ready_timeout=60)
    log.info("anvil_fork_started", fork_url=public_url(url), fork_block=block, rpc_url=node.url)
    try:
        with tempfile.TemporaryDirectory(prefix="keeper-fork-") as tmp:
            network = cfg.network.model_copy(update={"rpc_urls": [node.url], "ws_url": node.ws_url})
            state = cfg.state.model_copy(update={"sqlite": Path(tmp) / "fork.sqlite"})
            yield cfg.model_copy(update={"network": network, "state": state})
    finally:
        await node.stop()

