"""The report of one pass (``keeper run --once``): one line per account, liquidated or not."""

from __future__ import annotations

from keeper.app.root import Keeper
from keeper.exec.executor import Execution
from keeper.exec.tx import Status

BUDGET_REFUSAL = "gas budget exhausted"  # keeper.exec.guards' refusal message starts so


def format_executions(keeper: Keeper, results: list[Execution], *, dry_run: bool) -> str:
    """The one-pass report: one line per account, liquidated or skipped with its reason."""
    head = (f"{'account':44s} {'pair':16s} {'debt covered':>16s} {'expected $':>11s} "
            f"{'realised $':>11s} {'gas':>9s}  tx / reason")
    lines = [head]
    mined = 0
    for r in results:
        if r.plan is None:
            lines.append(f"{r.user:44s} {'-':16s} {'':>16s} {'':>11s} {'':>11s} {'':>9s}  "
                         f"skipped: {r.skipped_reason}")
            continue
        p = r.plan
        pair = f"{keeper.target.symbol(p.collateral_asset)}/{keeper.target.symbol(p.debt_asset)}"
        dec = next(res.configuration.decimals for res in keeper.sync.book.market().reserves.values()
                   if res.asset == p.debt_asset)
        covered = f"{p.debt_to_cover / 10**dec:,.4f}"
        expected = (r.predicted_net_usd if r.predicted_net_usd is not None else p.net_profit_usd) / 1e8
        realised = f"{r.realised_net_usd / 1e8:,.2f}" if r.realised_net_usd is not None else "-"
        gas = r.outcome.gas_used if r.outcome and r.outcome.gas_used else r.predicted_gas
        if r.outcome is not None and r.outcome.tx_hash and r.realised_profit is not None:
            tail = r.outcome.tx_hash
            mined += 1
        elif dry_run and r.outcome is not None and r.outcome.dry_run:
            tail = "dry run: would send (simulated ok)"
        elif r.outcome is not None and r.outcome.status not in (Status.SKIPPED, Status.MINED):
            tail = r.skipped_reason  # sent: "reverted: …", "dropped: …", "cancelled: …"
        else:
            tail = f"skipped: {r.skipped_reason}"
        lines.append(f"{r.user:44s} {pair:16s} {covered:>16s} {expected:>11,.2f} {realised:>11s} "
                     f"{gas or 0:>9,}  {tail}")
    lines.append(f"{len(results)} liquidatable account(s): {mined} liquidated, "
                 f"{len(results) - mined} not" + (" (dry run: nothing signed or sent)" if dry_run else ""))
    budget = [r for r in results if r.outcome is not None
              and r.outcome.reason.startswith(BUDGET_REFUSAL)]
    if budget:
        # Said on stdout, not only in the logs: a user must see that the pass stopped short.
        lines.append(f"stopped on the hourly gas budget: {len(budget)} account(s) not sent "
                     "(raise executor.gas_budget_per_hour_eth to let a crash through)")
    return "\n".join(lines)
