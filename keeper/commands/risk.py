"""``keeper risk``: what the next crash would liquidate, from the keeper's own book.

Syncs the book (from a copy of the daemon's checkpoint when there is one), reads the DEX pools
and the oracle's history, and runs the risk lab (``keeper.app.risk_analysis``): the shock grid,
the cascade, VaR/ES and the parameter what-if. Prints a summary (or ``--json``); ``--out DIR``
writes a Markdown report with PNG charts. Nothing is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from keeper.app.config import load_config
from keeper.app.risk import gather
from keeper.app.risk_analysis import RiskReport, analyse
from keeper.commands.risk_report import write_report
from keeper.commands.target import resolve_target
from keeper.errors import UsageError
from keeper.obs.logging import configure_logging

BASE = 1e8


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``keeper risk`` on the CLI's subparsers."""
    p = sub.add_parser("risk", help="stress grid, cascade, VaR/ES and parameter what-ifs")
    p.add_argument("-c", "--config", type=Path, help="TOML config (default: built-in + env)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write report.md and its PNG charts into DIR")
    p.add_argument("--paths", type=int, help="Monte Carlo paths (default: [risk] paths)")
    p.add_argument("--seed", type=int, help="Monte Carlo seed (default: [risk] seed)")


def _check_out(out: Path | None) -> None:
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")


async def run(args: argparse.Namespace) -> int:
    """``keeper risk``: 0 when the report was made."""
    _check_out(args.out)
    cfg = load_config(args.config)
    overrides = {k: v for k, v in (("paths", args.paths), ("seed", args.seed)) if v is not None}
    if overrides:
        if not 100 <= overrides.get("paths", 100) <= 10_000_000:
            raise UsageError("--paths must be between 100 and 10000000")
        if not 0 <= overrides.get("seed", 0) < 2**32:
            raise UsageError("--seed must be between 0 and 4294967295")
        cfg = cfg.model_copy(update={"risk": cfg.risk.model_copy(update=overrides)})
    logs = configure_logging("WARNING")
    try:
        inputs = await gather(cfg, resolve_target(cfg),
                              progress=not args.json and sys.stderr.isatty())
        report = await asyncio.to_thread(analyse, inputs, cfg.risk)
    finally:
        logs.stop()
    path = None
    if args.out is not None:
        path = await asyncio.to_thread(write_report, report, args.out)
    if args.json:
        doc = report_json(report)
        if path is not None:
            doc["report"] = str(path)
        print(json.dumps(doc))
    else:
        print(format_summary(report))
        if path is not None:
            print(f"report: {path}")
    return 0


def _usd(v: float) -> str:
    return f"${v / BASE:,.0f}"


def format_summary(r: RiskReport) -> str:
    """The terminal summary: the joint shocks, the cascade, the tails, the bonus floor."""
    i = r.inputs
    lines = [f"risk lab at block {i.block}: {len(i.book)} accounts with debt, "
             f"{len(i.book.assets)} assets (stables: "
             f"{', '.join(i.symbol(s) for s in i.stables) or 'none'})",
             "",
             f"{'shock':24s} {'liquidatable':>12s} {'debt':>14s} {'coverable':>14s} "
             f"{'seized':>14s} {'profit':>12s} {'bad debt':>12s}"]
    joint = [k for k, o in enumerate(r.grid) if o.shock.name.startswith("all volatile")]
    for k in joint:
        o, p = r.grid[k], r.profits[k]
        lines.append(f"{o.shock.name:24s} {o.liquidatable:>12d} {_usd(o.liquidatable_debt):>14s} "
                     f"{_usd(o.covered_debt):>14s} {_usd(o.collateral_seized):>14s} "
                     f"{_usd(p.profit):>12s} {_usd(o.bad_debt):>12s}")
    if r.cascade is not None:
        c = r.cascade
        amp = ", ".join(f"{i.symbol(a)} x{v:.2f}" for a, v in c.amplification.items())
        lines += ["", f"cascade from {r.stress.name if r.stress else 'the stress'}: "
                      f"{len(c.rounds)} rounds, amplification {amp or 'none'}, "
                      f"bad debt {_usd(c.bad_debt_initial)} -> {_usd(c.bad_debt)}"]
    if r.var is not None:
        lines += ["", f"Monte Carlo ({r.var.paths} paths, {r.var.horizon_days:g} days):"]
        for name, figs in (("bad debt", r.var.bad_debt_tail), ("liquidations", r.var.volume_tail)):
            lines.append("  " + name + ": " + "; ".join(
                f"VaR{f.level:.0%} {_usd(f.var)} (±{_usd(f.var_se)}), "
                f"ES{f.level:.0%} {_usd(f.es)} (±{_usd(f.es_se)})" for f in figs))
    if r.params is not None:
        floors = ", ".join(f"LT {lt / 100:.1f}%: " + (f"{(b - 10_000) / 100:.1f}%" if b else "none")
                           for lt, b in r.params.min_bonus.items())
        lines += ["", f"smallest profitable bonus for {i.symbol(r.params.asset)} under "
                      f"{r.params.stress.name}: {floors}"]
    return "\n".join(lines)


def report_json(r: RiskReport) -> dict[str, Any]:
    """The ``--json`` document (base-unit amounts as floats, exact figures as strings)."""
    i = r.inputs
    doc: dict[str, Any] = {
        "block": i.block, "accounts": len(i.book), "resumed_from": i.resumed_from,
        "assets": {a: i.symbol(a) for a in i.book.assets}, "stables": list(i.stables),
        "gas_cost_base": r.gas_cost_base,
        "grid": [{
            "shock": o.shock.name, "moves": dict(o.shock.moves),
            "prices": {a: str(v) for a, v in o.prices.items()},
            "liquidatable": o.liquidatable, "liquidatable_debt": o.liquidatable_debt,
            "covered_debt": o.covered_debt, "collateral_seized": o.collateral_seized,
            "bad_debt": o.bad_debt, "profit": p.profit, "profitable": p.profitable,
            "unprofitable": p.unprofitable, "exact_debt": str(o.exact_debt),
            "accounts": {u: {"health_factor": str(d.health_factor),
                             "total_debt_base": str(d.total_debt_base),
                             "total_collateral_base": str(d.total_collateral_base)}
                         for u, d in o.exact.items()},
        } for o, p in zip(r.grid, r.profits, strict=True)],
    }
    if r.cascade is not None:
        c = r.cascade
        doc["cascade"] = {"rounds": [{"liquidated": x.liquidated, "repaid": x.repaid,
                                      "seized": x.seized} for x in c.rounds],
                          "amplification": dict(c.amplification), "bad_debt": c.bad_debt,
                          "bad_debt_initial": c.bad_debt_initial,
                          "final_prices": {a: str(v) for a, v in c.final_prices.items()}}
    if r.var is not None:
        doc["var"] = {"paths": r.var.paths, "horizon_days": r.var.horizon_days,
                      "model": {"assets": list(r.model.assets), "vols": list(r.model.vols)},
                      **{k: [{"level": f.level, "var": f.var, "var_se": f.var_se, "es": f.es,
                              "es_se": f.es_se} for f in figs]
                         for k, figs in (("bad_debt", r.var.bad_debt_tail),
                                         ("volume", r.var.volume_tail))}}
    if r.params is not None:
        doc["params"] = {"asset": r.params.asset, "stress": r.params.stress.name,
                         "min_bonus": {str(k): v for k, v in r.params.min_bonus.items()},
                         "points": [vars_of(pt) for pt in r.params.points]}
    return doc


def vars_of(obj: Any) -> dict[str, Any]:
    """A slotted dataclass as a dict."""
    return {k: getattr(obj, k) for k in obj.__slots__}
