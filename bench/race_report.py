"""The race's table: figures per keeper from the chain's tally, the racers' own logs, /proc and
the daemon's own request counter; printed, and written to bench/results/ with the date and core count."""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.naive_keeper import naive_address
from bench.race_tally import Side, percentile

if TYPE_CHECKING:
    from bench.bench_race import RaceRun

RESULTS = Path(__file__).resolve().parent / "results"
SIDES = ("ours", "naive")


@dataclass(frozen=True, slots=True)
class Report:
    borrowers: int
    header: str
    rows: list[tuple[str, str, str]]  # (metric, ours, naive)
    why_not_ours: list[tuple[str, int, int]]  # naive wins by forensics reason, and at a loss
    busy: bool = False  # raced with another process keeping one core busy

    @property
    def name(self) -> str:
        return f"{self.borrowers}{' busy' if self.busy else ''}"


def _ts(event: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


def _share(x: float, total: float) -> str:
    return f"{x / total:.1%}" if total else "-"


def _detection(run: RaceRun) -> tuple[str, str]:
    """Crash block → every liquidatable account flagged: ours from its first
    ``liquidatable_accounts`` event at or after the crash block; the naive keeper's from the
    end of its first sweep that started on the crash block or later (it has then read every
    borrower once on the new prices)."""
    n = len(run.sunk)
    flagged = [e for e in run.ours_events if e.get("event") == "liquidatable_accounts"
               and int(e.get("block", -1)) >= run.crash_block]
    # Flagged by the book's exact math (``source`` book), or confirmed by the chain.
    count = flagged[0].get("flagged", flagged[0].get("confirmed")) if flagged else None
    ours = (f"+{(_ts(flagged[0]) - run.crash_wall) * 1000:.0f} ms ({count} of {n})"
            if flagged else "never")
    sweeps = [e for e in run.naive_events if e.get("event") == "sweep" and e["block"] >= run.crash_block]
    if not sweeps:
        return ours, "never"
    first = sweeps[0]
    seen = sum(1 for e in run.naive_events if e.get("event") == "detected" and e["block"] == first["block"])
    return ours, f"+{(first['t'] - run.crash_wall) * 1000:.0f} ms ({seen} still open)"


def _naive_calls(run: RaceRun, at: float) -> int:
    calls = [e["calls"] for e in run.naive_events if "calls" in e and e["t"] <= at]
    return int(calls[-1]) if calls else 0


def _blocks(side: Side, crash_block: int) -> str:
    b = side.blocks_after(crash_block)
    return f"{percentile(b, 50):.0f} / {percentile(b, 99):.0f}" if b else "-"


def gas_bound(side: Side, accounts: int, gas_limit: int) -> str:
    """The blocks p50 / p99 that block gas alone allows at ``side``'s gas per liquidation
    (its transactions' gas over its liquidations): ``accounts`` first liquidations, all of
    them before any follow-up, packed into full blocks from the one after the crash."""
    if not side.liquidations or not side.block_gas or not accounts:
        return "-"
    per_liquidation = side.block_gas / side.liquidations
    per_block = max(1, int(gas_limit // per_liquidation))
    floors = [-(-rank // per_block) for rank in range(1, accounts + 1)]
    return (f"{percentile(floors, 50):.0f} / {percentile(floors, 99):.0f} "
            f"({per_block:,} a block at {per_liquidation:,.0f} gas each)")


def why_not_ours(forensics: Mapping[str, Any],
                 at_a_loss: Collection[str] = ()) -> list[tuple[str, int, int]]:
    """The naive keeper's wins by ``keeper forensics`` reason, largest first, each with how
    many of them lost the naive keeper money (``at_a_loss``: its transactions whose bonus did
    not pay their gas)."""
    naive = naive_address()
    labels: Mapping[str, str] = forensics.get("reasons", {})
    theirs = [r for r in forensics.get("liquidations", ()) if r["liquidator"] == naive]
    counts = Counter(r["reason"] for r in theirs)
    losses = Counter(r["reason"] for r in theirs if str(r["tx_hash"]).lower() in at_a_loss)
    return [(labels.get(k, k), n, losses[k]) for k, n in counts.most_common()]


def build(run: RaceRun, interval: float, moves: Mapping[str, float], gas_limit: int) -> Report:
    sides = run.tally.sides
    liq_total = sum(s.liquidations for s in sides.values())
    debt_total = sum(s.debt_usd for s in sides.values())
    paid_total = sum(s.paid for s in sides.values())
    blocks = max(1, run.end_block - run.crash_block + 1)
    calls = {"ours": run.after.rpc_calls - run.before.rpc_calls,
             "naive": _naive_calls(run, run.after.at) - _naive_calls(run, run.before.at)}
    realised = sum(float(e.get("realised_net_usd", 0)) for e in run.ours_events
                   if e.get("event") == "liquidation_mined" and _ts(e) >= run.crash_wall)
    optimum = sum(run.optimum.values())
    detect = _detection(run)
    first_any: dict[str, int] = {}
    for s in sides.values():
        for u, b in s.first_block.items():
            first_any[u] = min(b, first_any.get(u, b))
    paying = [first_any.get(u) for u in run.optimum]
    within = {k: sum(1 for b in paying if b is not None and b - run.crash_block <= k) for k in (1, 2)}

    def both(fn: Any) -> tuple[str, str]:
        return fn("ours", sides["ours"]), fn("naive", sides["naive"])

    rows: list[tuple[str, str, str]] = [
        ("liquidations won", *both(lambda _, s: f"{s.liquidations} ({_share(s.liquidations, liq_total)})")),
        ("of them, liquidations whose bonus paid their gas",
         *both(lambda _, s: f"{s.paid} ({_share(s.paid, paid_total)})")),
        ("accounts liquidated", *both(lambda _, s: f"{len(s.first_block)}")),
        ("debt repaid", *both(lambda _, s: f"${s.debt_usd:,.0f} ({_share(s.debt_usd, debt_total)})")),
        ("bonus won (oracle value) − gas", *both(lambda _, s: f"${s.bonus_usd - s.gas_usd:,.0f}")),
        ("reverted transactions", *both(lambda _, s: f"{s.reverted} of {s.txs}")),
        ("block space taken, crash → last liquidation",
         *both(lambda _, s: _share(s.block_gas, run.tally.space))),
        ("blocks crash → liquidation p50 / p99", *both(lambda _, s: _blocks(s, run.crash_block))),
        # What no keeper could beat at our gas per liquidation: the profitable accounts' first
        # liquidations, and nothing else, in full blocks.
        ("the same, bound by block gas alone",
         gas_bound(sides["ours"], len(run.optimum), gas_limit), "-"),
        ("crash block → all liquidatable flagged", *detect),
        ("RPC calls per block", *both(lambda k, _: f"{calls[k] / blocks:,.0f}")),
        ("CPU seconds, crash → quiet", *both(lambda k, _: f"{run.after.cpu[k] - run.before.cpu[k]:.1f}")),
        ("peak RSS", *both(lambda k, _: f"{run.rss_mb[k]:.0f} MB")),
        ("capture: realised / offline optimum",
         f"${realised:,.0f} / ${optimum:,.0f} ({_share(realised, optimum)})", "-"),
    ]
    header = (f"{run.borrowers:,} borrowers, seed 1, Aave v3.0 devnet; crash "
              + ", ".join(f"{s} {f - 1:+.0%}" for s, f in moves.items())
              + f" in one block (#{run.crash_block}, with the pools' arbitrage); "
              f"a block every {interval:g} s of {gas_limit / 1e6:g}M gas; "
              f"{len(run.sunk)} accounts liquidatable after it, "
              f"{len(run.optimum)} profitable by the offline model; "
              f"profitable ones liquidated ≤ 1 block: {within[1]}, ≤ 2 blocks: {within[2]}; "
              f"last liquidation {run.tally.last_block - run.crash_block} blocks after the crash "
              f"(their gas {_share(run.tally.used, run.tally.space)} used); "
              f"liquidations by others: {run.tally.others}"
              + (f"; another process kept one core of {os.cpu_count()} busy from the crash "
                 f"on ({run.after.cpu.get('busy', 0) - run.before.cpu.get('busy', 0):.1f} "
                 "CPU seconds, crash → quiet)." if run.busy else "."))
    return Report(run.borrowers, header, rows,
                  why_not_ours(run.forensics, sides["naive"].at_a_loss), run.busy)


def markdown(reports: list[Report]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"Race, {when}, {os.cpu_count()} cores ({platform.machine()}), "
           f"Python {platform.python_version()}", ""]
    for r in reports:
        out += [f"**{r.header}**", "", "| | ours (`keeper run`) | naive |", "|---|---|---|"]
        out += [f"| {m} | {a} | {b} |" for m, a, b in r.rows]
        out.append("")
        if r.why_not_ours:
            total = sum(n for _, n, _ in r.why_not_ours)
            lost = sum(n for _, _, n in r.why_not_ours)
            out += [f"Why the naive keeper's {total} liquidations were not ours "
                    "(`keeper forensics`), and how many of them cost the naive keeper more "
                    "gas than their bonus:", "",
                    "| reason | liquidations | of them at a loss to it |", "|---|---|---|"]
            out += [f"| {label} | {n} | {loss} |" for label, n, loss in r.why_not_ours]
            out += [f"| total | {total} | {lost} |", ""]
    return "\n".join(out)


def write(reports: list[Report]) -> None:
    """One file per size, and latest.md with the newest run of every size."""
    RESULTS.mkdir(exist_ok=True)
    for r in reports:
        (RESULTS / f"race-{r.name.replace(' ', '-')}.md").write_text(markdown([r]))
    parts = sorted(RESULTS.glob("race-*.md"),
                   key=lambda p: (int(p.stem.split("-")[1]), p.stem.endswith("-busy")))
    (RESULTS / "latest.md").write_text("\n".join(p.read_text() for p in parts))


def rows(reports: list[Report]) -> list[tuple[str, str, str]]:
    """For ``make bench``'s table: one row per figure, ours | naive in the value."""
    return [(f"{r.name}: {m}", f"{a} | {b}", "ours | naive")
            for r in reports for m, a, b in r.rows]
