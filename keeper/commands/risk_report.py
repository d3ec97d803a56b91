"""The risk lab's report: ``report.md`` and the PNG charts it shows, in one directory.

Markdown with relative image links, so the directory is self-contained (open it on GitHub, in
an editor's preview, or convert it). Charts are drawn with matplotlib's Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from keeper.app.risk_analysis import RiskReport

BASE = 1e8


def _usd(v: float) -> str:
    return f"${v / BASE:,.0f}"


def write_report(report: RiskReport, out: Path) -> Path:
    """Write ``report.md`` and its charts into ``out`` (created); returns the report's path."""
    # No display here (a server, CI): draw off-screen. Safe to switch before any figure.
    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    sections = [_header(report), _grid(report, out), _cascade(report, out), _var(report, out),
                _params(report, out), _reading()]
    path = out / "report.md"
    path.write_text("\n\n".join(s for s in sections if s) + "\n")
    return path


def _header(r: RiskReport) -> str:
    i = r.inputs
    stables = ", ".join(i.symbol(s) for s in i.stables) or "none"
    return (f"# Risk lab — block {i.block}\n\n"
            f"{len(i.book)} accounts with debt over {len(i.book.assets)} assets "
            f"({', '.join(i.symbol(a) for a in i.book.assets)}); stables: {stables}. "
            f"One liquidation's gas: {_usd(r.gas_cost_base)}.")


def _grid(r: RiskReport, out: Path) -> str:
    rows = ["| shock | liquidatable | their debt | coverable | seized | liquidators' profit "
            "| bad debt |", "|---|---:|---:|---:|---:|---:|---:|"]
    for o, p in zip(r.grid, r.profits, strict=True):
        rows.append(f"| {o.shock.name} | {o.liquidatable} | {_usd(o.liquidatable_debt)} | "
                    f"{_usd(o.covered_debt)} | {_usd(o.collateral_seized)} | {_usd(p.profit)} | "
                    f"{_usd(o.bad_debt)} |")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups: dict[str, list[tuple[float, float]]] = {}
    for o in r.grid:
        who, _, level = o.shock.name.rpartition(" -")
        groups.setdefault(who, []).append((float(level.rstrip("%")), o.liquidatable_debt / BASE))
    for who, pts in groups.items():
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", label=who, linewidth=2.5 if who == "all volatile" else 1)
    ax.set_xlabel("price drop (%)")
    ax.set_ylabel("debt of liquidatable accounts (USD)")
    ax.set_title("Shock grid")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, out / "shock_grid.png")
    return ("## Shock grid\n\nEach row moves the named assets' oracle prices down by the "
            "level, all else equal. *Liquidatable*: accounts whose health factor falls under 1 "
            "(exact protocol math near the line); *coverable*: the debt one liquidation per "
            "account may repay under the close factor; *seized*: the collateral (bonus "
            "included) that takes; *liquidators' profit*: seized collateral sold into the DEX "
            "pools (as deep as now, at the shocked price) less repayment and gas, over the "
            "profitable liquidations; *bad debt*: debt no collateral backs.\n\n"
            "![shock grid](shock_grid.png)\n\n" + "\n".join(rows))


def _cascade(r: RiskReport, out: Path) -> str:
    c = r.cascade
    if c is None:
        return "## Cascade\n\nNo stable quote asset with DEX pools: no cascade computed."
    i = r.inputs
    fig, ax = plt.subplots(figsize=(8, 4))
    for a, p0 in c.start_prices.items():
        if a not in c.shocked_prices or c.shocked_prices[a] == p0 or not p0:
            continue
        series = [c.shocked_prices[a] / p0] + [x.prices[a] / p0 for x in c.rounds]
        ax.plot(range(len(series)), [100 * (s - 1) for s in series], marker="o",
                label=i.symbol(a))
    ax.set_xlabel("round")
    ax.set_ylabel("oracle price vs before the shock (%)")
    ax.set_title("Liquidation cascade")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, out / "cascade.png")
    amp = ", ".join(f"{i.symbol(a)} ×{v:.3f}" for a, v in c.amplification.items())
    rounds = "\n".join(f"| {k + 1} | {x.liquidated} | {_usd(x.repaid)} | {_usd(x.seized)} |"
                       for k, x in enumerate(c.rounds))
    return ("## Cascade\n\nThe stressed shock, then rounds: every account under water is "
            "liquidated once, the seized collateral is sold into the pools, the oracle follows "
            "the DEX price. *Amplification* is the final price move over the initial shock.\n\n"
            f"{len(c.rounds)} rounds; amplification {amp or 'none'}; bad debt "
            f"{_usd(c.bad_debt_initial)} after the shock, {_usd(c.bad_debt)} at the end.\n\n"
            "![cascade](cascade.png)\n\n| round | liquidated | repaid | seized |\n"
            "|---:|---:|---:|---:|\n" + rounds)


def _var(r: RiskReport, out: Path) -> str:
    v = r.var
    if v is None:
        return "## VaR / ES\n\nNo moving asset or no account: nothing to simulate."
    i = r.inputs
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, data, title in ((axes[0], v.bad_debt, "bad debt"),
                            (axes[1], v.volume, "liquidation volume")):
        ax.hist(data / BASE, bins=60, color="#4477aa")
        ax.set_title(f"{title} at {v.horizon_days:g} days")
        ax.set_xlabel("USD")
        ax.set_yscale("log")
    _save(fig, out / "var.png")
    rows = ["| distribution | level | VaR | ± s.e. | ES | ± s.e. |", "|---|---:|---:|---:|---:|---:|"]
    for name, figs in (("bad debt", v.bad_debt_tail), ("liquidation volume", v.volume_tail)):
        rows += [f"| {name} | {f.level:.0%} | {_usd(f.var)} | {_usd(f.var_se)} | {_usd(f.es)} | "
                 f"{_usd(f.es_se)} |" for f in figs]
    model = ", ".join(f"{i.symbol(a)} σ={s:.0%}" for a, s in zip(r.model.assets, r.model.vols,
                                                                   strict=True))
    tails = f"Student-t ({r.model.df:g} df)" if r.model.df else "normal"
    return ("## VaR / ES\n\n"
            f"{v.paths} correlated log-normal price paths ({tails} shocks) over "
            f"{v.horizon_days:g} days; annual volatility {model} (estimated from the oracle's "
            "AnswerUpdated history where it is long enough). *VaR* at 95%/99%: the loss not "
            "exceeded in that share of paths; *ES*: the mean loss beyond it; ± the Monte Carlo "
            "standard error.\n\n![var](var.png)\n\n" + "\n".join(rows))


def _params(r: RiskReport, out: Path) -> str:
    s = r.params
    if s is None:
        return ""
    i = r.inputs
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for lt in sorted({p.threshold_bps for p in s.points}):
        pts = [p for p in s.points if p.threshold_bps == lt and p.close_factor == 0.5]
        ax.plot([(p.bonus_bps - 10_000) / 100 for p in pts],
                [p.profitable_share * 100 for p in pts], label=f"LT {lt / 100:.1f}%")
    ax.set_xlabel("liquidation bonus (%)")
    ax.set_ylabel("coverable debt liquidated at a profit (%)")
    ax.set_title(f"{i.symbol(s.asset)}: bonus vs liquidators' profitability ({s.stress.name})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, out / "params.png")
    rows = ["| LT | bonus | close factor | liquidatable | bad debt after | profit | "
            "profitable share |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in s.points:
        if (p.bonus_bps - 10_000) % 100 == 0:
            rows.append(f"| {p.threshold_bps / 100:.1f}% | {(p.bonus_bps - 10_000) / 100:.1f}% "
                        f"| {p.close_factor:.0%} | {p.liquidatable} | {_usd(p.bad_debt)} | "
                        f"{_usd(p.profit)} | {p.profitable_share:.0%} |")
    floors = "\n".join(f"- LT {lt / 100:.1f}%: " + (f"{(b - 10_000) / 100:.2f}%" if b else
                                                     "none in the range")
                       for lt, b in s.min_bonus.items())
    return (f"## Parameters what-if: {i.symbol(s.asset)}\n\nUnder {s.stress.name}, the "
            "reserve's liquidation threshold and bonus are replaced for every account holding "
            "it, with one close factor for all. The smallest bonus that keeps liquidating "
            "profitable (90% of the coverable debt liquidated at a profit after gas and DEX "
            f"slippage):\n\n{floors}\n\n![params](params.png)\n\n" + "\n".join(rows))


def _reading() -> str:
    return ("## How to read this\n\nAmounts are in the oracle's base currency. Floats rank and "
            "aggregate; accounts near the liquidation line are settled with the protocol's own "
            "integer math. The DEX is the Uniswap V2 pools the keeper sells into, traded to "
            "each scenario's prices with their present depth.")


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
