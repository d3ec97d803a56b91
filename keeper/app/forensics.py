"""Why the keeper did not win a liquidation: one reason for each, from the decision record
(``keeper.app.decisions``) and what the chain says about the transactions.

Pure: ``classify`` takes a liquidation someone else made in block B, the keeper's records for
that account, the keeper-wide halt records and the chain's word on our transactions, and
returns one ``Verdict``. The rules, first match wins:

1. our transaction for the account was mined in block B too, after theirs: lost the race, to a
   higher priority fee, or at an equal or lower fee by being mined earlier in the block (ours
   first and theirs after: they took what the close factor left of it); or our simulation on
   the pending state over block B-1 reverted: theirs was pending first (rule 5);
2. our transaction for it was handed out before B and still pending at B: in flight;
3. the oracle guard held the account at B-1;
4. the account was not a candidate at the scan of block B-1 (never flagged, or flagged only at
   B or later: how many blocks late), or was taken again after our own liquidation of it;
5. the keeper's last word on it before B (made before block B had arrived: a verdict reached
   after it, on any block, is no word on B): skipped by the planner (unprofitable, with the
   figure, or another rejection), planned but not yet handed out (in flight), refused by the
   kill switch, the circuit breaker or the gas budget, or sent and failed;
6. no word: sending was halted (a breaker, the gas budget), or it was queued: flagged, not yet
   planned (the throughput).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keeper.app.decisions import Decision

REASONS: dict[str, str] = {
    "not_seen": "not seen in time",
    "unprofitable": "unprofitable by our model",
    "skipped": "skipped by the planner",
    "lost_race_fee": "lost the race to a higher fee",
    "lost_race_order": "lost the race: mined earlier in the block",
    "lost_race_pending": "lost the race: theirs was pending first",
    "after_ours": "taken after our liquidation (what the close factor left)",
    "in_flight": "in flight",
    "queued": "queued: flagged but not yet planned",
    "oracle_guard": "held by the oracle guard",
    "breaker": "a breaker/kill switch",
    "gas_budget": "gas budget",
    "not_sent": "not sent (simulation or fee admission)",
    "failed": "our transaction failed",
}


@dataclass(frozen=True, slots=True)
class TheirLiquidation:
    """A Pool ``LiquidationCall`` by someone else, with its transaction's place and tip."""

    block: int
    timestamp: int  # of the block
    tx_hash: str
    tx_index: int
    user: str
    liquidator: str
    collateral_asset: str
    debt_asset: str
    debt_to_cover: int
    tip: int | None  # effective priority fee per gas, wei


@dataclass(frozen=True, slots=True)
class OurTx:
    """What the chain says about one of our transactions."""

    tx_hash: str
    block: int | None  # None: not mined
    index: int | None = None
    tip: int | None = None
    ok: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str  # a key of REASONS
    detail: str

    @property
    def label(self) -> str:
        return REASONS[self.reason]


def _gwei(wei: int | None) -> str:
    return "?" if wei is None else f"{wei / 1e9:.3f} gwei"


def _race(ev: TheirLiquidation, ours: OurTx) -> Verdict:
    where = (f"theirs {ev.tx_hash[:10]} at index {ev.tx_index} tip {_gwei(ev.tip)}, ours "
             f"{ours.tx_hash[:10]} at index {ours.index} tip {_gwei(ours.tip)}")
    if ours.index is not None and ours.index < ev.tx_index:
        return Verdict("after_ours", f"ours mined first in block {ev.block}: {where}")
    if ev.tip is not None and ours.tip is not None and ev.tip > ours.tip:
        return Verdict("lost_race_fee", where)
    return Verdict("lost_race_order", where)


def _sent_hashes(records: Sequence[Decision]) -> list[tuple[Decision, str]]:
    return [(r, str(r.data["tx_hash"]).lower()) for r in records
            if r.kind == "sent" and r.data.get("tx_hash")]


def _ended_before(records: Sequence[Decision], tx_hash: str, block: int) -> bool:
    return any(r.kind == "outcome" and r.known_at < block
               and tx_hash in (h.lower() for h in r.data.get("hashes", ())) for r in records)


def _chain_race(ev: TheirLiquidation, records: Sequence[Decision],
                ours: Mapping[str, OurTx]) -> Verdict | None:
    """Rules 1 and 2: our transaction in their block, or pending at it."""
    sends = _sent_hashes(records)
    for _, h in sends:
        tx = ours.get(h)
        if tx is not None and tx.block == ev.block:
            return _race(ev, tx)
    for r, h in sends:
        tx = ours.get(h)
        mined_by_then = tx is not None and tx.block is not None and tx.block <= ev.block
        if r.known_at < ev.block and not mined_by_then and not _ended_before(records, h, ev.block):
            return Verdict("in_flight", f"our {h[:10]} (nonce {r.data.get('nonce')}, tip "
                                        f"{_gwei(r.data.get('tip'))}) handed out at head "
                                        f"{r.block}, pending at block {ev.block}")
    return None


def _last(records: Sequence[Decision], kinds: tuple[str, ...], before: int) -> Decision | None:
    found = None
    for r in records:
        if r.kind in kinds and r.block < before:
            found = r
    return found


def _not_seen(ev: TheirLiquidation, records: Sequence[Decision],
              cleared: Decision | None) -> Verdict:
    later = next((r for r in records if r.kind == "flagged" and r.block >= ev.block), None)
    if later is None:
        why = f"not a candidate since block {cleared.block}" if cleared else "never flagged"
        return Verdict("not_seen", f"{why} before block {ev.block}")
    late_ms = max(0.0, later.at - ev.timestamp) * 1000
    return Verdict("not_seen", f"flagged at block {later.block}, {later.block - ev.block + 1} "
                               f"block(s) late ({late_ms:.0f} ms after block {ev.block}'s time)")


def _halted(halts: Sequence[Decision], before: int) -> Verdict | None:
    last = _last(halts, ("halt",), before)
    codes = list(last.data.get("codes", ())) if last is not None else []
    if not codes:
        return None
    detail = "; ".join(last.data.get("messages", ())) if last is not None else ""
    reason = "gas_budget" if codes == ["gas_budget"] else "breaker"
    return Verdict(reason, f"sending halted since block {last.block if last else '?'}: {detail}")


def _skipped(r: Decision) -> Verdict:
    reason, detail = str(r.data.get("reason", "")), str(r.data.get("detail", ""))
    if reason == "unprofitable":
        best = r.data.get("best_net_usd")
        figure = f"best net profit {best / 1e8:.2f} USD" if isinstance(best, int) else ""
        figure = "; ".join(x for x in (figure, detail) if x)
        return Verdict("unprofitable", f"{figure} (planned at block {r.block})")
    return Verdict("skipped", f"{reason}: {detail} (at block {r.block})".replace(":  (", " ("))


def _outcome(r: Decision, block: int) -> Verdict:
    status, why = str(r.data.get("status", "")), str(r.data.get("reason", ""))
    if status == "skipped":
        lowered = why.lower()
        if lowered.startswith("simulation: reverted") and r.head == block - 1:
            # Simulated on the pending state over block B-1: theirs, already in the mempool
            # and mined in B, was in it and took the account first.
            return Verdict("lost_race_pending", f"our simulation on the pending state over "
                                                f"block {r.head} {why.removeprefix('simulation: ')}")
        if lowered.startswith(("kill switch", "circuit breaker")):
            return Verdict("breaker", f"{why} (block {r.block})")
        if lowered.startswith("gas budget"):
            return Verdict("gas_budget", f"{why} (block {r.block})")
        return Verdict("not_sent", f"{why} (block {r.block})")
    if status == "mined":
        return Verdict("after_ours", f"ours mined at block {r.block}; not planned again")
    hashes = list(r.data.get("hashes", ()))
    tx = hashes[-1][:10] if hashes else "?"
    return Verdict("failed", f"ours {tx} {status} at block {r.block}: {why}".rstrip(": "))


def classify(ev: TheirLiquidation, records: Sequence[Decision], halts: Sequence[Decision],
             ours: Mapping[str, OurTx]) -> Verdict:
    """The one reason the keeper did not take ``ev`` (see the module docstring). ``records``
    are the account's, in the order written; ``halts`` the keeper-wide ones."""
    raced = _chain_race(ev, records, ours)
    if raced is not None:
        return raced
    held = _last(records, ("held", "released"), ev.block)
    if held is not None and held.kind == "held":
        assets = ", ".join(held.data.get("assets", ()))
        return Verdict("oracle_guard", f"held since block {held.block} ({assets} halted)")
    at = max((i for i, r in enumerate(records)
              if r.kind in ("flagged", "cleared") and r.block < ev.block), default=None)
    flag = records[at] if at is not None else None
    if at is None or flag is None or flag.kind == "cleared":
        return _not_seen(ev, records, flag)
    after = [r for r in records[at + 1:]
             if r.kind in ("planned", "skipped", "sent", "outcome") and r.known_at < ev.block]
    if not after:
        return _halted(halts, ev.block) or Verdict(
            "queued", f"flagged at block {flag.block}, not planned before block {ev.block}")
    last = after[-1]
    if last.kind == "skipped":
        return _skipped(last)
    if last.kind == "outcome":
        return _outcome(last, ev.block)
    return Verdict("in_flight", f"planned at block {last.block}, not mined before block "
                                f"{ev.block}")


def tally(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """Counts per reason key, largest first; they add up to ``len(verdicts)``."""
    return dict(Counter(v.reason for v in verdicts).most_common())
