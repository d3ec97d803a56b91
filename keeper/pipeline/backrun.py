"""Pending oracle updates: what they will publish, and whom the new price sinks.

The regular path reacts once a price update is mined, so the earliest it can land is the next
block. This path watches the mempool instead (``newPendingTransactions`` over WebSocket):

1. ``PendingOracleWatcher`` fetches each pending transaction sent to one of the book's
   aggregators and decodes the answer it will publish (our devnet ``PriceFeed.updateAnswer``
   or Chainlink OCR2's ``transmit``, whose answer is the report's median observation).
2. ``Backrunner.plan`` re-prices the book's market as it will be once that transaction is mined
   (``repriced``), finds the holders of the moved assets that are then liquidatable by exact
   math (``liquidatable``), and plans the best of them on that market.

Sending it right after the oracle transaction, in the same block, is keeper.exec.backrun's job.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import PendingTx
from keeper.chain.ws import WsRpc
from keeper.domain.account import Market, UserAccount, calculate_user_account_data
from keeper.domain.plan import Plan, Rejection
from keeper.domain.wadray import WAD
from keeper.errors import RpcResponseError
from keeper.obs.logging import get_logger
from keeper.pipeline.planning import LiquidationPlanner
from keeper.protocols.aave_v3.book import PositionBook

log = get_logger(__name__)

UPDATE_ANSWER = keccak(text="updateAnswer(int256)")[:4]
TRANSMIT = keccak(text="transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)")[:4]
_LATEST_ANSWER = "0x" + keccak(text="latestAnswer()")[:4].hex()
_AGGREGATOR = "0x" + keccak(text="aggregator()")[:4].hex()
MAX_CANDIDATES = 3
"""Accounts planned per update, most debt first: each plan costs a few reads, and the block
only waits for the first that pays."""


@dataclass(frozen=True, slots=True)
class OracleUpdate:
    """A pending transaction that will publish ``answer`` on ``aggregator``."""

    tx: PendingTx
    aggregator: str
    answer: int


@dataclass(frozen=True, slots=True)
class BackrunPlan:
    """The liquidation to send right after ``update``, planned on the market it makes."""

    update: OracleUpdate
    plan: Plan
    market: Market
    detected_at: float  # event-loop time the planning of this account began


class Link(StrEnum):
    """How an asset's oracle price follows its aggregator's answer."""

    DIRECT = "direct"  # the source is the aggregator or a proxy of it: price = answer
    SCALED = "scaled"  # the source prices off it (a rate adapter): price ∝ answer


# ---- decoding (pure) ---------------------------------------------------------------------
def decode_ocr2_median(report: bytes) -> int | None:
    """The answer of an OCR2 report: ``(uint32 observationsTimestamp, bytes32 rawObservers,
    int192[] observations, int192 juelsPerFeeCoin)``; the aggregator publishes the median,
    ``observations[len/2]`` (the transmitters send them sorted)."""
    try:
        _ts, _observers, observations, _juels = abi_decode(
            ["uint32", "bytes32", "int192[]", "int192"], report)
    except Exception:  # a malformed report is not ours to judge: it will revert on chain
        return None
    if not observations:
        return None
    return int(observations[len(observations) // 2])


def decode_new_answer(data: bytes) -> int | None:
    """The answer a call to an aggregator will publish, or None if it is not an update."""
    selector, args = data[:4], data[4:]
    try:
        if selector == UPDATE_ANSWER:
            (answer,) = abi_decode(["int256"], args)
            return int(answer)
        if selector == TRANSMIT:
            _context, report, _rs, _ss, _vs = abi_decode(
                ["bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32"], args)
            return decode_ocr2_median(bytes(report))
    except Exception:  # calldata that does not decode is some other call
        return None
    return None


# ---- the market after the update (pure) --------------------------------------------------
def repriced(prices: Mapping[str, int], links: Mapping[str, Link], old_answer: int,
             new_answer: int) -> dict[str, int]:
    """``prices`` with every linked asset moved to the new answer.

    A direct source reports the answer itself; a scaled one (price = base × rate) moves by
    ``new / old`` of its base, its rate being unchanged within the block.
    """
    out = dict(prices)
    for asset, link in links.items():
        if link is Link.DIRECT:
            out[asset] = new_answer
        elif asset in prices and old_answer > 0:
            out[asset] = prices[asset] * new_answer // old_answer
    return out


def liquidatable(accounts: Iterable[tuple[str, UserAccount]], market: Market) -> list[str]:
    """Users with debt and a health factor below 1 on ``market`` (exact math), most debt first."""
    found: list[tuple[int, str]] = []
    for user, account in accounts:
        data = calculate_user_account_data(account, market)
        if data.total_debt_base > 0 and data.health_factor < WAD:
            found.append((data.total_debt_base, user))
    found.sort(key=lambda item: (-item[0], item[1]))
    return [user for _, user in found]


# ---- IO ----------------------------------------------------------------------------------
class PendingOracleWatcher:
    """Pending transactions to the book's aggregators, as ``OracleUpdate``s."""

    def __init__(self, ws: WsRpc, book: Callable[[], PositionBook], *,
                 timeout: float = 5.0) -> None:
        self.ws = ws
        self.book = book
        self.timeout = timeout

    async def updates(self) -> AsyncIterator[OracleUpdate]:
        """Follow the mempool until cancelled (or the subscription ends)."""
        sub = await self.ws.subscribe("newPendingTransactions", timeout=self.timeout)
        log.info("watching_mempool_for_oracle_updates")
        try:
            async for item in sub:
                update = await self._decode(item)
                if update is not None:
                    yield update
        finally:
            await sub.unsubscribe()

    async def _decode(self, item: Any) -> OracleUpdate | None:
        if isinstance(item, dict):  # a node that pushes whole transactions
            tx: Any = item
        elif isinstance(item, str):
            if not self.book().state.aggregators:
                return None  # nothing to watch yet: spare the fetch
            tx = await self.ws.call("eth_getTransactionByHash", [item], timeout=self.timeout)
        else:
            return None  # a reconnect marker: pending txs missed meanwhile are just missed
        if not isinstance(tx, dict) or not tx.get("to") or tx.get("blockHash"):
            return None
        to = str(tx["to"]).lower()
        if not self.book().aggregator_assets(to):
            return None
        pending = PendingTx.from_rpc(tx)
        answer = decode_new_answer(pending.data)
        if answer is None:
            return None
        log.info("pending_oracle_update", aggregator=to, answer=answer, tx_hash=pending.tx_hash,
                 tip=pending.fees.max_priority_fee_per_gas)
        return OracleUpdate(pending, to, answer)


class Backrunner:
    """Finds and plans the liquidation that follows a pending oracle update (``plan``)."""

    def __init__(self, rpc: JsonRpc, book: Callable[[], PositionBook],
                 planner: LiquidationPlanner, *, timeout: float = 5.0) -> None:
        self.rpc = rpc
        self.book = book
        self.planner = planner
        self.timeout = timeout
        self._links: dict[tuple[str, str], Link] = {}  # (source, aggregator) → link

    async def market_after(self, update: OracleUpdate) -> tuple[Market, frozenset[str]] | None:
        """The book's market as it will be once ``update`` is mined, and the moved assets;
        None when the update is mined already (the regular path has it) or moves nothing."""
        book = self.book()
        assets = book.aggregator_assets(update.aggregator)
        read = book.state.read
        if not assets or read is None or update.answer <= 0:
            return None
        sources = {a: read.sources.get(a, "") for a in assets}
        unknown = sorted({s for s in sources.values()
                          if s and (s, update.aggregator) not in self._links})
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getTransactionReceipt", [update.tx.tx_hash]),
            ("eth_call", [{"to": update.aggregator, "data": _LATEST_ANSWER}, "latest"]),
        ]
        calls += [("eth_call", [{"to": s, "data": _AGGREGATOR}, "latest"]) for s in unknown]
        receipt, old_raw, *probes = await self.rpc.batch(calls, timeout=self.timeout,
                                                         return_exceptions=True)
        for r in (receipt, old_raw):
            if isinstance(r, Exception):
                raise r
        if receipt is not None:
            return None
        for source, probe in zip(unknown, probes, strict=True):
            self._links[(source, update.aggregator)] = self._link(source, update.aggregator, probe)
        links = {a: self._links[(s, update.aggregator)] for a, s in sources.items() if s}
        old_answer = int.from_bytes(bytes.fromhex(str(old_raw)[2:]), "big", signed=True)
        market = book.market()
        return replace(market, prices=repriced(market.prices, links, old_answer, update.answer)), \
            frozenset(assets)

    @staticmethod
    def _link(source: str, aggregator: str, probe: Any) -> Link:
        if source == aggregator:
            return Link.DIRECT
        if isinstance(probe, str) and len(probe) >= 66 and "0x" + probe[-40:] == aggregator:
            return Link.DIRECT  # a proxy in front of this aggregator
        if isinstance(probe, Exception) and not isinstance(probe, RpcResponseError):
            raise probe  # transport trouble says nothing about the source
        return Link.SCALED

    async def plan(self, update: OracleUpdate, skip: Callable[[str], bool]) -> BackrunPlan | None:
        """The liquidation of the account ``update`` makes most worth it, planned on the
        market after it, or None. ``skip(user)`` says an account is not to be touched now."""
        after = await self.market_after(update)
        if after is None:
            return None
        market, assets = after
        book = self.book()
        holders = set().union(*(book.holders(a) for a in assets))
        users = liquidatable(((u, book.account(u)) for u in sorted(holders)), market)
        if not users:
            log.info("pending_oracle_update_liquidates_nobody", tx_hash=update.tx.tx_hash)
            return None
        for user in [u for u in users if not skip(u)][:MAX_CANDIDATES]:
            detected = time.monotonic()
            plan = await self.planner.plan(user, book.account(user), market)
            if isinstance(plan, Rejection):
                continue
            return BackrunPlan(update, plan, market, detected)
        return None
