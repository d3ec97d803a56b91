"""``keeper breaker reset``: resume an asset (or every asset) the oracle guard has halted.

The running daemon learns of it through a request file next to its checkpoint
(``<state.sqlite>.breaker-resets/``, see keeper.pipeline.guard_resets), which it takes at the
next block it scans; no node is contacted here.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from keeper.app.config import load_config
from keeper.errors import UsageError
from keeper.pipeline.guard_resets import request_reset, resets_dir


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("breaker", help="the oracle circuit breaker: reset a halted asset")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    reset = actions.add_parser("reset", help="resume liquidations the oracle guard halted")
    reset.add_argument("-c", "--config", type=Path, help="TOML config (env KEEPER_* overrides it)")
    reset.add_argument("--asset", metavar="SYMBOL|ADDRESS",
                       help="the asset to resume (default: every asset)")


def _asset(text: str | None) -> str | None:
    if text is None:
        return None
    s = text.strip()
    if s.lower().startswith("0x"):
        hex_part = s[2:]
        if len(hex_part) != 40 or any(c not in "0123456789abcdefABCDEF" for c in hex_part):
            raise UsageError(f"--asset: not a 20-byte hex address: {text!r}")
        return s.lower()
    if not s or len(s) > 32 or not s.isprintable() or any(c.isspace() for c in s):
        raise UsageError(f"--asset: not a token symbol or an address: {text!r}")
    return s


async def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    asset = _asset(args.asset)
    directory = resets_dir(cfg.state.sqlite)
    if not directory.parent.is_dir():
        raise UsageError(f"state.sqlite: no state directory {str(directory.parent)!r} "
                         "(is this the running keeper's config?)")
    await asyncio.to_thread(request_reset, directory, asset)
    print(f"oracle guard reset requested for {asset or 'every asset'}; the keeper applies it "
          "at the next block it scans")
    return 0
