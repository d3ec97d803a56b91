"""``keeper risk``'s inputs, read from the chain: the book (synced or resumed from the
checkpoint), the DEX pools as they are, the oracle's update history, and how assets priced off
another's feed follow it. The analyses are in ``keeper.app.risk_analysis``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from keeper.app.book_source import synced_book
from keeper.app.config import KeeperConfig
from keeper.app.target import Target
from keeper.chain.logs import get_logs
from keeper.chain.rpc import HttpRpc, JsonRpc
from keeper.domain.quote import needed_pairs
from keeper.domain.risk_book import RiskBook, build_risk_book
from keeper.domain.risk_shock import PriceLink
from keeper.domain.wadray import WAD
from keeper.errors import KeeperError
from keeper.obs.logging import get_logger
from keeper.protocols.aave_v3 import abis
from keeper.protocols.aave_v3.book import PositionBook
from keeper.protocols.aave_v3.decoding import decode_log
from keeper.protocols.aave_v3.events import AnswerUpdated
from keeper.protocols.aave_v3.reader import AaveV3Contracts
from keeper.protocols.uniswap_v2.pair import load_pair_reserves

log = get_logger(__name__)

STABLE_BAND = 0.05
"""Without configured stables, an asset priced within 5% of one base unit (1 USD) is one."""


class RiskInputError(KeeperError, ValueError):
    """The market gives the risk lab nothing to work on (no reserves, no prices)."""


@dataclass(frozen=True, eq=False)
class RiskInputs:
    """Everything the analyses need, at one block."""

    block: int
    timestamp: int
    book: RiskBook
    symbols: Mapping[str, str]
    stables: tuple[str, ...]
    links: tuple[PriceLink, ...]
    pairs: Mapping[tuple[str, str], tuple[int, int]]
    hubs: tuple[str, ...]
    native_asset: str | None
    history: Mapping[str, list[tuple[int, int]]] = field(default_factory=dict)
    resumed_from: int | None = None

    def symbol(self, asset: str) -> str:
        """The asset's symbol, or the start of its address."""
        return self.symbols.get(asset, asset[:10])


async def gather(cfg: KeeperConfig, target: Target, *, progress: bool) -> RiskInputs:
    """Sync the book and read the pools, the feed links and the oracle history."""
    async with HttpRpc(target.rpc_urls[0], timeout=cfg.network.request_timeout) as rpc:
        contracts = target.contracts or await AaveV3Contracts.resolve(
            rpc, target.addresses_provider)
        book, resumed = await synced_book(cfg, rpc, target, contracts, progress=progress)
        market = book.market()
        if not market.reserves or not market.prices:
            raise RiskInputError("the market has no reserves or no prices yet")
        accounts = {u: book.account(u) for u in book.users()}
        risk_book = await asyncio.to_thread(build_risk_book, market, accounts)
        assets = risk_book.assets
        pairs: dict[tuple[str, str], tuple[int, int]] = {}
        if target.uniswap_v2_factory:
            pairs = await load_pair_reserves(
                rpc, target.uniswap_v2_factory, needed_pairs(assets, assets, target.hubs),
                init_code_hash=target.pair_init_code_hash, block=hex(book.block_number))
        links, bases = await _feed_links(rpc, book)
        since = max(target.start_block, book.block_number - cfg.risk.history_blocks)
        history = await _oracle_history(rpc, bases, since, book.block_number)
    symbols = {a.lower(): s for a, s in target.symbols.items()}
    stables = tuple(cfg.risk.stables) or tuple(
        a for a in assets if abs(market.prices.get(a, 0) / 1e8 - 1) <= STABLE_BAND)
    return RiskInputs(
        block=book.block_number, timestamp=book.block_timestamp, book=risk_book,
        symbols=symbols, stables=tuple(s.lower() for s in stables), links=links, pairs=pairs,
        hubs=tuple(h.lower() for h in target.hubs),
        native_asset=target.native_asset.lower() if target.native_asset else None,
        history=history, resumed_from=resumed)


async def _feed_links(rpc: JsonRpc, book: PositionBook
                      ) -> tuple[tuple[PriceLink, ...], dict[str, str]]:
    """Assets that share an aggregator: the one priced at its answer is the base, the others
    (rate adapters) follow it at today's ratio. Also each aggregator's base asset."""
    prices = book.market().prices
    latest = abis.price_feed()["latestAnswer"]
    links: list[PriceLink] = []
    bases: dict[str, str] = {}
    for aggregator, assets in book.state.aggregators.items():
        raw = await rpc.call("eth_call", [{"to": aggregator, "data": "0x" + latest.encode().hex()},
                                          hex(book.block_number)])
        answer = int(latest.decode_output(str(raw))[0])
        base = next((a for a in sorted(assets) if prices.get(a) == answer), None)
        if base is None:
            continue
        bases[aggregator] = base
        links += [PriceLink(a, base, prices[a] * WAD // answer) for a in sorted(assets)
                  if a != base and prices.get(a) and answer > 0]
    return tuple(links), bases


async def _oracle_history(rpc: JsonRpc, bases: Mapping[str, str], start: int, end: int
                          ) -> dict[str, list[tuple[int, int]]]:
    """``(updatedAt, answer)`` of every AnswerUpdated of each base asset's aggregator."""
    if not bases:
        return {}
    topic = abis.price_feed().event("AnswerUpdated").topic0
    logs = await get_logs(rpc, list(bases), [topic], start, end)
    out: dict[str, list[tuple[int, int]]] = {}
    for lg in logs:
        ev = decode_log(lg)
        if isinstance(ev, AnswerUpdated) and ev.address in bases:
            out.setdefault(bases[ev.address], []).append((ev.updated_at, ev.current))
    return out
