"""The daemon's two sending tasks: *execute* liquidates the best due candidate of the newest
scan; *backrun* liquidates right behind a pending oracle update. Both go through one ``Lane``
(one transaction in flight, one back-off per account) and one task boundary (``attempt``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn

from keeper.app import steps
from keeper.app.claims import send_claimed
from keeper.app.inflight import Lane
from keeper.app.root import Keeper
from keeper.app.scan_task import Candidates
from keeper.app.supervise import Supervisor
from keeper.chain.reorg import block_gone
from keeper.chain.ws import WsRpc
from keeper.errors import KeeperError, RpcError
from keeper.exec.backrun import behind
from keeper.exec.executor import Execution
from keeper.obs.logging import get_logger
from keeper.pipeline.backrun import Backrunner, OracleUpdate, PendingOracleWatcher
from keeper.pipeline.scan import LiquidatableAccount
from keeper.protocols.aave_v3.book import PositionBook

log = get_logger(__name__)


class Sending:
    """What the execute and backrun tasks share: the keeper, the lane, the boundary."""

    def __init__(self, keeper: Keeper, supervisor: Supervisor, lane: Lane,
                 candidates: Candidates, stopping: Callable[[], bool]) -> None:
        self.keeper = keeper
        self.supervisor = supervisor
        self.lane = lane
        self.candidates = candidates
        self.stopping = stopping

    async def attempt(self, task: str, user: str, block: int,
                      send: Callable[[], Awaitable[Execution]], *,
                      rpc_method: str) -> Execution | None:
        """``send`` with ``user`` marked in flight; when it fails (the node, or anything else
        at ``task``'s boundary) the account backs off and None is returned."""
        with self.lane.flying(user):
            try:
                return await send()
            except KeeperError as exc:
                if block_gone(exc):  # a reorg or a restore under the plan: planned again
                    log.info("liquidation_block_gone", task=task, user=user, error=str(exc))
                elif isinstance(exc, RpcError):
                    self.keeper.metrics.rpc_errors.labels(method=rpc_method).inc()
                    log.warning("liquidation_node_unreachable", task=task, user=user,
                                error=str(exc))
                else:
                    self.supervisor.failed(task, exc, user=user)
            except Exception as exc:  # a task boundary
                self.supervisor.failed(task, exc, user=user)
        self.lane.back_off(user, block)
        return None


class ExecuteTask:
    """Liquidates the best candidate that is due, one at a time (one nonce lane). Accounts the
    close factor leaves under HF 1 are liquidated again on later blocks for as long as that
    pays (see ``Lane``)."""

    def __init__(self, sending: Sending) -> None:
        self.sending = sending
        self.lane = sending.lane

    async def run(self) -> None:
        if self.sending.keeper.executor is None:
            await asyncio.Event().wait()  # scan only: nothing to execute, ever
        candidates = self.sending.candidates
        while not self.sending.stopping():
            block, items, scans = candidates.block, candidates.items, candidates.scans
            candidate = next((c for c in items if self.lane.due(c.user, block)), None)
            if candidate is None:
                await candidates.wait_newer(scans)
                continue
            async with self.lane.held():
                # A backrun may have taken the lane meanwhile and liquidated this account.
                if self.sending.stopping() or not self.lane.due(candidate.user, block):
                    continue
                await self._liquidate(candidate, block)

    async def _liquidate(self, candidate: LiquidatableAccount, block: int) -> None:
        user = candidate.user
        keeper = self.sending.keeper
        execution = await self.sending.attempt(
            "execute", user, block, lambda: steps.liquidate(keeper, candidate),
            rpc_method="liquidate")
        if execution is None:
            return
        self.sending.supervisor.succeeded("execute")
        waits = execution.rejection.not_before if execution.rejection is not None else None
        mined = self.lane.settle(user, block, execution.outcome, not_before=waits)
        if mined is not None and execution.outcome is not None:
            log.info("liquidated", user=user, tx_hash=execution.outcome.tx_hash, block=mined,
                     realised_net_usd=(execution.realised_net_usd or 0) / 1e8)


class BackrunTask:
    """Watches the mempool for oracle updates and liquidates in the same block, right after
    the update (only with ``executor.backrun_oracle_updates`` and a WebSocket). It shares the
    execute task's lane: a pending update that comes while a liquidation is in flight is let
    go, and the regular path does not liquidate again an account the backrun just did."""

    def __init__(self, sending: Sending, prepared: asyncio.Event) -> None:
        self.sending = sending
        self.lane = sending.lane
        self.prepared = prepared
        self.handled = 0  # pending updates handled (progress, for the restart back-off)
        self._own_ws: WsRpc | None = None

    async def run(self) -> None:
        keeper = self.sending.keeper
        planner = keeper.planner
        if planner is None or (keeper.sync.ws is None and keeper.target.ws_url is None):
            log.warning("backrun_disabled", missing="executor" if planner is None else "websocket",
                        reason="backrun_oracle_updates is on but nothing to backrun with")
            await asyncio.Event().wait()
            return
        await self.prepared.wait()
        timeout = keeper.cfg.network.request_timeout

        def book() -> PositionBook:
            return keeper.sync.book

        backrunner = Backrunner(keeper.rpc, book, planner, timeout=timeout)
        try:
            await self.sending.supervisor.forever(
                "backrun", lambda: self._watch(backrunner, book, timeout),
                progress=lambda: self.handled)
        finally:
            if self._own_ws is not None:
                await self._own_ws.close()

    async def _watch(self, backrunner: Backrunner, book: Callable[[], PositionBook],
                     timeout: float) -> NoReturn:
        keeper = self.sending.keeper
        ws = keeper.sync.ws
        if ws is None:
            if self._own_ws is None:
                assert keeper.target.ws_url is not None
                self._own_ws = WsRpc(keeper.target.ws_url, timeout=timeout)
                await self._own_ws.connect()
            ws = self._own_ws
        watcher = PendingOracleWatcher(ws, book, timeout=timeout)
        async for update in watcher.updates():
            await self._backrun(backrunner, update)
            self.sending.supervisor.succeeded("backrun")
            self.handled += 1
        raise KeeperError("the pending-transaction subscription ended")

    def _held(self, user: str) -> bool:
        """Whether the oracle guard holds ``user`` (an asset it uses is halted)."""
        guard = self.sending.keeper.oracle_guard
        if guard is None or not guard.halted:
            return False
        book = self.sending.keeper.sync.book
        return bool(guard.holding(book.account(user), book.market()))

    async def _backrun(self, backrunner: Backrunner, update: OracleUpdate) -> None:
        """Liquidate right after ``update`` if it makes an account liquidatable and the lane
        is free; the account's bookkeeping is the lane's."""
        if self.sending.stopping():
            return
        if self.lane.busy:
            log.info("backrun_skipped_liquidation_in_flight", tx_hash=update.tx.tx_hash,
                     in_flight=self.lane.user)
            return
        async with self.lane.held():
            block = self.sending.candidates.block
            found = await backrunner.plan(
                update, lambda u: not self.lane.due(u, block) or self._held(u))
            if found is None or self.sending.stopping():
                return
            keeper = self.sending.keeper
            executor = keeper.executor
            assert executor is not None
            # No trace: at the head the new price is not there yet and the call would revert.
            prepared = behind(await executor.prepare(found.plan, found.market, trace_gas=False,
                                                     detected_at=found.detected_at), update.tx)
            user = prepared.user
            execution = await self.sending.attempt(
                "backrun", user, block, lambda: send_claimed(keeper, prepared, block),
                rpc_method="backrun")
            if execution is None:
                return
            # As after a regular liquidation; but one that sent nothing does not back off.
            mined = self.lane.settle(user, block, execution.outcome, back_off_unsent=False)
            if mined is not None and execution.outcome is not None:
                log.info("liquidated_by_backrun", user=user, tx_hash=execution.outcome.tx_hash,
                         block=mined, oracle_tx=update.tx.tx_hash,
                         realised_net_usd=(execution.realised_net_usd or 0) / 1e8)
