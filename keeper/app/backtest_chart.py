"""The backtest's chart: the crash's prices, the debt at risk and the keeper's liquidations,
block by block (matplotlib; imported only when a chart is asked for)."""

from __future__ import annotations

from pathlib import Path

from keeper.app.backtest import Backtest
from keeper.app.backtest_report import keeper_liquidations, source_rows


def write_chart(bt: Backtest, symbol: dict[str, str], path: Path) -> None:
    """Three panels sharing the block axis: prices (relative to block N), liquidatable
    debt, and the liquidations (the keeper's, and the source chain's taken / missed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    states = ([bt.start] if bt.start is not None else []) + bt.states
    blocks = [s.block for s in states]
    fig, (top, mid, low) = plt.subplots(3, 1, sharex=True, figsize=(10, 9))
    first = states[0].prices if states else {}
    for asset, p0 in sorted(first.items()):
        series = [s.prices.get(asset, p0) / p0 for s in states]
        if p0 and max(series) - min(series) > 1e-4:  # only the assets that moved
            top.plot(blocks, series, label=symbol.get(asset, asset[:10]))
    top.set_ylabel(f"oracle price / at block {bt.from_block}")
    if top.get_legend_handles_labels()[0]:  # no price moved: nothing to name
        top.legend(loc="best", fontsize="small")
    mid.step(blocks, [s.liquidatable_debt_usd / 1e8 for s in states], where="post")
    mid.set_ylabel("liquidatable debt (USD)")
    mine = keeper_liquidations(bt)
    low.scatter([k.block for k in mine], [k.profit_usd for k in mine], marker="o",
                label="keeper (profit USD)")
    rows = source_rows(bt)
    for taken, marker, label in ((True, "^", "source, taken by the keeper"),
                                 (False, "x", "source, missed by the keeper")):
        xs = [r.block for r in rows if r.taken is taken]
        low.scatter(xs, [0.0] * len(xs), marker=marker, label=label)
    low.set_ylabel("liquidations")
    low.set_xlabel("source block")
    low.legend(loc="best", fontsize="small")
    fig.suptitle(f"Backtest, blocks {bt.from_block + 1} to {bt.to_block}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
