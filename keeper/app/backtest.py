"""``keeper backtest``: the keeper racing through a past stretch of a chain, replayed on a fork.

The rule of the race: before each source block b (N+1 … M) the keeper gets one pass
(``run_once``) on the state the source block b-1 left; what it sends is mined at once, ahead of
block b's own transactions and stamped with b's timestamp (``Replayer.keeper_window``). Then b's
transactions are replayed in their original order. A source liquidation of an account the
keeper already took then reverts or finds less to take, exactly as a lost race would.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from keeper.app.once import run_once
from keeper.app.replay import ReplayedBlock, Replayer
from keeper.app.root import Keeper
from keeper.chain.logs import get_logs
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import Log
from keeper.contracts import artifacts
from keeper.exec.executor import Execution
from keeper.obs.logging import get_logger
from keeper.pipeline.scan import HealthScanner
from keeper.protocols.aave_v3.decoding import decode_log
from keeper.protocols.aave_v3.events import LiquidationCall

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class KeeperTurn:
    """The keeper's pass placed at the head of source block ``block``."""

    block: int
    executions: tuple[Execution, ...]
    held: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Accounts liquidatable at the turn that the oracle guard held, with the halted assets."""


@dataclass(frozen=True, slots=True)
class BlockState:
    """The fork after source block ``block``: oracle prices and what is liquidatable."""

    block: int
    timestamp: int
    prices: dict[str, int]  # asset -> USD (8 decimals)
    liquidatable: tuple[str, ...]  # the accounts, confirmed on chain
    liquidatable_debt_usd: int  # their total debt (8 decimals)


@dataclass(slots=True)
class Backtest:
    """Everything the replay saw; ``keeper.app.backtest_report`` turns it into a report."""

    from_block: int
    to_block: int
    source_liquidations: list[LiquidationCall] = field(default_factory=list)
    turns: list[KeeperTurn] = field(default_factory=list)
    blocks: list[ReplayedBlock] = field(default_factory=list)
    states: list[BlockState] = field(default_factory=list)
    start: BlockState | None = None  # the fork at block N, before any replayed block
    decimals: dict[str, int] = field(default_factory=dict)  # asset -> token decimals


async def run_backtest(keeper: Keeper, source: JsonRpc, replayer: Replayer, from_block: int,
                       to_block: int) -> Backtest:
    """Replay source blocks ``from_block``+1 … ``to_block`` with the keeper racing."""
    result = Backtest(from_block, to_block)
    result.source_liquidations = await source_liquidations(
        source, keeper.contracts.pool, from_block + 1, to_block)
    await replayer.prepare()
    result.start = await _state(keeper, from_block, (await replayer.fetch(from_block)).timestamp)
    result.decimals = {r.asset: r.configuration.decimals
                       for r in keeper.sync.book.market().reserves.values()}
    for number in range(from_block + 1, to_block + 1):
        block = await replayer.fetch(number)
        async with replayer.keeper_window(block.timestamp):
            executions = await run_once(keeper)
        seen = (result.states[-1] if result.states else result.start).liquidatable
        result.turns.append(KeeperTurn(number, tuple(executions), _held(keeper, seen)))
        replayed = await replayer.mine_source(block)
        result.blocks.append(replayed)
        result.states.append(await _state(keeper, number, block.timestamp))
        log.info("backtest_block", block=number, fork_block=replayed.fork_block,
                 keeper_executions=len(executions), source_txs=replayed.sent,
                 reverted=replayed.reverted, not_replayed=replayed.not_replayed)
    return result


async def source_liquidations(rpc: JsonRpc, pool: str, from_block: int,
                              to_block: int) -> list[LiquidationCall]:
    """Every Pool ``LiquidationCall`` of the source chain in the range, in chain order."""
    topic = artifacts.aave("Pool").abi.event("LiquidationCall").topic0
    logs: list[Log] = await get_logs(rpc, pool, [topic], from_block, to_block)
    return [ev for lg in logs if isinstance(ev := decode_log(lg), LiquidationCall)]


async def _state(keeper: Keeper, block: int, timestamp: int) -> BlockState:
    """Prices and liquidatable debt on the fork after the source block (for the chart)."""
    await keeper.sync.catch_up()
    book = keeper.sync.book
    scanner = await asyncio.to_thread(HealthScanner, book)
    found = await scanner.scan(keeper.rpc, keeper.contracts.pool,
                               chunk=keeper.cfg.scanner.confirm_batch_size,
                               multicall=keeper.contracts.multicall3)
    market = book.market()
    assets = {r.asset for r in market.reserves.values()}
    confirmed = [c for c in found if c.confirmed_on_chain]
    return BlockState(block, timestamp, {a: p for a, p in market.prices.items() if a in assets},
                      tuple(c.user for c in confirmed),
                      sum(c.total_debt_base for c in confirmed))


def _held(keeper: Keeper, users: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Of ``users``, those the oracle guard held at this turn, with the halted assets."""
    guard = keeper.oracle_guard
    if guard is None:
        return {}
    book = keeper.sync.book
    market = book.market()
    held = {u: tuple(guard.holding(book.account(u), market)) for u in users}
    return {u: assets for u, assets in held.items() if assets}
