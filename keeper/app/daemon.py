"""The long-running daemon: follow the chain, scan every block, liquidate, drain on a signal.

Built on a ``Keeper`` from ``keeper.app.root.build``. Four tasks: the book sync, the scanner, the
executor and a head watcher (readiness, ``keeper_head_block``). Each runs behind a task
boundary that logs, counts and retries with backoff; ``max_consecutive_failures`` failures in
a row engage the sender's kill switch (scanning goes on). With
``executor.backrun_oracle_updates`` a fifth task backruns pending oracle updates (see
``keeper.pipeline.backrun``). On SIGINT/SIGTERM it stops taking new work, lets the liquidation
in flight finish, checkpoints the book and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import Counter

from keeper.app.config import KeeperConfig
from keeper.app.root import Keeper
from keeper.chain.ws import WsRpc
from keeper.errors import ConfigError, KeeperError, RpcError
from keeper.exec.backrun import behind
from keeper.exec.guards import CircuitBreaker
from keeper.exec.sender import Status
from keeper.obs.logging import get_logger
from keeper.obs.server import ObsServer, Readiness
from keeper.pipeline.backrun import Backrunner, OracleUpdate, PendingOracleWatcher
from keeper.pipeline.scanner import Candidate, HealthScanner
from keeper.pipeline.sync import SyncError
from keeper.protocols.aave_v3.book import BlockUpdate, PositionBook

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """How the daemon paces itself (derived from the config by ``from_config``)."""

    head_poll: float = 1.0  # seconds between head reads for readiness and keeper_head_block
    ready_lag_blocks: int = 2  # ready while the last scanned block is this close to the head
    ready_head_age: float = 30.0  # ... and the node answered within this many seconds
    retry_min: float = 0.5  # a failed task waits this long before trying again, doubling
    retry_max: float = 15.0  # ... up to this
    backoff_max_blocks: int = 64  # a candidate that was not liquidated waits 1, 2, 4 ... blocks
    drain_timeout: float = 90.0  # on a signal, how long the liquidation in flight may take
    max_consecutive_failures: int = 5  # task failures in a row that open the circuit breaker

    @classmethod
    def from_config(cls, cfg: KeeperConfig) -> DaemonSettings:
        head_poll = min(max(cfg.scanner.poll_interval, 0.5), 5.0)
        return cls(
            head_poll=head_poll,
            ready_head_age=max(15.0, 10 * head_poll),
            # Long enough for a receipt and one cancel round (the sender's own deadlines).
            drain_timeout=cfg.executor.receipt_timeout + 30.0,
            max_consecutive_failures=cfg.executor.max_consecutive_failures,
        )


class DaemonReadiness(Readiness):
    """``Readiness`` that also goes unready at once while the node does not answer (rather
    than ``max_head_age`` later)."""

    def __init__(self, max_lag_blocks: int = 2, max_head_age: float = 120.0) -> None:
        super().__init__(max_lag_blocks, max_head_age)
        self.node_error: str | None = None

    def check(self, now: float | None = None) -> tuple[bool, str]:
        if self.node_error is not None:
            return False, f"node unreachable: {self.node_error}"
        return super().check(now)


@dataclass(slots=True)
class _Attempt:
    """When a candidate may be tried again: not before a scan at ``retry_at``."""

    retry_at: int
    failures: int = 0


class _Candidates:
    """The newest scan's confirmed candidates; a newer scan replaces an older one."""

    def __init__(self) -> None:
        self.block = -1
        self.items: tuple[Candidate, ...] = ()
        self._changed = asyncio.Event()

    def put(self, block: int, items: list[Candidate]) -> None:
        self.block = block
        self.items = tuple(items)
        self._changed.set()

    async def wait_newer(self, block: int) -> None:
        """Return once a scan of a block after ``block`` has been put."""
        while self.block <= block:
            self._changed.clear()
            await self._changed.wait()


class Daemon:
    """``keeper run``: four tasks over one ``Keeper`` until a signal, then a drain.

    - *sync*: ``BookSync.run`` (backfill or resume, then follow heads), restarted with backoff
      when it fails: a node that goes away is waited for, never fatal.
    - *scan*: per batch of applied blocks, brings the scanner up to date (the touched accounts
      of *every* block in the batch, prices, parameters) and scans; the confirmed candidates
      replace the previous list. Scanning goes on while a transaction is in flight.
    - *execute*: liquidates the best candidate that is due, one at a time (one nonce lane).
      An account is not tried again until a scan at or after the block that mined our
      liquidation of it (so never while its transaction is in flight, and never on a stale
      view); one that was skipped waits 1, 2, 4 ... blocks. Accounts the close factor leaves
      under HF 1 are liquidated again on later blocks for as long as that pays.
    - *backrun* (only with ``executor.backrun_oracle_updates`` and a WebSocket): watches the
      mempool for oracle updates and liquidates in the same block, right after the update.
      It shares the execute task's lane (one transaction in flight: a pending update that
      comes while a liquidation is in flight is let go) and its per-account bookkeeping, so
      the regular path does not liquidate again an account the backrun just liquidated.
    - *head*: reads the chain head for ``keeper_head_block`` and readiness (ready = the last
      scan is within ``ready_lag_blocks`` of a head the node reported recently).

    Each task is a boundary: an unexpected error is logged with context, counted in
    ``keeper_task_failures_total{task}`` and the task goes on; ``max_consecutive_failures`` in
    a row open the circuit breaker, which engages the sender's kill switch (scanning and
    reporting go on; sending waits for an operator's restart). Transport errors (the node is
    down) are counted in ``keeper_rpc_errors_total`` and only retried.

    On SIGINT/SIGTERM: no new liquidation starts, the one in flight finishes (bounded by
    ``drain_timeout``; a second signal stops waiting), the other tasks are cancelled and the
    book is checkpointed.
    """

    def __init__(self, keeper: Keeper, settings: DaemonSettings | None = None) -> None:
        self.keeper = keeper
        self.settings = settings or DaemonSettings.from_config(keeper.cfg)
        s = self.settings
        self.metrics = keeper.metrics
        self.readiness = DaemonReadiness(max_lag_blocks=s.ready_lag_blocks,
                                         max_head_age=s.ready_head_age)
        keeper.readiness = self.readiness
        registry = keeper.metrics.registry
        self.task_failures = Counter("task_failures", "Unexpected errors at a daemon task boundary",
                                     ["task"], namespace="keeper", registry=registry)
        self.book_mismatches = Counter(
            "book_mismatches", "Accounts whose book health factor differed from the chain's",
            namespace="keeper", registry=registry)
        self.breakers = {task: CircuitBreaker(s.max_consecutive_failures)
                         for task in ("sync", "scan", "execute", "backrun")}
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self.stop_reason = ""
        self.stopping = False
        self.prepared = asyncio.Event()
        self.candidates = _Candidates()
        self.attempts: dict[str, _Attempt] = {}
        self.in_flight: str | None = None
        # One transaction in flight for the account: held by the execute and backrun tasks for
        # the whole life of a liquidation (the sender's nonce lease would serialise them too,
        # but a backrun must not wait behind a liquidation: by then its block is gone).
        self._lane = asyncio.Lock()
        self.scanned_block: int | None = None
        self.head: int | None = None
        self._mismatches_seen = 0  # of the current scanner's cumulative stats
        self.updates = keeper.sync.subscribe()
        keeper.sync.on_update(self._on_block)

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
                sender = self.keeper.executor.sender if self.keeper.executor else None
                log.info("keeper started", metrics_url=f"http://{obs.host}:{obs.port}/metrics",
                         account=sender.address if sender else None,
                         dry_run=sender.settings.dry_run if sender else True,
                         liquidator=self.keeper.target.liquidator)
                tasks = {
                    "sync": asyncio.create_task(self._sync_loop(), name="sync"),
                    "scan": asyncio.create_task(self._scan_loop(), name="scan"),
                    "execute": asyncio.create_task(self._execute_loop(), name="execute"),
                    "head": asyncio.create_task(self._head_loop(), name="head"),
                }
                if self.keeper.cfg.executor.backrun_oracle_updates:
                    tasks["backrun"] = asyncio.create_task(self._backrun_loop(), name="backrun")
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

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.warning("second signal: not waiting for the drain", signal=sig.name)
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
        log.info("keeper stopping", reason=self.stop_reason, in_flight=self.in_flight)
        if self.in_flight is not None:
            # Its nonce must not be left in doubt: let the sender see it mined (or cancelled).
            # The lane comes free when it is done (execute or backrun; neither starts another
            # once ``stopping`` is set).
            log.info("draining: waiting for the liquidation in flight", user=self.in_flight)
            force = asyncio.create_task(self.force.wait())
            idle = asyncio.create_task(self._lane_idle())
            await asyncio.wait({idle, force}, timeout=self.settings.drain_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            force.cancel()
            if not idle.done():
                idle.cancel()
                log.warning("drain incomplete: the liquidation in flight was abandoned",
                            user=self.in_flight)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        book = self.keeper.sync.book
        try:
            await asyncio.shield(self.keeper.sync.checkpoint())
        except Exception as exc:  # the last write: report it, the exit goes on
            log.error("final checkpoint failed", error=f"{type(exc).__name__}: {exc}")
        else:
            log.info("keeper stopped", checkpoint_block=book.block_number)

    # ---- sync --------------------------------------------------------------------------
    def _on_block(self, update: BlockUpdate) -> None:
        """Every applied block (called by the sync, on the loop)."""
        book = self.keeper.sync.book
        self.metrics.blocks_processed.inc()
        self.metrics.synced_block.set(book.block_number)
        self.metrics.positions_tracked.set(len(book))
        self.breakers["sync"].record_success()

    async def _sync_loop(self) -> None:
        sync = self.keeper.sync
        delay = self.settings.retry_min
        while True:
            applied = sync.blocks_applied
            try:
                if not self.prepared.is_set():
                    await sync.prepare()
                    if sync.resumed_from is not None:
                        log.info("sync resumed from checkpoint", block=sync.resumed_from,
                                 users=len(sync.book))
                    else:
                        log.info("sync backfilled", block=sync.book.block_number,
                                 users=len(sync.book))
                    self.prepared.set()
                await sync.run()
                raise SyncError("the head follower ended")
            except RpcError as exc:
                self.metrics.rpc_errors.labels(method="sync").inc()
                log.warning("node unreachable; sync retrying", error=str(exc), retry_in=delay)
            except Exception as exc:  # a task boundary
                self._task_failed("sync", exc)
            if sync.blocks_applied > applied:
                delay = self.settings.retry_min
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max)

    async def _head_loop(self) -> None:
        rpc = self.keeper.rpc
        down = False
        while True:
            try:
                head = int(await rpc.call("eth_blockNumber"), 16)
            except RpcError as exc:
                self.metrics.rpc_errors.labels(method="eth_blockNumber").inc()
                if not down:
                    log.warning("node unreachable", error=str(exc))
                down = True
                self.readiness.node_error = str(exc)
            else:
                if down:
                    log.info("node reachable again", head=head)
                down = False
                self.readiness.node_error = None
                self.head = head
                self.metrics.head_block.set(head)
                if self.scanned_block is not None:
                    self.readiness.update(self.scanned_block, max(head, self.scanned_block))
            await asyncio.sleep(self.settings.head_poll)

    # ---- scan --------------------------------------------------------------------------
    async def _scan_loop(self) -> None:
        await self.prepared.wait()
        scanner: HealthScanner | None = None
        touched: set[str] = set()
        rebuild = True
        retry: float | None = 0.0  # scan at once: the resumed book may hold candidates already
        while True:
            try:
                update = await asyncio.wait_for(self.updates.get(), retry)
            except TimeoutError:
                pass
            else:
                touched |= update.touched_users
                rebuild |= update.market_changed
            # A burst of blocks is scanned once, at the newest; but every block's touched
            # accounts must be re-set in the prefilter, not just the last one's.
            while not self.updates.empty():
                update = self.updates.get_nowait()
                touched |= update.touched_users
                rebuild |= update.market_changed
            try:
                scanner = await self._scan(scanner, touched, rebuild)
                rebuild = False
                retry = None
                self.breakers["scan"].record_success()
            except RpcError as exc:
                self.metrics.rpc_errors.labels(method="scan").inc()
                log.warning("scan failed: node unreachable", error=str(exc))
                retry = self.settings.retry_max
            except Exception as exc:  # a task boundary: start afresh from the book next time
                self._task_failed("scan", exc)
                scanner, touched, retry = None, set(), self.settings.retry_max

    async def _scan(self, scanner: HealthScanner | None, touched: set[str],
                    rebuild: bool) -> HealthScanner:
        book = self.keeper.sync.book
        if scanner is None or rebuild:
            # A build takes seconds at a million accounts: do it in a thread, from a snapshot
            # (the sync goes on applying blocks meanwhile, and a thread reading the live book
            # mid-block would mix two blocks). Then follow the live book: the blocks applied
            # during the build are queued and re-set their accounts on the next pass.
            # The mismatch count is cumulative across rebuilds (it feeds a counter).
            carried = scanner.stats.mismatches if scanner is not None else 0
            self._mismatches_seen = carried
            scanner = await asyncio.to_thread(HealthScanner, book.snapshot())
            scanner.book = book
            scanner.stats.mismatches = carried
        scanner.sync(touched)
        touched.clear()
        block = book.block_number  # the scan reads the book before its first await
        found = await self.keeper.candidates(scanner)
        new_mismatches = scanner.stats.mismatches - self._mismatches_seen
        if new_mismatches > 0:
            self.book_mismatches.inc(new_mismatches)
            self._mismatches_seen = scanner.stats.mismatches
        if {c.user for c in found} != {c.user for c in self.candidates.items}:
            log.info("liquidatable accounts", block=block, confirmed=len(found),
                     users=[c.user for c in found[:10]])
        users = {c.user for c in found}
        # Forget the back-off of accounts that are no longer liquidatable.
        self.attempts = {u: a for u, a in self.attempts.items() if u in users}
        self.candidates.put(block, found)
        self.scanned_block = block
        if self.head is not None:
            self.readiness.update(block, max(self.head, block))
        return scanner

    # ---- execute -----------------------------------------------------------------------
    async def _execute_loop(self) -> None:
        if self.keeper.executor is None:
            await asyncio.Event().wait()  # scan only: nothing to execute, ever
        while not self.stopping:
            block, items = self.candidates.block, self.candidates.items
            candidate = next((c for c in items if self._due(c.user, block)), None)
            if candidate is None:
                await self.candidates.wait_newer(block)
                continue
            async with self._lane:
                # A backrun may have taken the lane meanwhile and liquidated this account.
                if self.stopping or not self._due(candidate.user, block):
                    continue
                await self._liquidate(candidate, block)

    async def _lane_idle(self) -> None:
        async with self._lane:
            return

    def _due(self, user: str, block: int) -> bool:
        attempt = self.attempts.get(user)
        return attempt is None or block >= attempt.retry_at

    async def _liquidate(self, candidate: Candidate, block: int) -> None:
        user = candidate.user
        self.in_flight = user
        try:
            execution = await self.keeper.liquidate(candidate)
        except RpcError as exc:
            self.metrics.rpc_errors.labels(method="liquidate").inc()
            log.warning("liquidation failed: node unreachable", user=user, error=str(exc))
            self._back_off(user, block)
        except Exception as exc:  # a task boundary
            self._task_failed("execute", exc, user=user)
            self._back_off(user, block)
        else:
            self.breakers["execute"].record_success()
            outcome = execution.outcome
            if (outcome is not None and outcome.status is Status.MINED
                    and outcome.block_number is not None):
                # Due again once a scan has seen the block with our liquidation in it: the
                # close factor may leave the account under 1, worth another round.
                self.attempts[user] = _Attempt(retry_at=outcome.block_number)
                log.info("liquidated", user=user, tx_hash=outcome.tx_hash,
                         block=outcome.block_number,
                         realised_net_usd=(execution.realised_net_usd or 0) / 1e8)
            else:
                self._back_off(user, block)
        finally:
            self.in_flight = None

    # ---- backrun -----------------------------------------------------------------------
    async def _backrun_loop(self) -> None:
        planner = self.keeper.planner
        target = self.keeper.target
        if planner is None or (self.keeper.sync.ws is None and target.ws_url is None):
            missing = "executor" if planner is None else "WebSocket"
            log.warning(f"backrun_oracle_updates is on but there is no {missing}: not backrunning")
            await asyncio.Event().wait()
            return
        await self.prepared.wait()
        timeout = self.keeper.cfg.network.request_timeout

        def book() -> PositionBook:
            return self.keeper.sync.book

        backrunner = Backrunner(self.keeper.rpc, book, planner, timeout=timeout)
        own: WsRpc | None = None
        delay = self.settings.retry_min
        try:
            while True:
                try:
                    ws = self.keeper.sync.ws
                    if ws is None:
                        if own is None:
                            assert target.ws_url is not None
                            own = WsRpc(target.ws_url, timeout=timeout)
                            await own.connect()
                        ws = own
                    watcher = PendingOracleWatcher(ws, book, timeout=timeout)
                    async for update in watcher.updates():
                        await self._backrun(backrunner, update)
                        self.breakers["backrun"].record_success()
                        delay = self.settings.retry_min
                    raise KeeperError("the pending-transaction subscription ended")
                except RpcError as exc:
                    self.metrics.rpc_errors.labels(method="backrun").inc()
                    log.warning("backrun watcher: node unreachable; retrying", error=str(exc),
                                retry_in=delay)
                except Exception as exc:  # a task boundary
                    self._task_failed("backrun", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max)
        finally:
            if own is not None:
                await own.close()

    async def _backrun(self, backrunner: Backrunner, update: OracleUpdate) -> None:
        """Liquidate right after ``update`` if it makes an account liquidatable and the lane
        is free; the account's bookkeeping is the execute task's (``attempts``)."""
        if self.stopping:
            return
        if self._lane.locked():
            log.info("pending oracle update: a liquidation is in flight; not backrunning",
                     tx_hash=update.tx.tx_hash, in_flight=self.in_flight)
            return
        async with self._lane:
            block = self.candidates.block
            found = await backrunner.plan(update, lambda u: not self._due(u, block))
            if found is None or self.stopping:
                return
            executor = self.keeper.executor
            assert executor is not None
            # No trace: at the head the new price is not there yet and the call would revert.
            prepared = behind(await executor.prepare(found.plan, found.market, trace_gas=False,
                                                     detected_at=found.detected_at), update.tx)
            user = prepared.user
            self.in_flight = user
            try:
                execution = await executor.send(prepared)
            except RpcError as exc:
                self.metrics.rpc_errors.labels(method="backrun").inc()
                log.warning("backrun failed: node unreachable", user=user, error=str(exc))
                self._back_off(user, block)
                return
            finally:
                self.in_flight = None
            outcome = execution.outcome
            if (outcome is not None and outcome.status is Status.MINED
                    and outcome.block_number is not None):
                # As after a regular liquidation: due again only from a scan of that block.
                self.attempts[user] = _Attempt(retry_at=outcome.block_number)
                log.info("liquidated by backrun", user=user, tx_hash=outcome.tx_hash,
                         block=outcome.block_number, oracle_tx=update.tx.tx_hash,
                         realised_net_usd=(execution.realised_net_usd or 0) / 1e8)
            elif outcome is not None and outcome.tx_hash is not None:
                # Sent but not mined as planned: the regular back-off, as for any failure.
                self._back_off(user, block)

    def _back_off(self, user: str, block: int) -> None:
        previous = self.attempts.get(user)
        failures = (previous.failures if previous else 0) + 1
        wait = min(2 ** (failures - 1), self.settings.backoff_max_blocks)
        self.attempts[user] = _Attempt(retry_at=block + wait, failures=failures)

    # ---- the circuit breaker -----------------------------------------------------------
    def _task_failed(self, task: str, exc: Exception, **context: object) -> None:
        breaker = self.breakers[task]
        breaker.record_failure(f"{type(exc).__name__}: {exc}")
        self.task_failures.labels(task=task).inc()
        log.error("task failed", task=task, error=f"{type(exc).__name__}: {exc}",
                  consecutive=breaker.consecutive,
                  # The traceback once per streak: a repeating failure must not flood the log.
                  exc_info=exc if breaker.consecutive == 1 else None, **context)
        executor = self.keeper.executor
        if breaker.is_open and executor is not None and not executor.sender.guards.kill.engaged:
            reason = (f"circuit breaker: {task} failed {breaker.consecutive} times in a row "
                      f"(last: {breaker.last_reason})")
            executor.sender.guards.kill.engage(reason)
            self.metrics.circuit_breaker_open.set(1)
            log.error("circuit breaker open: sending halted until restart", task=task,
                      reason=reason)


async def run_daemon(keeper: Keeper, settings: DaemonSettings | None = None) -> None:
    """Follow the chain and liquidate until SIGINT/SIGTERM; then drain and checkpoint
    (see ``Daemon``)."""
    await Daemon(keeper, settings).run()
