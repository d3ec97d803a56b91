"""``keeper scan``: a one-shot report of every account by health factor.

Syncs a fresh position book to the chain's tip (``BookSync.catch_up``: a backfill from the
market's start block, no checkpoint), runs the health scanner on it, confirms the liquidatable
accounts on chain with one Multicall3 batch, and prints a table (or JSON). Nothing is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.app import preflight
from keeper.app.book_source import synced_book
from keeper.app.config import KeeperConfig, load_config
from keeper.app.root import resolve_contracts
from keeper.chain.rpc import HttpRpc
from keeper.commands.target import resolve_target
from keeper.domain.account import AccountData
from keeper.domain.wadray import UINT256_MAX, WAD
from keeper.obs.logging import configure_logging, get_logger
from keeper.pipeline.scan import HealthScanner, LiquidatableAccount
from keeper.protocols.aave_v3.book import PositionBook

log = get_logger(__name__)

BASE_UNIT = 10**8
"""Aave V3 USD markets quote the base currency with 8 decimals."""


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``keeper scan`` on the CLI's subparsers."""
    p = sub.add_parser("scan", help="one-shot table of accounts by health factor")
    p.add_argument("-c", "--config", type=Path, help="TOML config (default: built-in + env)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--limit", type=_non_negative, default=50,
                   help="table rows, lowest health factor first (0: all; default 50)")


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"limit must be an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"limit must be 0 or more, got {v}")
    return v


@dataclass(frozen=True, slots=True)
class Report:
    """What ``keeper scan`` prints."""

    block: int
    accounts: int  # accounts in the book
    rows: list[tuple[str, AccountData]]  # accounts with debt, lowest HF first (exact, book)
    liquidatable: list[LiquidatableAccount]  # ranked, confirmed on chain
    prefiltered: int
    mismatches: int
    resumed_from: int | None = None  # the checkpoint's block, when the sync started from one


async def scan(cfg: KeeperConfig, *, progress: bool) -> Report:
    """Sync a book to the tip (from a copy of the daemon's checkpoint when there is one), scan
    it and confirm on chain."""
    target = resolve_target(cfg)
    async with HttpRpc(target.rpc_urls[0], timeout=cfg.network.request_timeout) as rpc:
        await preflight.check_chain_id(rpc, cfg.network.chain_id)
        contracts = await resolve_contracts(rpc, target, cfg.network.chain_id)
        book, resumed_from = await synced_book(cfg, rpc, target, contracts, progress=progress)
        # CPU-bound and the book is not moving any more: off the event loop.
        scanner, rows = await asyncio.to_thread(_evaluate_all, book)
        found = await scanner.scan(rpc, contracts.pool, chunk=cfg.scanner.confirm_batch_size,
                                   multicall=contracts.multicall3)
    return Report(
        block=book.block_number,
        accounts=len(book),
        rows=rows,
        liquidatable=found,
        prefiltered=scanner.stats.last_prefiltered,
        mismatches=scanner.stats.mismatches,
        resumed_from=resumed_from,
    )


def _evaluate_all(book: PositionBook) -> tuple[HealthScanner, list[tuple[str, AccountData]]]:
    scanner = HealthScanner(book)
    data = scanner.evaluate(book.users())
    rows = [(u, d) for u, d in data.items() if d.total_debt_base > 0]
    rows.sort(key=lambda r: (r[1].health_factor, r[0]))
    return scanner, rows


def _hf(value: int) -> str:
    return "inf" if value == UINT256_MAX else f"{value / WAD:.6f}"


def format_report(report: Report, limit: int) -> str:
    """The human table: the lowest health factors, liquidatable accounts marked."""
    marked = {c.user: c for c in report.liquidatable}
    shown = report.rows if limit == 0 else report.rows[:limit]
    lines = [
        f"block {report.block}: {report.accounts} accounts, {len(report.rows)} with debt, "
        f"{len(report.liquidatable)} liquidatable (confirmed on chain: "
        f"{sum(c.confirmed_on_chain for c in report.liquidatable)})",
        f"{'':2s}{'account':44s} {'health factor':>14s} {'collateral USD':>16s} "
        f"{'debt USD':>14s}  status",
    ]
    for user, d in shown:
        c = marked.get(user)
        if c is not None:
            status = "LIQUIDATABLE" + (" (chain)" if c.confirmed_on_chain else " (book only)")
            flag = "! "
        else:
            status, flag = "", "  "
        lines.append(
            f"{flag}{user:44s} {_hf(d.health_factor):>14s} "
            f"{d.total_collateral_base / BASE_UNIT:>16,.2f} "
            f"{d.total_debt_base / BASE_UNIT:>14,.2f}  {status}".rstrip()
        )
    if len(shown) < len(report.rows):
        lines.append(f"… {len(report.rows) - len(shown)} more (--limit 0 shows all)")
    if report.mismatches:
        lines.append(f"WARNING: {report.mismatches} accounts differ between the book and the "
                     "chain (see the log)")
    return "\n".join(lines)


def report_json(report: Report) -> dict[str, Any]:
    """The JSON document of ``--json`` (integers as strings: they exceed 2**53)."""
    marked = {c.user: c for c in report.liquidatable}
    return {
        "block": report.block,
        "accounts": report.accounts,
        "prefiltered": report.prefiltered,
        "mismatches": report.mismatches,
        "resumed_from": report.resumed_from,
        "liquidatable": [
            {"user": c.user, "health_factor": str(c.health_factor),
             "total_collateral_base": str(c.total_collateral_base),
             "total_debt_base": str(c.total_debt_base),
             "max_repay_base": str(c.max_repay_base),
             "confirmed_on_chain": c.confirmed_on_chain, "block": c.block}
            for c in report.liquidatable
        ],
        "rows": [
            {"user": u, "health_factor": str(d.health_factor),
             "total_collateral_base": str(d.total_collateral_base),
             "total_debt_base": str(d.total_debt_base),
             "liquidatable": u in marked}
            for u, d in report.rows
        ],
    }


async def run(args: argparse.Namespace) -> int:
    """``keeper scan``: 0 when it ran (whether or not anything is liquidatable)."""
    cfg = load_config(args.config)
    # Logs are JSON lines on stderr, warnings only (a book/chain mismatch, a failed read):
    # stdout carries the report alone, so that ``--json`` output parses.
    logs = configure_logging("WARNING")
    try:
        report = await scan(cfg, progress=not args.json and sys.stderr.isatty())
    finally:
        logs.stop()
    if args.json:
        print(json.dumps(report_json(report)))
    else:
        print(format_report(report, args.limit))
    return 0
