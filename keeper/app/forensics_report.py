"""``keeper forensics``' data and report: every Pool ``LiquidationCall`` of a block range made
by anyone but us, each with the one reason the keeper did not take it
(``keeper.app.forensics.classify``), from the daemon's decision record and the chain (the
winner's transaction index and priority fee, and ours when we raced in the same block)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from keeper.app.decisions import Decision
from keeper.app.forensics import REASONS, OurTx, TheirLiquidation, Verdict, classify, tally
from keeper.chain.logs import get_logs
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import Log
from keeper.contracts import artifacts
from keeper.protocols.aave_v3.decoding import decode_log
from keeper.protocols.aave_v3.events import LiquidationCall

READ_CHUNK = 200  # receipts and blocks per JSON-RPC batch


@dataclass(frozen=True, slots=True)
class ForensicsRow:
    block: int
    tx_hash: str
    user: str
    liquidator: str
    collateral: str
    debt: str
    debt_covered: int
    reason: str  # a key of keeper.app.forensics.REASONS
    label: str
    detail: str


@dataclass(frozen=True, slots=True)
class Forensics:
    from_block: int
    to_block: int
    ours: tuple[str, ...]  # the addresses counted as us
    ours_taken: int  # LiquidationCalls of the range that were ours
    rows: tuple[ForensicsRow, ...]

    @property
    def summary(self) -> dict[str, int]:
        return tally([Verdict(r.reason, r.detail) for r in self.rows])


async def _batched(rpc: JsonRpc, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(calls), READ_CHUNK):
        out += await rpc.batch(calls[i:i + READ_CHUNK], return_exceptions=True)
    return out


async def _tips(rpc: JsonRpc, hashes: Sequence[str]) -> dict[str, OurTx]:
    """Each transaction's block, index and effective priority fee (receipt and base fee)."""
    receipts = await _batched(rpc, [("eth_getTransactionReceipt", [h]) for h in hashes])
    mined = {h: r for h, r in zip(hashes, receipts, strict=True) if isinstance(r, dict)}
    numbers = sorted({int(r["blockNumber"], 16) for r in mined.values()})
    blocks = await _batched(rpc, [("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    base = {n: int(b.get("baseFeePerGas") or "0x0", 16)
            for n, b in zip(numbers, blocks, strict=True) if isinstance(b, dict)}
    out: dict[str, OurTx] = {}
    for h in hashes:
        r = mined.get(h)
        if r is None:
            out[h] = OurTx(h, None)
            continue
        number = int(r["blockNumber"], 16)
        tip = int(r["effectiveGasPrice"], 16) - base.get(number, 0)
        out[h] = OurTx(h, number, int(r["transactionIndex"], 16), tip, int(r["status"], 16) == 1)
    return out


async def _timestamps(rpc: JsonRpc, numbers: Iterable[int]) -> dict[int, int]:
    ns = sorted(set(numbers))
    blocks = await _batched(rpc, [("eth_getBlockByNumber", [hex(n), False]) for n in ns])
    return {n: int(b["timestamp"], 16) for n, b in zip(ns, blocks, strict=True)
            if isinstance(b, dict)}


async def liquidation_logs(rpc: JsonRpc, pool: str, from_block: int,
                           to_block: int) -> list[tuple[Log, LiquidationCall]]:
    """Every Pool ``LiquidationCall`` in the range with its log (for the transaction)."""
    topic = artifacts.aave("Pool").abi.event("LiquidationCall").topic0
    logs: list[Log] = await get_logs(rpc, pool, [topic], from_block, to_block)
    return [(lg, ev) for lg in logs if isinstance(ev := decode_log(lg), LiquidationCall)]


async def forensics(rpc: JsonRpc, pool: str, from_block: int, to_block: int,
                    decisions: Sequence[Decision], ours: Iterable[str]) -> Forensics:
    """Every liquidation of the range not made by ``ours`` (our liquidator contract and
    signers), each with why the keeper did not take it."""
    us = {a.lower() for a in ours}
    us |= {str(d.data["sender"]).lower() for d in decisions
           if d.kind == "sent" and d.data.get("sender")}
    found = await liquidation_logs(rpc, pool, from_block, to_block)
    theirs = [(lg, ev) for lg, ev in found if ev.liquidator.lower() not in us]
    by_user: dict[str, list[Decision]] = defaultdict(list)
    halts: list[Decision] = []
    for d in decisions:
        (halts if d.user == "" else by_user[d.user.lower()]).append(d)
    their_txs = await _tips(rpc, sorted({lg.tx_hash.lower() for lg, _ in theirs}))
    users = {ev.user.lower() for _, ev in theirs}
    our_hashes = sorted({str(d.data["tx_hash"]).lower() for u in users for d in by_user[u]
                         if d.kind == "sent" and d.data.get("tx_hash")})
    our_txs = await _tips(rpc, our_hashes)
    stamps = await _timestamps(rpc, (ev.block_number for _, ev in theirs))
    rows = []
    for lg, ev in theirs:
        tx = their_txs.get(lg.tx_hash.lower())
        liquidation = TheirLiquidation(
            ev.block_number, stamps.get(ev.block_number, 0), lg.tx_hash.lower(),
            tx.index if tx is not None and tx.index is not None else 0, ev.user.lower(),
            ev.liquidator.lower(), ev.collateral_asset, ev.debt_asset, ev.debt_to_cover,
            tx.tip if tx is not None else None)
        verdict = classify(liquidation, by_user[ev.user.lower()], halts, our_txs)
        rows.append(ForensicsRow(ev.block_number, lg.tx_hash.lower(), ev.user.lower(),
                                 ev.liquidator.lower(), ev.collateral_asset, ev.debt_asset,
                                 ev.debt_to_cover, verdict.reason, verdict.label,
                                 verdict.detail))
    return Forensics(from_block, to_block, tuple(sorted(us)), len(found) - len(theirs),
                     tuple(rows))


def to_json(f: Forensics, symbol: dict[str, str] | None = None) -> dict[str, Any]:
    symbol = symbol or {}
    rows = []
    for r in f.rows:
        row = asdict(r)
        row["collateral"] = symbol.get(r.collateral, r.collateral)
        row["debt"] = symbol.get(r.debt, r.debt)
        rows.append(row)
    return {"from_block": f.from_block, "to_block": f.to_block, "ours": list(f.ours),
            "ours_taken": f.ours_taken, "total": len(f.rows), "summary": f.summary,
            "reasons": dict(REASONS), "liquidations": rows}


def format_table(f: Forensics, symbol: dict[str, str] | None = None) -> str:
    symbol = symbol or {}
    lines = [f"Liquidations in blocks {f.from_block}..{f.to_block}: {len(f.rows)} by others, "
             f"{f.ours_taken} by us", ""]
    if f.rows:
        lines.append(f"{'block':>8}  {'user':<12} {'pair':<14} {'liquidator':<12} reason")
    for r in f.rows:
        pair = f"{symbol.get(r.collateral, r.collateral[:6])}/{symbol.get(r.debt, r.debt[:6])}"
        lines.append(f"{r.block:>8}  {r.user[:12]:<12} {pair:<14} {r.liquidator[:12]:<12} "
                     f"{r.label}: {r.detail}")
    lines += ["", "Why not ours:"]
    for reason, count in f.summary.items():
        lines.append(f"  {count:>6}  {REASONS[reason]}")
    lines.append(f"  {len(f.rows):>6}  total")
    return "\n".join(lines)
