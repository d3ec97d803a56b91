"""The backrun task: liquidates right behind a pending oracle update seen in the mempool, in
the execute task's lane (``keeper.app.sending``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NoReturn

from keeper.app.claims import send_claimed
from keeper.app.sending import Sending
from keeper.chain.ws import WsRpc
from keeper.errors import KeeperError
from keeper.exec.backrun import behind
from keeper.obs.logging import get_logger
from keeper.pipeline.backrun import Backrunner, OracleUpdate, PendingOracleWatcher
from keeper.protocols.aave_v3.book import PositionBook

log = get_logger(__name__)


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
            self.sending.record(block, user, execution)
            if execution is None:
                return
            # As after a regular liquidation; but one that sent nothing does not back off.
            mined = self.lane.settle(user, block, execution.outcome, back_off_unsent=False)
            if mined is not None and execution.outcome is not None:
                log.info("liquidated_by_backrun", user=user, tx_hash=execution.outcome.tx_hash,
                         block=mined, oracle_tx=update.tx.tx_hash,
                         realised_net_usd=(execution.realised_net_usd or 0) / 1e8)
