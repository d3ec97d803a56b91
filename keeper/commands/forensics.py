"""``keeper forensics -c CONFIG --from N --to M [--json]``: every liquidation of blocks N … M
that someone else made, with why the keeper did not take it (``keeper.app.forensics``).

It reads the running (or stopped) daemon's decision record from its SQLite file
(``state.sqlite``) and the chain; it sends nothing and may run beside the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from keeper.app.config import load_config
from keeper.app.decisions import DecisionStoreError, read_decisions
from keeper.app.forensics_report import forensics, format_table, to_json
from keeper.app.root import resolve_contracts
from keeper.chain.rpc import HttpRpc
from keeper.commands.target import resolve_target
from keeper.errors import UsageError


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("forensics", help="why the keeper did not take each liquidation")
    p.add_argument("-c", "--config", type=Path, help="TOML config (env KEEPER_* overrides it)")
    p.add_argument("--from", dest="from_block", type=int, required=True, metavar="N",
                   help="first block")
    p.add_argument("--to", dest="to_block", type=int, required=True, metavar="M",
                   help="last block")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


async def run(args: argparse.Namespace) -> int:
    if not 0 <= args.from_block <= args.to_block:
        raise UsageError("--from N --to M needs 0 <= N <= M")
    cfg = load_config(args.config)
    target = resolve_target(cfg)
    try:
        decisions = await asyncio.to_thread(read_decisions, cfg.state.sqlite)
    except DecisionStoreError as exc:
        raise UsageError(str(exc)) from None
    async with HttpRpc(target.rpc_urls[0], timeout=cfg.network.request_timeout) as rpc:
        head = int(str(await rpc.call("eth_blockNumber")), 16)
        if args.to_block > head:
            raise UsageError(f"--to {args.to_block}: the chain's head is {head}")
        contracts = await resolve_contracts(rpc, target, cfg.network.chain_id)
        ours = [a for a in (target.liquidator,) if a]
        report = await forensics(rpc, contracts.pool, args.from_block, args.to_block,
                                 decisions, ours)
    if args.json:
        print(json.dumps(to_json(report, target.symbols), indent=2))
    else:
        print(format_table(report, target.symbols))
    sys.stdout.flush()
    return 0
