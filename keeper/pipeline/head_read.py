"""Everything the sync reads of one block before applying it: its logs and the market at it
(one JSON-RPC batch), read again when the block changed the market's shape, settled when the
node answers for a later state, and the feeds behind the price sources when those moved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keeper.chain.logs import log_filter, parse_logs
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import Head
from keeper.errors import KeeperError
from keeper.obs.logging import get_logger
from keeper.pipeline.block_events import decode_logs, hints_after
from keeper.pipeline.tip_read import settled_read
from keeper.protocols.aave_v3 import decoding
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3.book import MarketState
from keeper.protocols.aave_v3.events_later import Upgraded
from keeper.protocols.aave_v3.reader import MarketHints, MarketRead, MarketReader
from keeper.protocols.aave_v3.revision import read_revision

log = get_logger(__name__)


class HeadReadError(KeeperError, RuntimeError):
    """The node keeps answering for a later state than the block asked for."""


@dataclass(frozen=True, slots=True)
class HeadRead:
    """What was read of a block: its events, the market and (when the price sources moved)
    the feed behind each source."""

    events: list[ev.AaveEvent]
    read: MarketRead
    hints: MarketHints
    feeds: dict[str, str] | None


async def read_head(rpc: JsonRpc, reader: MarketReader, state: MarketState, head: Head,
                    carried: Sequence[ev.AaveEvent],
                    addresses: list[str]) -> tuple[HeadRead, MarketReader]:
    """The reads of ``head`` on top of ``state`` (the book's), and the reader to go on with
    (another one when the Pool was upgraded in ``head``). ``carried``: the events of the
    blocks applied in the same step before ``head`` (their market was not read)."""
    hints = state.hints
    flt = log_filter(addresses, [list(decoding.topics().all)], block_hash=head.hash)
    method, params = reader.request(hints, head.hash)
    raw_logs, raw_market = await rpc.batch([("eth_getLogs", [flt]), (method, params)])
    events = decode_logs(parse_logs(raw_logs))
    read = reader.decode(hints, raw_market)
    pool = reader.contracts.pool
    if any(isinstance(e, Upgraded) and e.address == pool for e in events):
        revision = await read_revision(rpc, pool, head.hash)
        if revision != reader.revision:
            log.warning("pool_upgraded", block=head.number, revision=revision.label,
                        previous=reader.revision.label)
            reader = MarketReader(reader.contracts, revision)
            read, hints = await reader.read(rpc, head.hash, hints)
    seen = [*carried, *events]
    needed = hints_after(hints, seen).union(read.needs())
    if not hints.covers(needed):
        # The market changed shape in this step: read it again with the new hints.
        read, hints = await reader.read(rpc, head.hash, needed)
    # A node may answer for the block it is sealing next (see ``tip_read``).
    settled = await settled_read(rpc, reader, head, read, hints, needed)
    if settled is None:
        raise HeadReadError(f"block {head.number}: the node keeps answering for a later state")
    read, hints = settled
    sources_moved = (
        state.read is None
        or state.read.sources != read.sources
        or any(isinstance(e, ev.AssetSourceUpdated | ev.AggregatorConfirmed) for e in seen)
    )
    feeds = None
    if sources_moved:
        feeds = await reader.resolve_aggregators(rpc, read.sources.values(), head.hash)
    return HeadRead(events, read, hints, feeds), reader
