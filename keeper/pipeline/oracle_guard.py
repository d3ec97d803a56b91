"""The oracle guard stage: per block, read what the breaker weighs, decide, hold candidates.

For every reserve of the book's market, at the book's block (one JSON-RPC batch, pinned to the
block's hash): the oracle source's ``latestRoundData`` (its updatedAt) and the Uniswap V2
reserves of the asset against each reference asset. The asset's DEX price is the median of
the prices those pools imply (each priced by the reference's own oracle price), so one
reference whose oracle moved alone cannot decide. The decision is keeper.domain.oracle_guard's;
this stage keeps the per-asset state, applies ``keeper breaker reset`` requests, publishes
``keeper_oracle_guard_halted{asset,reason}``, logs each halt and resume, and drops the
candidates whose collateral or debt is a halted asset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak
from prometheus_client import Gauge

from keeper.chain.rpc import JsonRpc
from keeper.domain.account import Market, UserAccount
from keeper.domain.oracle_guard import (
    AssetGuard,
    GuardParams,
    HaltReason,
    Reading,
    dex_price,
    median_price,
    observe,
    reset,
)
from keeper.errors import KeeperError
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.pipeline.guard_resets import ALL_ASSETS, take_resets
from keeper.pipeline.scan import LiquidatableAccount
from keeper.protocols.aave_v3.book import PositionBook
from keeper.protocols.aave_v3.reader import MarketRead
from keeper.protocols.uniswap_v2.pair import decode_reserves, reserves_calls, sorted_pairs

log = get_logger(__name__)

_LATEST_ROUND_DATA = "0x" + keccak(text="latestRoundData()")[:4].hex()
_SYMBOL = "0x" + keccak(text="symbol()")[:4].hex()
_ZERO = "0x" + "0" * 40


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """The ``[oracle_guard]`` section, resolved: keys are lower-case symbols or addresses."""

    default: GuardParams
    overrides: Mapping[str, GuardParams | None]  # None: that asset is not guarded
    references: tuple[str, ...]  # the assets whose pools price the others
    resets: Path | None  # where ``keeper breaker reset`` leaves its requests
    # A pool whose reference side is worth less (base currency units) is no witness: a
    # drained or tiny pool says nothing about the market, and is cheap to push around.
    min_pool_base: int = 0


@dataclass(frozen=True, slots=True)
class DexSource:
    """The Uniswap V2 factory whose pools witness the market price."""

    factory: str
    init_code_hash: bytes


class OracleGuard:
    """The per-asset oracle circuit breaker over the book (see the module docstring)."""

    def __init__(self, rpc: JsonRpc, settings: GuardSettings, metrics: Metrics, *,
                 dex: DexSource | None, symbols: Mapping[str, str] | None = None) -> None:
        self.rpc = rpc
        self.settings = settings
        self.dex = dex
        self.states: dict[str, AssetGuard] = {}
        self.halted: dict[str, HaltReason] = {}
        self._symbols = {a.lower(): s for a, s in (symbols or {}).items()}
        self._held: frozenset[str] = frozenset()
        self.last_check_seconds = 0.0
        """How long the last ``check`` took (its reads, mostly)."""
        self._early: tuple[list[tuple[str, list[Any]]], asyncio.Future[list[Any]]] | None = None
        self.gauge = Gauge("oracle_guard_halted",
                           "1 while the oracle guard halts liquidations using the asset",
                           ["asset", "reason"], namespace="keeper", registry=metrics.registry)

    def symbol(self, asset: str) -> str:
        return self._symbols.get(asset, asset)

    def params(self, asset: str) -> GuardParams | None:
        """The asset's thresholds (its override by address, then by symbol, else the default)."""
        o = self.settings.overrides
        for key in (asset, self._symbols.get(asset, "").lower()):
            if key in o:
                return o[key]
        return self.settings.default

    # ---- per block ---------------------------------------------------------------------
    async def check(self, book: PositionBook) -> Mapping[str, HaltReason]:
        """Observe the book's block; the halted assets and why."""
        started = time.perf_counter()
        try:
            return await self._observe(book)
        finally:
            self.last_check_seconds = time.perf_counter() - started

    async def _observe(self, book: PositionBook) -> Mapping[str, HaltReason]:
        found = _priced(book)
        if found is None:
            return dict(self.halted)
        read, market, assets = found
        await self._learn_symbols(assets)
        guarded = [a for a in assets if self.params(a) is not None]
        # The read first (most often the one made as the block arrived), the resets' file
        # look after it: the thread hop does not hold the read up.
        readings = await self._read(book, market, guarded, read.sources)
        if self.settings.resets is not None:
            self._apply_resets(await asyncio.to_thread(take_resets, self.settings.resets))
        for asset, reading in readings.items():
            params = self.params(asset)
            assert params is not None
            before = self.states.get(asset, AssetGuard())
            after = observe(before, reading, params)
            self.states[asset] = after
            self._publish(asset, before, after, reading)
        return dict(self.halted)

    def holding(self, account: UserAccount, market: Market) -> list[str]:
        """The halted assets ``account`` uses as collateral or debt."""
        out = []
        for asset in self.halted:
            try:
                rid = market.reserve_of(asset).id
            except LookupError:
                continue
            if account.configuration.is_using_as_collateral_or_borrowing(rid):
                out.append(asset)
        return out

    def release(self, book: PositionBook,
                candidates: Sequence[LiquidatableAccount]) -> list[LiquidatableAccount]:
        """``candidates`` less those a halted asset holds (logged when the held set changes)."""
        if not self.halted:
            self._held = frozenset()
            return list(candidates)
        market = book.market()
        out, held, assets = [], set(), set()
        for c in candidates:
            using = self.holding(book.account(c.user), market)
            if using:
                held.add(c.user)
                assets.update(using)
            else:
                out.append(c)
        if frozenset(held) != self._held and held:
            log.warning("liquidations_held_by_oracle_guard", block=book.block_number,
                        accounts=len(held), assets=sorted(self.symbol(a) for a in assets),
                        users=sorted(held)[:10])
        self._held = frozenset(held)
        return out

    # ---- reads -------------------------------------------------------------------------
    def read_early(self, book: PositionBook, head_hash: str) -> None:
        """Start the read of the block ``head_hash`` as it arrives, on ``book``'s market (the
        block before): the sync reads the block meanwhile, and ``check`` takes this read if
        it asks the same (its assets, sources and pools unchanged). In the 10,000-borrower
        crash the read took 33-36 ms of a loaded node, after the sync's own 20 ms."""
        found = _priced(book)
        if found is None:
            return
        read, market, assets = found
        if any(a not in self._symbols for a in assets):
            return  # the guarded set is not known yet: ``check`` learns it
        guarded = [a for a in assets if self.params(a) is not None]
        calls, _, _ = self._calls(market, guarded, read.sources, {"blockHash": head_hash})
        if self._early is not None:
            self._early[1].cancel()
        task = asyncio.ensure_future(self.rpc.batch(calls, return_exceptions=True))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved
        self._early = (calls, task)

    def _calls(self, market: Market, assets: Sequence[str], sources: Mapping[str, str],
               at: Any) -> tuple[list[tuple[str, list[Any]]], list[tuple[str, str]], list[str]]:
        """The feeds' and the pools' reads of ``assets`` at ``at``; the pools and the
        reference assets they are read against."""
        refs = [a for a in self._references(market) if a in market.prices]
        pairs = sorted_pairs((a, r) for a in assets for r in refs if r != a) if self.dex else []
        calls: list[tuple[str, list[Any]]] = [
            ("eth_call", [{"to": sources.get(a, _ZERO), "data": _LATEST_ROUND_DATA}, at])
            for a in assets]
        if self.dex is not None:
            calls += reserves_calls(self.dex.factory, pairs, init_code_hash=self.dex.init_code_hash,
                                    block=at)
        return calls, pairs, refs

    async def _answers(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The answers to ``calls``: the early read's when it asked the same, else a read."""
        early, self._early = self._early, None
        if early is not None and early[0] == calls:
            with contextlib.suppress(KeeperError):
                return await early[1]
        elif early is not None:
            early[1].cancel()
        return await self.rpc.batch(calls, return_exceptions=True) if calls else []

    async def _read(self, book: PositionBook, market: Market, assets: Sequence[str],
                    sources: Mapping[str, str]) -> dict[str, Reading]:
        at: Any = {"blockHash": book.block_hash} if book.block_hash else hex(book.block_number)
        calls, pairs, refs = self._calls(market, assets, sources, at)
        raw = await self._answers(calls)
        feeds, pools = raw[:len(assets)], raw[len(assets):]
        reserves = decode_reserves(pairs, ["0x" if isinstance(r, Exception) else r for r in pools])
        out = {}
        for asset, feed in zip(assets, feeds, strict=True):
            implied = []
            for ref in refs:
                key = (min(asset, ref), max(asset, ref))
                if ref == asset or key not in reserves:
                    continue
                r0, r1 = reserves[key]
                mine, theirs = (r0, r1) if key[0] == asset else (r1, r0)
                ref_unit: int = 10 ** _decimals(market, ref)
                if theirs * market.prices[ref] // ref_unit < self.settings.min_pool_base:
                    continue
                p = dex_price(mine, theirs, _decimals(market, asset), _decimals(market, ref),
                              market.prices[ref])
                if p is not None:
                    implied.append(p)
            out[asset] = Reading(book.block_number, book.block_timestamp, market.prices[asset],
                                 median_price(implied), _updated_at(feed))
        return out

    def _references(self, market: Market) -> list[str]:
        by_symbol = {s.lower(): a for a, s in self._symbols.items()}
        known = {r.asset.lower() for r in market.reserves.values()}
        out = []
        for ref in self.settings.references:
            asset = ref if ref.startswith("0x") else by_symbol.get(ref)
            if asset is not None and asset in known and asset not in out:
                out.append(asset)
        return out

    async def _learn_symbols(self, assets: Sequence[str]) -> None:
        unknown = [a for a in assets if a not in self._symbols]
        if not unknown:
            return
        raw = await self.rpc.batch([("eth_call", [{"to": a, "data": _SYMBOL}, "latest"])
                                    for a in unknown], return_exceptions=True)
        for asset, r in zip(unknown, raw, strict=True):
            self._symbols[asset] = _decode_symbol(r) or asset

    # ---- state changes -----------------------------------------------------------------
    def _apply_resets(self, requests: Sequence[str]) -> None:
        for req in requests:
            matched = [a for a in self.states
                       if req in (ALL_ASSETS, a, self._symbols.get(a, "").lower())]
            if not matched:
                log.warning("oracle_guard_reset_unknown_asset", asset=req)
            for asset in matched:
                was = self.halted.pop(asset, None)
                self.states[asset] = reset(self.states[asset])
                if was is not None:
                    self.gauge.labels(asset=self.symbol(asset), reason=was.value).set(0)
                log.warning("oracle_guard_reset", asset=asset, symbol=self.symbol(asset),
                            was_halted=was.value if was else None)

    def _publish(self, asset: str, before: AssetGuard, after: AssetGuard,
                 reading: Reading) -> None:
        symbol = self.symbol(asset)
        if before.halted is not None and before.halted != after.halted:
            self.gauge.labels(asset=symbol, reason=before.halted.value).set(0)
        if after.halted is None:
            if self.halted.pop(asset, None) is not None:
                log.info("oracle_guard_resumed", asset=asset, symbol=symbol, block=reading.block,
                         price=reading.price, dex_price=reading.dex_price)
            return
        self.gauge.labels(asset=symbol, reason=after.halted.value).set(1)
        if self.halted.get(asset) != after.halted:
            log.warning("oracle_guard_halted", asset=asset, symbol=symbol,
                        reason=after.halted.value, block=reading.block, price=reading.price,
                        dex_price=reading.dex_price, updated_at=reading.updated_at,
                        block_timestamp=reading.timestamp)
        self.halted[asset] = after.halted


def _priced(book: PositionBook) -> tuple[MarketRead, Market, list[str]] | None:
    """The book's market read, its market and the reserves it prices (None before a read)."""
    read = book.state.read
    if read is None:
        return None
    market = book.market()
    return read, market, sorted(a for a in read.reserves if a in market.prices)


def _decimals(market: Market, asset: str) -> int:
    return market.reserve_of(asset).configuration.decimals


def _updated_at(raw: object) -> int | None:
    """latestRoundData's updatedAt (the fourth word), or None when the source has none."""
    if not isinstance(raw, str):
        return None
    data = bytes.fromhex(raw.removeprefix("0x")) if len(raw) % 2 == 0 else b""
    if len(data) < 5 * 32:
        return None
    return int.from_bytes(data[96:128], "big")


def _decode_symbol(raw: object) -> str | None:
    """An ERC-20 ``symbol()``: an ABI string, or a bytes32 (older tokens), or None."""
    if not isinstance(raw, str):
        return None
    try:
        data = bytes.fromhex(raw.removeprefix("0x"))
    except ValueError:
        return None
    text: bytes
    if len(data) >= 64 and int.from_bytes(data[:32], "big") == 32:
        n = int.from_bytes(data[32:64], "big")
        text = data[64:64 + n] if n <= len(data) - 64 else b""
    elif len(data) == 32:
        text = data.rstrip(b"\x00")
    else:
        return None
    s = text.decode("utf-8", errors="replace")
    return s if s and s.isprintable() and len(s) <= 32 else None
