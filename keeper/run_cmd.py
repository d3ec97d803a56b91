"""``keeper run``: the daemon, or one pass with ``--once``; ``--dry-run`` signs nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from keeper import app, daemon
from keeper.config import load_config
from keeper.obs.logging import configure_logging


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("run", help="follow the chain and liquidate (the daemon)")
    p.add_argument("-c", "--config", type=Path, help="TOML config (env KEEPER_* overrides it)")
    p.add_argument("--once", action="store_true",
                   help="one pass: sync, scan, liquidate, wait for receipts, print a table, exit")
    p.add_argument("--dry-run", action="store_true",
                   help="simulate everything; never sign or send (also executor.dry_run)")
    p.add_argument("--log-level", default=None,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="default INFO for the daemon, WARNING with --once")


async def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    dry_run = bool(args.dry_run or cfg.executor.dry_run)
    level = args.log_level or ("WARNING" if args.once else "INFO")
    handle = configure_logging(level)
    try:
        async with app.build(cfg, dry_run=dry_run, progress=app.is_tty()) as keeper:
            if args.once:
                results = await app.run_once(keeper)
                print(app.format_executions(keeper, results, dry_run=dry_run))
                sys.stdout.flush()
                return 0
            await daemon.run_daemon(keeper)
            return 0
    finally:
        handle.stop()
