"""From what the node returns (heads, logs) to what the position book applies."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from keeper.chain.types import Head, Log
from keeper.protocols.aave_v3 import decoding
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3.book import BookBlock
from keeper.protocols.aave_v3.reader import MarketHints


def head_ref(head: Head) -> BookBlock:
    return BookBlock(head.number, head.hash, head.parent_hash, head.timestamp)


def ref_head(ref: BookBlock) -> Head:
    return Head(ref.number, ref.hash, ref.parent_hash, ref.timestamp, None)


def decode_logs(logs: Iterable[Log]) -> list[ev.AaveEvent]:
    """The typed events among ``logs``, in chain order."""
    out = []
    for lg in logs:
        e = decoding.decode_log(lg)
        if e is not None:
            out.append(e)
    return out


def hints_after(hints: MarketHints, events: Sequence[ev.AaveEvent]) -> MarketHints:
    """``hints`` grown by what ``events`` introduce (a new reserve, an eMode category used)."""
    assets = list(hints.assets)
    ids = set(hints.emode_ids)
    for e in events:
        if isinstance(e, ev.ReserveInitialized) and e.asset not in assets:
            assets.append(e.asset)
        elif isinstance(e, ev.EModeCategoryAdded | ev.UserEModeSet) and e.category_id:
            ids.add(e.category_id)
    return MarketHints(tuple(assets), frozenset(ids), hints.emode_sources)


def events_by_block(heads: Sequence[Head], events: Sequence[ev.AaveEvent],
                    logs: Sequence[Log]) -> dict[int, list[ev.AaveEvent]] | None:
    """``events`` (decoded from ``logs``, a ranged ``eth_getLogs`` over some of ``heads``) by block
    number; None when the heads do not chain or a log names another block hash than its
    head's: the chain moved between the headers and the logs."""
    for prev, head in itertools.pairwise(heads):
        if head.parent_hash != prev.hash:
            return None
    hashes = {h.number: h.hash for h in heads}
    if any(hashes.get(lg.block_number) != lg.block_hash for lg in logs):
        return None
    by_block: dict[int, list[ev.AaveEvent]] = {}
    for e in events:
        by_block.setdefault(e.block_number, []).append(e)
    return by_block
