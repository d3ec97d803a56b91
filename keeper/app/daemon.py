"""The long-running daemon: follow the chain, scan every block, liquidate, drain on a signal.

Built on a ``Keeper`` from ``keeper.app.root.build``. Four tasks: the book sync, the scanner
(``keeper.app.scan_task``), the executor (``keeper.app.sending``) and a head watcher
(``keeper.app.head``: readiness, ``keeper_head_block``). Each runs behind a task boundary that
logs, counts and restarts with backoff (``keeper.app.supervise``); ``max_consecutive_failures``
failures in a row engage the sender's kill switch (scanning goes on). With
``executor.backrun_oracle_updates`` a fifth task backruns pending oracle updates (see
``keeper.exec.backrun``). On SIGINT/SIGTERM it stops taking new work, lets the liquidation in
flight finish, checkpoints the book and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import AsyncIterator
from typing import NoReturn

from keeper.app.audit_task import BookAuditTask
from keeper.app.backrun_task import BackrunTask
from keeper.app.daemon_settings import DaemonSettings
from keeper.app.decisions import DecisionLog
from keeper.app.head import DaemonReadiness, watch_head
from keeper.app.heap import keep_heap_frozen
from keeper.app.inflight import Lane
from keeper.app.lag_watch import LagWatch
from keeper.app.quiet_blocks import QuietBlocks
from keeper.app.risk_task import RiskGaugeTask
from keeper.app.root import Keeper
from keeper.app.scan_task import Candidates, ScanTask
from keeper.app.sending import ExecuteTask, Sending
from keeper.app.supervise import Supervisor
from keeper.errors import ConfigError, KeeperError
from keeper.obs.logging import get_logger
from keeper.obs.metrics import HALT_REASONS
from keeper.obs.server import ObsServer
from keeper.pipeline.sync import SyncError
from keeper.protocols.aave_v3.book import BlockUpdate

log = get_logger(__name__)

DECISIONS_FLUSH = 1.0  # seconds between two writes of the decision record


class Daemon:
    """``keeper run``: four tasks over one ``Keeper`` until a signal, then a drain.

    - *sync*: ``BookSync.run`` (backfill or resume, then follow heads), restarted with backoff
      when it fails: a node that goes away is waited for, never fatal.
    - *scan*: per batch of applied blocks, brings the scanner up to date and scans; the
      confirmed candidates replace the previous list (``ScanTask``).
    - *execute*: liquidates every due candidate, up to ``executor.max_in_flight`` at once
      with consecutive nonces (``ExecuteTask``; when an account is due again is the
      ``Lane``'s).
    - *backrun* (only with ``executor.backrun_oracle_updates`` and a WebSocket): liquidates
      right after a pending oracle update, in the execute task's lane (``BackrunTask``).
    - *head*: reads the chain head three times per ``head_poll`` for ``keeper_head_block`` and
      readiness: ready = the last scan is within ``ready_lag_blocks`` of a head the node
      reported, the node answered within one ``head_poll``, and nothing halts sending (what
      does is in the ``/readyz`` body and ``keeper_sending_halted{reason}``).

    Each task is a boundary (``Supervisor``): an unexpected error is logged with context,
    counted in ``keeper_task_failures_total{task}`` and the task goes on;
    ``max_consecutive_failures`` in a row open the circuit breaker, which engages the sender's
    kill switch until ``breaker_cooldown`` seconds pass without a failure. Transient node
    errors (any ``RpcError``: down, slow, overloaded, junk) are counted in
    ``keeper_rpc_errors_total{method,kind}`` and only retried.

    On SIGINT/SIGTERM: no new liquidation starts, those in flight finish (bounded by
    ``drain_timeout``; a second signal stops waiting), the other tasks are cancelled and the
    book is checkpointed.
    """

    def __init__(self, keeper: Keeper, settings: DaemonSettings | None = None) -> None:
        self.keeper = keeper
        self.settings = settings or DaemonSettings.from_config(keeper.cfg)
        s = self.settings
        self.metrics = keeper.metrics
        # A node silent for one head_poll makes the keeper unready; the head is read three
        # times per head_poll, so that an answer merely late under load is not an outage.
        self.readiness = DaemonReadiness(max_lag_blocks=s.ready_lag_blocks,
                                         max_head_age=s.ready_head_age, silence=s.head_poll)
        keeper.readiness = self.readiness
        self.supervisor = Supervisor(keeper.metrics, keeper.executor,
                                     max_consecutive_failures=s.max_consecutive_failures,
                                     retry_min=s.retry_min, retry_max=s.retry_max,
                                     breaker_cooldown=s.breaker_cooldown)
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self.stop_reason = ""
        self.stopping = False
        self.prepared = asyncio.Event()
        self.candidates = Candidates()
        # What the keeper knew and did, per account and block, for ``keeper forensics``.
        self.decisions = DecisionLog(keeper.cfg.state.sqlite)
        keeper.decisions = self.decisions
        self.decisions.head = lambda: keeper.sync.book.block_number
        if keeper.executor is not None:
            sender = keeper.executor.sender
            sender.accounting.on_handed_out = functools.partial(self.decisions.handed_out,
                                                                sender=sender.address)
        self.lane = Lane(s.backoff_max_blocks, max_in_flight=s.max_in_flight,
                         backoff_seconds=s.backoff_seconds)
        self.scan = ScanTask(keeper, keeper.sync.subscribe(), self.supervisor, self.readiness,
                             self.lane, self.candidates)
        sending = Sending(keeper, self.supervisor, self.lane, self.candidates,
                          lambda: self.stopping)
        self.execute = ExecuteTask(sending, batch_size=s.batch_size)
        self.backrun = BackrunTask(sending, self.prepared)
        self.lag_watch = LagWatch()
        keeper.sync.on_update(self._on_block)
        if keeper.executor is not None:
            quiet = QuietBlocks(lambda: keeper.sync.book)
            keeper.sync.on_update(quiet.record)
            keeper.executor.quiet = quiet.quiet

    @property
    def scanned_block(self) -> int | None:
        """The block of the newest finished scan."""
        return self.readiness.scanned_block

    @property
    def in_flight(self) -> str | None:
        """The account whose liquidation is in flight."""
        return self.lane.user

    # ---- the whole life ----------------------------------------------------------------
    async def run(self) -> None:
        """Run until a signal (or ``stop``), then drain and checkpoint."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            async with self._obs_server() as obs:
                self._log_start(obs)
                tasks = self._start_tasks()
                stop_wait = asyncio.create_task(self.stop.wait(), name="stop")
                done, _ = await asyncio.wait({*tasks.values(), stop_wait},
                                             return_when=asyncio.FIRST_COMPLETED)
                ended = [t for t in done if t is not stop_wait]
                if not self.stop_reason:
                    self.stop_reason = f"task {ended[0].get_name()} ended" if ended else "stop"
                stop_wait.cancel()
                await self._drain(tasks)
                # Every task loops until cancelled: one that ended on its own is a bug.
                for task in ended:
                    exc = None if task.cancelled() else task.exception()
                    raise KeeperError(f"daemon task {task.get_name()} ended unexpectedly"
                                      + (f": {type(exc).__name__}: {exc}" if exc else ""))
        finally:
            for sig in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def _log_start(self, obs: ObsServer) -> None:
        sender = self.keeper.executor.sender if self.keeper.executor else None
        log.info("keeper_started", metrics_url=f"http://{obs.host}:{obs.port}/metrics",
                 account=sender.address if sender else None,
                 dry_run=sender.settings.dry_run if sender else True,
                 liquidator=self.keeper.target.liquidator)

    def _start_tasks(self) -> dict[str, asyncio.Task[None]]:
        tasks = {
            "sync": asyncio.create_task(self._sync_loop(), name="sync"),
            "scan": asyncio.create_task(self.scan.run(self.prepared), name="scan"),
            "execute": asyncio.create_task(self.execute.run(), name="execute"),
            "head": asyncio.create_task(self.supervisor.forever("head", self._watch_head),
                                        name="head"),
            "decisions": asyncio.create_task(self.decisions.run(DECISIONS_FLUSH),
                                             name="decisions"),
        }
        if self.keeper.cfg.executor.backrun_oracle_updates:
            tasks["backrun"] = asyncio.create_task(self.backrun.run(), name="backrun")
        if self.settings.freeze_heap:
            tasks["heap"] = asyncio.create_task(
                keep_heap_frozen(lambda: self.scan.scans, lambda: not self.lane.busy),
                name="heap")
        scanner = self.keeper.cfg.scanner
        if scanner.audit_accounts_per_block > 0:
            self.audit = BookAuditTask(self.keeper, self.scan.repair,
                                       scanner.audit_accounts_per_block, scanner.poll_interval,
                                       scans=lambda: self.scan.scans,
                                       idle=lambda: not self.lane.busy
                                       and not self.candidates.items,
                                       restored=self.scan.touch)
            tasks["audit"] = asyncio.create_task(self.audit.run(self.prepared), name="audit")
        risk = self.keeper.cfg.risk
        if risk.refresh_blocks > 0:
            self.risk = RiskGaugeTask(self.keeper, risk.refresh_blocks,
                                      self.keeper.cfg.scanner.poll_interval)
            tasks["risk"] = asyncio.create_task(self.risk.run(self.prepared), name="risk")
        return tasks

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.warning("second_signal_not_waiting_for_drain", signal=sig.name)
            self.force.set()
            return
        self.stop_reason = sig.name
        self.stop.set()

    @contextlib.asynccontextmanager
    async def _obs_server(self) -> AsyncIterator[ObsServer]:
        m = self.keeper.cfg.metrics
        server = ObsServer(self.metrics, self.keeper.readiness, m.host, m.port)
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(f"metrics.port: cannot listen on {m.host}:{m.port}: "
                              f"{exc.strerror or exc}") from None
        try:
            yield server
        finally:
            await server.stop()

    async def _drain(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        self.stopping = True
        log.info("keeper_stopping", reason=self.stop_reason, in_flight=self.in_flight)
        if self.in_flight is not None:
            # Its nonce must not be left in doubt: let the sender see it mined (or cancelled).
            # The lane comes free when it is done (execute or backrun; neither starts another
            # once ``stopping`` is set).
            log.info("draining_liquidation_in_flight", user=self.in_flight)
            force = asyncio.create_task(self.force.wait())
            idle = asyncio.create_task(self.lane.idle())
            await asyncio.wait({idle, force}, timeout=self.settings.drain_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            force.cancel()
            if not idle.done():
                idle.cancel()
                log.warning("drain_incomplete_liquidation_abandoned", user=self.in_flight)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await asyncio.shield(self.decisions.close())
        book = self.keeper.sync.book
        try:
            await asyncio.shield(self.keeper.sync.checkpoint())
        except Exception as exc:  # the last write: report it, the exit goes on
            log.error("final_checkpoint_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            log.info("keeper_stopped", checkpoint_block=book.block_number)

    async def _watch_head(self) -> NoReturn:
        await watch_head(self.keeper.rpc, self.readiness, self.metrics,
                         interval=self.settings.head_poll / 3, timeout=self.settings.head_poll,
                         on_tick=self._on_tick)

    def _on_tick(self, now: float) -> None:
        """Every head read: breakers that stayed quiet close; a stage that stopped keeping up
        with the node is logged with where its tasks wait (``LagWatch``); what halts sending
        goes to ``/readyz`` and ``keeper_sending_halted{reason}``."""
        self.supervisor.resume()
        if self.prepared.is_set():  # a backfill applies no block to count until it is done
            sync = self.keeper.sync
            self.lag_watch.observe(now, self.readiness.node_head, sync.book.block_number,
                                   sync.blocks_applied, self.readiness.scanned_block,
                                   self.scan.scans)
        executor = self.keeper.executor
        halts = executor.sender.guards.halts(now) if executor is not None else []
        messages = [h.message for h in halts]
        if messages != self.readiness.halted:
            if messages:
                log.warning("sending_halted", reasons=messages)
            else:
                log.info("sending_no_longer_halted")
        self.readiness.halted = messages
        codes = {h.code for h in halts}
        self.decisions.halts(self.readiness.scanned_block or 0, codes, messages)
        for reason in HALT_REASONS:
            self.metrics.sending_halted.labels(reason=reason).set(1 if reason in codes else 0)

    # ---- sync --------------------------------------------------------------------------
    def _on_block(self, update: BlockUpdate) -> None:
        """Every applied block (called by the sync, on the loop)."""
        book = self.keeper.sync.book
        if not update.rollback:  # a rollback processes no block
            self.metrics.blocks_processed.inc()
        self.metrics.synced_block.set(book.block_number)
        self.metrics.positions_tracked.set(len(book))
        self.supervisor.succeeded("sync")

    async def _sync_loop(self) -> NoReturn:
        sync = self.keeper.sync
        await self.supervisor.forever("sync", self._follow_chain,
                                      progress=lambda: sync.blocks_applied)

    async def _follow_chain(self) -> NoReturn:
        sync = self.keeper.sync
        if not self.prepared.is_set():
            await sync.prepare()
            if sync.resumed_from is not None:
                log.info("sync_resumed_from_checkpoint", block=sync.resumed_from,
                         users=len(sync.book))
            else:
                log.info("sync_backfilled", block=sync.book.block_number, users=len(sync.book))
            self.prepared.set()
        await sync.run()
        raise SyncError("the head follower ended")


async def run_daemon(keeper: Keeper, settings: DaemonSettings | None = None) -> None:
    """Follow the chain and liquidate until SIGINT/SIGTERM; then drain and checkpoint
    (see ``Daemon``)."""
    await Daemon(keeper, settings).run()
