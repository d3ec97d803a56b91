"""The report of one pass (``keeper run --once``): one line per account, liquidated or not."""

from __future__ import annotations

from keeper.app.root import Keeper
from keeper.domain.swap_route import describe
from keeper.errors import RpcError
from keeper.exec.executor import Execution
from keeper.exec.tx import Status
from keeper.protocols.erc20 import decode_symbol, symbol_call

BUDGET_REFUSAL = "gas budget exhausted"  # keeper.exec.guards' refusal message starts so


async def asset_symbols(keeper: Keeper, assets: set[str]) -> dict[str, str]:
    """asset -> symbol for a report: the target's where known (the devnet's manifest), else
    each token's own ``symbol()`` on chain (any market); an unreadable one keeps its address."""
    known = {a: keeper.target.symbols[a] for a in assets if a in keeper.target.symbols}
    missing = sorted(assets - known.keys())
    if missing:
        try:
            results = await keeper.rpc.batch([symbol_call(a) for a in missing],
                                             return_exceptions=True)
        except RpcError:
            results = [None] * len(missing)
        for asset, result in zip(missing, results, strict=True):
            if (symbol := decode_symbol(result)) is not None:
                known[asset] = symbol
    return known


def format_executions(keeper: Keeper, results: list[Execution], *, dry_run: bool,
                      symbols: dict[str, str] | None = None) -> str:
    """The one-pass report: one line per account, liquidated or skipped with its reason.
    ``symbols`` (from ``asset_symbols``) names the assets; the target's are used otherwise."""
    symbols = symbols or {}

    def symbol(asset: str) -> str:
        return symbols.get(asset) or keeper.target.symbol(asset)

    def named(reason: str) -> str:
        # The planner's reasons name assets by address: a report names them by symbol.
        for asset, sym in symbols.items():
            reason = reason.replace(asset, sym)
        return reason

    head = (f"{'account':44s} {'pair':16s} {'debt covered':>24s} {'expected $':>11s} "
            f"{'realised $':>11s} {'gas':>9s}  {'route':24s} tx / reason")
    lines = [head]
    mined = 0
    for r in results:
        if r.plan is None:
            lines.append(f"{r.user:44s} {'-':16s} {'':>24s} {'':>11s} {'':>11s} {'':>9s}  {'':24s} "
                         f"skipped: {named(r.skipped_reason)}")
            continue
        p = r.plan
        pair = f"{symbol(p.collateral_asset)}/{symbol(p.debt_asset)}"
        legs = p.params.swap_legs
        route = describe(legs) if legs else ("V2" + ">V2" * (len(p.swap_path) - 2)
                                             if p.swap_path else "kept" if
                                             p.params.keep_collateral else "no swap")
        dec = next(res.configuration.decimals for res in keeper.sync.book.market().reserves.values()
                   if res.asset == p.debt_asset)
        covered = f"{p.debt_to_cover / 10**dec:,.4f} {symbol(p.debt_asset)}"
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
            tail = f"skipped: {named(r.skipped_reason)}"
        lines.append(f"{r.user:44s} {pair:16s} {covered:>24s} {expected:>11,.2f} {realised:>11s} "
                     f"{gas or 0:>9,}  {route:24s} {tail}")
    lines.append(f"{len(results)} liquidatable account(s): {mined} liquidated, "
                 f"{len(results) - mined} not" + (" (dry run: nothing signed or sent)" if dry_run else ""))
    budget = [r for r in results if r.outcome is not None
              and r.outcome.reason.startswith(BUDGET_REFUSAL)]
    if budget:
        # Said on stdout, not only in the logs: a user must see that the pass stopped short.
        lines.append(f"stopped on the hourly gas budget: {len(budget)} account(s) not sent "
                     "(raise executor.gas_budget_per_hour_eth to let a crash through)")
    return "\n".join(lines)
