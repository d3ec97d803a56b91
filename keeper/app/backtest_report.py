"""The backtest's report: each source liquidation, taken by the keeper on the replay or missed
with the reason, the keeper's own liquidations with profit and gas; as a table, JSON or Markdown.

A source liquidation counts as taken when the keeper liquidated the same user in a turn at or
before the source liquidation's block (its turn sits at the head of that block). Missed ones
carry the keeper's last word on that user up to then: the planner's rejection, the fate of a
sent transaction, or "not seen in time" when the account was never liquidatable at any of
the keeper's turns before it was taken.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from keeper.app.backtest import Backtest
from keeper.exec.executor import Execution
from keeper.exec.tx import Status

NOT_SEEN = "not seen in time: not liquidatable at any keeper turn before this block"


@dataclass(frozen=True, slots=True)
class KeeperLiquidation:
    block: int
    user: str
    collateral: str
    debt: str
    debt_covered: int
    profit_usd: float
    gas_used: int
    tx_hash: str


@dataclass(frozen=True, slots=True)
class SourceRow:
    block: int
    user: str
    collateral: str
    debt: str
    liquidator: str
    debt_covered: int  # debt-asset units
    debt_covered_usd: float  # at the oracle price after that block
    taken: bool
    reason: str  # why not, when not taken


def _mined(e: Execution) -> bool:
    return (e.plan is not None and e.outcome is not None and e.outcome.status is Status.MINED
            and e.realised_net_usd is not None)


def keeper_liquidations(bt: Backtest) -> list[KeeperLiquidation]:
    out: list[KeeperLiquidation] = []
    for turn in bt.turns:
        for e in turn.executions:
            if _mined(e):
                assert e.plan is not None and e.outcome is not None
                assert e.realised_net_usd is not None
                out.append(KeeperLiquidation(
                    turn.block, e.user, e.plan.collateral_asset, e.plan.debt_asset,
                    e.plan.debt_to_cover, e.realised_net_usd / 1e8, e.outcome.gas_used or 0,
                    e.outcome.tx_hash or ""))
    return out


def source_rows(bt: Backtest, symbol: dict[str, str] | None = None) -> list[SourceRow]:
    symbol = symbol or {}
    taken_at: dict[str, int] = {}
    for k in keeper_liquidations(bt):
        taken_at.setdefault(k.user, k.block)
    rows: list[SourceRow] = []
    prices = {s.block: s.prices for s in bt.states}
    for ev in bt.source_liquidations:
        first = taken_at.get(ev.user)
        taken = first is not None and first <= ev.block_number
        reason = "" if taken else _why_not(bt, ev.user, ev.block_number, first, symbol)
        usd = (ev.debt_to_cover * prices.get(ev.block_number, {}).get(ev.debt_asset, 0)
               / 10 ** bt.decimals.get(ev.debt_asset, 18) / 1e8)
        rows.append(SourceRow(ev.block_number, ev.user, ev.collateral_asset, ev.debt_asset,
                              ev.liquidator, ev.debt_to_cover, round(usd, 2), taken, reason))
    return rows


def _why_not(bt: Backtest, user: str, block: int, later: int | None,
             symbol: dict[str, str]) -> str:
    last: Execution | None = None
    held: tuple[str, ...] = ()
    seen = False
    for turn in bt.turns:
        if turn.block > block:
            break
        held = turn.held.get(user, held)
        for e in turn.executions:
            if e.user == user:
                last = e
    for state in bt.states:
        if state.block < block and user in state.liquidatable:
            seen = True
    if last is not None:
        reason = last.skipped_reason or "sent, not mined"
    elif held:
        names = ", ".join(symbol.get(a, a) for a in held)
        reason = f"held by the oracle guard ({names} halted: oracle and DEX prices disagree)"
    elif seen:
        reason = "liquidatable at a keeper turn, not attempted"
    else:
        reason = NOT_SEEN
    if later is not None:
        reason += f" (the keeper took it later, at block {later})"
    return reason


def summary(bt: Backtest) -> dict[str, Any]:
    mine = keeper_liquidations(bt)
    rows = source_rows(bt)
    return {
        "from_block": bt.from_block, "to_block": bt.to_block,
        "source_liquidations": len(rows),
        "taken_by_keeper": sum(r.taken for r in rows),
        "missed": sum(not r.taken for r in rows),
        "keeper_liquidations": len(mine),
        "keeper_profit_usd": round(sum(k.profit_usd for k in mine), 2),
        "keeper_gas_used": sum(k.gas_used for k in mine),
        "source_txs": sum(b.sent for b in bt.blocks),
        "source_txs_reverted_on_replay": sum(b.reverted for b in bt.blocks),
        "source_txs_not_replayed": sum(b.not_replayed for b in bt.blocks),
    }


def to_json(bt: Backtest, symbol: dict[str, str]) -> dict[str, Any]:
    return {
        "summary": summary(bt),
        "source_liquidations": [asdict(r) for r in source_rows(bt, symbol)],
        "keeper_liquidations": [asdict(k) for k in keeper_liquidations(bt)],
        "blocks": [{"block": s.block, "timestamp": s.timestamp, "prices": s.prices,
                    "liquidatable": len(s.liquidatable),
                    "liquidatable_debt_usd": s.liquidatable_debt_usd / 1e8,
                    "keeper_liquidations": sum(_mined(e) for e in t.executions),
                    "source_txs": b.sent, "reverted": b.reverted, "not_replayed": b.not_replayed}
                   for s, t, b in zip(bt.states, bt.turns, bt.blocks, strict=True)],
    }


def format_table(bt: Backtest, symbol: dict[str, str]) -> str:
    """The terminal report: per block, then each source liquidation, then the keeper's own."""
    def sym(a: str) -> str:
        return symbol.get(a, a[:10])

    lines = [f"{'block':>8s} {'txs':>5s} {'reverted':>8s} {'liquidatable':>12s} "
             f"{'debt at risk $':>16s} {'keeper liq.':>11s}"]
    for s, t, b in zip(bt.states, bt.turns, bt.blocks, strict=True):
        lines.append(f"{s.block:>8d} {b.sent:>5d} {b.reverted:>8d} {len(s.liquidatable):>12d} "
                     f"{s.liquidatable_debt_usd / 1e8:>16,.2f} "
                     f"{sum(_mined(e) for e in t.executions):>11d}")
    lines += ["", "source liquidations:",
              f"{'block':>8s} {'user':44s} {'pair':14s} {'liquidator':44s} {'debt covered $':>14s} "
              "keeper"]
    for r in source_rows(bt, symbol):
        verdict = "TAKEN" if r.taken else f"missed: {r.reason}"
        lines.append(f"{r.block:>8d} {r.user:44s} {sym(r.collateral) + '/' + sym(r.debt):14s} "
                     f"{r.liquidator:44s} {r.debt_covered_usd:>14,.2f} {verdict}")
    lines += ["", "keeper liquidations:",
              f"{'block':>8s} {'user':44s} {'pair':14s} {'profit $':>12s} {'gas':>9s}"]
    for k in keeper_liquidations(bt):
        lines.append(f"{k.block:>8d} {k.user:44s} {sym(k.collateral) + '/' + sym(k.debt):14s} "
                     f"{k.profit_usd:>12,.2f} {k.gas_used:>9,d}")
    tot = summary(bt)
    lines += ["", f"blocks {tot['from_block'] + 1}..{tot['to_block']}: "
              f"{tot['source_liquidations']} source liquidation(s), {tot['taken_by_keeper']} taken "
              f"by the keeper, {tot['missed']} missed; keeper: {tot['keeper_liquidations']} "
              f"liquidation(s), profit ${tot['keeper_profit_usd']:,.2f}, gas {tot['keeper_gas_used']:,}"]
    return "\n".join(lines)


def _units(bt: Backtest, asset: str, amount: int) -> str:
    return f"{amount / 10 ** bt.decimals.get(asset, 18):,.4f}"


def format_markdown(bt: Backtest, symbol: dict[str, str], chart: str | None) -> str:
    def sym(a: str) -> str:
        return symbol.get(a, a[:10])

    s = summary(bt)
    out = [f"# Backtest, blocks {s['from_block'] + 1} to {s['to_block']}", "",
           f"- source liquidations: {s['source_liquidations']}, taken by the keeper: "
           f"{s['taken_by_keeper']}, missed: {s['missed']}",
           f"- keeper liquidations: {s['keeper_liquidations']}, profit "
           f"${s['keeper_profit_usd']:,.2f}, gas {s['keeper_gas_used']:,}",
           f"- source transactions replayed: {s['source_txs']} "
           f"({s['source_txs_reverted_on_replay']} reverted on the replay, "
           f"{s['source_txs_not_replayed']} not replayed)", ""]
    if chart:
        out += [f"![the crash]({chart})", ""]
    out += ["## Source liquidations", "", "| block | user | pair | liquidator | debt covered "
            "| debt covered $ | keeper |", "|---|---|---|---|---|---|---|"]
    for r in source_rows(bt, symbol):
        out.append(f"| {r.block} | `{r.user}` | {sym(r.collateral)}/{sym(r.debt)} | "
                   f"`{r.liquidator}` | {_units(bt, r.debt, r.debt_covered)} {sym(r.debt)} | "
                   f"{r.debt_covered_usd:,.2f} | "
                   f"{'taken' if r.taken else 'missed: ' + r.reason} |")
    out += ["", "## Keeper liquidations", "", "| block | user | pair | profit $ | gas | tx |",
            "|---|---|---|---|---|---|"]
    for k in keeper_liquidations(bt):
        out.append(f"| {k.block} | `{k.user}` | {sym(k.collateral)}/{sym(k.debt)} | "
                   f"{k.profit_usd:,.2f} | {k.gas_used:,} | `{k.tx_hash}` |")
    return "\n".join(out) + "\n"
