"""See one transaction through: simulate, sign, send, watch, replace, survive a reorg.

``Sender.execute(request)`` is the whole life of one transaction. It never sends one that a
simulation says would revert (against the pending state, or the head for one that shares nothing
with ours in flight: ``state_for``), whose gas at current fees would eat the expected profit, or
that the guards refuse; never resends blindly (each replacement or resend first checks, in one
batch, the receipt of every hash sent for the nonce and the account's mined nonce).

Life of a request::

    simulate (a trace, or eth_call + eth_estimateGas; next block; balance: one batch)
      → refuse (reverts / unprofitable / guard / balance)  → TxOutcome SKIPPED
      → dry run: log what would be sent                     → TxOutcome SKIPPED, dry_run=True
    sign locally, submit (public mempool or private relay)
    each new block:
      receipts of all our hashes + mined nonce (one batch)
      receipt found → wait ``confirmations`` blocks, then MINED / REVERTED (a lost race or not)
      receipt gone (reorg) → re-simulate; resend the same signed tx, or cancel if it now reverts
      nonce used by something not ours → DROPPED
      caller's ``still_wanted(request, block)`` says no → cancel (0-value self-transfer, same nonce)
      not mined after ``replace_after_blocks`` → re-simulate, replace with fee cap and tip +≥10%
    after ``receipt_timeout`` seconds without a receipt → cancel attempt, DROPPED

A *backrun* request (``after`` set) must land right after a transaction still in the mempool:
simulated with ``eth_simulateV1`` as the pair [that tx, ours], it bids ``exact_fees`` (that tx's
tip: fee ordering puts it just behind), and is neither re-checked with ``still_wanted`` nor
replaced while that tx is pending; then it is an ordinary request.

The parts: ``simulate``, ``admission`` (fees, profit, guards, balance), ``submit``, ``reads``,
``flight``, ``accounting`` (endings into guards and metrics), ``same_nonce`` (resend, replace,
cancel, sign and hand out).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import PendingTx, hex_to_int
from keeper.domain.fees import FeePolicy
from keeper.errors import ConfigError, RpcError, RpcResponseError
from keeper.exec.accounting import Accounting
from keeper.exec.admission import Admission, admit
from keeper.exec.first_sends import FirstSends
from keeper.exec.flight import Flight
from keeper.exec.gate import NotClearToSend
from keeper.exec.guards import Guards, Refusal
from keeper.exec.keys import Signer
from keeper.exec.nonce import NonceManager
from keeper.exec.reads import ChainReads
from keeper.exec.same_nonce import SameNonce
from keeper.exec.simulate import Simulation, Simulator, state_for
from keeper.exec.submit import PublicSubmitter, Submitter, is_nonce_error, is_nonce_taken
from keeper.exec.turn_wait import simulated_till_turn
from keeper.exec.tx import SIMULATION_REVERTED, Status, StillWanted, TxOutcome, TxRequest
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.protocols.aave_v3.liquidator import lost_the_race

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SenderSettings:
    """Knobs of the executor (``keeper.app.exec_settings`` maps the ``[executor]`` section)."""

    chain_id: int
    dry_run: bool = False
    replace_after_blocks: int = 3
    receipt_timeout: float = 60.0
    confirmations: int = 2  # 1 = done at the first receipt; 2 = one block on top (reorg check)
    poll_interval: float = 0.5  # head polling when nobody calls notify_head
    gas_margin_percent: int = 20  # gas limit = estimate × (1 + margin), at least the hint
    rpc_timeout: float = 10.0


class Sender:
    """The executor for one account. ``signer`` may be None only in dry-run mode (then
    ``address`` says whom to simulate as); ``nonces`` defaults to a fresh ``NonceManager``."""

    def __init__(
        self,
        rpc: JsonRpc,
        signer: Signer | None,
        policy: FeePolicy,
        guards: Guards,
        settings: SenderSettings,
        *,
        metrics: Metrics | None = None,
        submitter: Submitter | None = None,
        nonces: NonceManager | None = None,
        address: str | None = None,
    ) -> None:
        if signer is None and not settings.dry_run:
            raise ConfigError("a signer is required unless executor.dry_run is set")
        account = signer.address if signer is not None else address
        if account is None:
            raise ConfigError("dry-run sender needs the account address to simulate from")
        self.rpc = rpc
        self.signer = signer
        self.address = account.lower()
        self.policy = policy
        self.guards = guards
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.submitter: Submitter = submitter or PublicSubmitter(rpc, settings.rpc_timeout)
        self.nonces = nonces or NonceManager(rpc, self.address, timeout=settings.rpc_timeout)
        self.reads = ChainReads(rpc, self.address, self.metrics, timeout=settings.rpc_timeout,
                                poll_interval=settings.poll_interval)
        self.simulator = Simulator(self.reads, self.address)
        self.accounting = Accounting(guards, self.metrics, dry_run=settings.dry_run)
        self.same = SameNonce(self.address, settings.chain_id, signer, policy, self.submitter,
                              self.nonces, self.reads, self.simulator, self.accounting,
                              self.metrics)
        self.first_sends = FirstSends()

    def __repr__(self) -> str:
        return f"Sender({self.address}, route={self.submitter.route}, dry_run={self.settings.dry_run})"

    def notify_head(self) -> None:
        """Wake the watcher now (call from the head follower); polling is the fallback."""
        self.reads.notify_head()

    def rolled_back(self) -> None:
        """The chain went back (a reorg, a restore): the chain's nonce next; look at once."""
        log.info("nonce_resync_after_rollback", account=self.address)
        self.nonces.rolled_back()
        self.reads.notify_head()

    # ---- the one public operation ------------------------------------------------------
    async def execute(self, req: TxRequest, still_wanted: StillWanted | None = None) -> TxOutcome:
        """Simulate, and unless refused sign, send and see ``req`` through. Never raises for
        chain-side outcomes; transport errors before the first send propagate (nothing sent).

        Several calls may run at once: each holds the nonce's send lock only while it signs
        and hands out its transaction, so they get consecutive nonces and none waits for
        another's receipt."""
        loop = asyncio.get_running_loop()
        refusal = self.guards.refusal(0, loop.time())
        if refusal is not None:
            return self.accounting.skipped(req, refusal.code, refusal.message)
        try:
            for _ in range(2):  # a second round only after a nonce error on the first send
                outcome = await self._attempt(req, still_wanted)
                if outcome is not None:
                    return outcome
                self.nonces.invalidate()
        finally:
            if req.turn is not None:
                req.turn.done()
        return self.accounting.skipped(req, "nonce", "nonce kept changing under us; giving up")

    # ---- first send --------------------------------------------------------------------
    async def _attempt(self, req: TxRequest, still_wanted: StillWanted | None) -> TxOutcome | None:
        """One send and its watch; None after a nonce error (the caller resyncs and retries)."""
        loop = asyncio.get_running_loop()
        # The chain's nonces, read in the simulation's batch (on every path when asked): a
        # counter ahead of them (a rollback not yet reported) would put ours behind a gap.
        handed_out, state = self.first_sends.count, state_for(req)
        sim, checked = await self._simulated(req, state)
        if isinstance(checked, TxOutcome):
            return checked
        assert sim.nonces is not None
        if self.settings.dry_run:
            return self.accounting.would_send(req, max(sim.nonces), sim.gas, checked)
        if req.turn is not None:
            # Waiting for its turn, simulated again at each block that passes its simulation.
            sim, checked, again = await simulated_till_turn(
                req.turn, self.reads, self.first_sends, sim, checked,
                lambda: self._simulated(req, state))
            handed_out = handed_out if again is None else again
            if isinstance(checked, TxOutcome):
                return checked
        admission = checked
        assert sim.nonces is not None
        latest, pending = sim.nonces
        # Transactions of ours its simulation did not see may trade in its pools first: ours
        # planned before it that went out while it simulated, or (after a restart, checked at
        # the head) those the process before this one left in the mempool. Again, on top.
        if (req.turn is not None and self.first_sends.overlap(req.shares, handed_out)) \
                or (state == "latest" and self.nonces.strangers(latest, pending)):
            handed_out = self.first_sends.count
            sim, checked = await self._simulated(req, "pending", nonces=False)
            if isinstance(checked, TxOutcome):
                return checked
            admission = checked
        async with self.nonces.claim(latest, pending) as lease:
            if self.first_sends.overlap(req.shares, handed_out):
                # Ours went out while this one simulated, out of any turn (a retry after a
                # refused nonce; a send of another round): again, on top, holding the nonce.
                sim, checked = await self._simulated(req, "pending", nonces=False)
                if isinstance(checked, TxOutcome):
                    return checked
                admission = checked
            if req.turn is not None:
                req.turn.took(lease.nonce)  # the planner's next round asks if it is mined
            flight = Flight(req, lease, sim.gas, admission.gas_limit)
            fees = self.same.first_fees(lease, admission.fees, req, sim.gas, sim.base_fee)
            signed = self.same.sign(req.to, req.data, req.value, lease.nonce,
                                    admission.gas_limit, fees)
            # Handed out without holding the nonce for the node's answer (~6 ms, 62 ms at p90
            # while anvil builds a block: 6.4 of the 10,000-borrower crash's ~9 s of sending).
            # Refused below later nonces of ours: a cancel takes it (``SameNonce.fill_gap``);
            # unanswered, it stays its flight's, which resends it if lost (``resend_vanished``).
            lease.mark_sent()
            answer = asyncio.ensure_future(self.same.submit(
                flight, "send", signed, fees, admission.gas_limit, sim.head))
            self.first_sends.handed_out(req.shares, answer)
        if req.turn is not None:
            req.turn.sent = PendingTx(signed.tx_hash, self.address, req.to, req.data, req.value,
                                      admission.gas_limit, admission.fees)
            req.turn.done()
        answered = await self._answered(req, flight, answer, admission)
        if answered is not True:
            return None if answered is False else answered
        self.accounting.observe_send(req, loop.time())
        flight.seen_head = (sim.head, "")  # the first look is at the next block
        try:
            return await self._watch(flight, still_wanted)
        finally:
            if self.nonces.release(lease):
                await self.same.fill_gap(flight)

    async def _answered(self, req: TxRequest, flight: Flight, answer: asyncio.Future[None],
                        admission: Admission) -> TxOutcome | bool:
        """True when the node took the first send (or may have), False after a nonce error
        (the caller resyncs), else how the request ended."""
        lease = flight.lease
        try:
            await answer
        except RpcResponseError as exc:
            if req.turn is not None:
                req.turn.sent = None  # nothing of it to follow
            taken = is_nonce_taken(exc)  # the node holds something there: no gap to fill
            if await self.nonces.refused(lease) and not taken:
                await self.same.fill_gap(flight, admission.fees)
            if is_nonce_error(exc) or taken:
                log.warning("nonce_rejected_resyncing", label=req.label, nonce=lease.nonce,
                            error=exc.rpc_message)
                return False
            return self.accounting.failed(flight, Status.DROPPED,
                                          f"rejected by node: {exc.rpc_message}",
                                          failure=not isinstance(exc, RpcError),  # transient
                                          fenced=isinstance(exc, NotClearToSend))
        except BaseException:
            answer.cancel()
            await asyncio.shield(self.nonces.refused(lease, known=False))
            raise
        return True

    async def _simulated(self, req: TxRequest, state: str, *, nonces: bool = True
                         ) -> tuple[Simulation, Admission | TxOutcome]:
        """``req`` simulated on ``state``, with the account's nonces when asked (once the
        node answered our sends that touch what it touches, on the pending state), and
        checked."""
        if state == "pending":
            await self.first_sends.answered(req.shares)
        sim = await self.simulator.simulate(req, state, nonces=nonces)
        return sim, self._check(req, sim, asyncio.get_running_loop().time())

    def _check(self, req: TxRequest, sim: Simulation, now: float) -> Admission | TxOutcome:
        """The admission of ``req`` after simulation ``sim``, or why it is not sent."""
        if sim.reason is not None:
            return self.accounting.skipped(req, SIMULATION_REVERTED, f"simulation: {sim.reason}",
                                           head=sim.head)
        admission = admit(req, sim, self.policy, self.guards,
                          gas_margin_percent=self.settings.gas_margin_percent, now=now)
        if isinstance(admission, Refusal):
            return self.accounting.skipped(req, admission.code, admission.message, gas=sim.gas,
                                           head=sim.head)
        return admission

    # ---- watching ----------------------------------------------------------------------
    async def _watch(self, flight: Flight, still_wanted: StillWanted | None) -> TxOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.receipt_timeout
        timed_out = False
        while True:
            head = await self.reads.next_head(deadline, since=flight.seen_head)
            if head is None:
                if flight.receipt is not None or timed_out:
                    break
                # Out of time without a receipt: try to free the nonce once, then give it
                # ``replace_after_blocks`` more blocks' worth of polling.
                timed_out = True
                last = self.reads.last_head
                await self.same.cancel(flight, last[0] if last else 0,
                                   "no receipt within receipt_timeout")
                deadline = loop.time() + self.settings.poll_interval * (
                    self.settings.replace_after_blocks + 1)
                continue
            flight.seen_head = head
            try:
                done = await self._on_block(flight, head[0], still_wanted)
            except RpcError as exc:
                self.metrics.rpc_errors.labels("watch").inc()
                log.warning("receipt_check_failed", error=str(exc), label=flight.req.label)
                continue
            if done is not None:
                return done
        if flight.receipt is not None:
            return await self._included(flight, flight.receipt)
        return self.accounting.failed(flight, Status.DROPPED,
                                      f"not mined within {self.settings.receipt_timeout:g}s; "
                                      f"nonce {flight.lease.nonce} may still be pending")

    async def _on_block(self, flight: Flight, head: int,
                        still_wanted: StillWanted | None) -> TxOutcome | None:
        """One step of the state machine at a new head; a ``TxOutcome`` when it is over."""
        receipt, mined_nonce = await self.reads.receipt_and_nonce(list(flight.signed))
        if receipt is not None:
            flight.receipt = receipt
            flight.lease.mark_used()
            included = hex_to_int(receipt["blockNumber"], "blockNumber")
            deep_enough = head - included + 1 >= self.settings.confirmations
            if deep_enough and await self.reads.still_canonical(receipt):
                return await self._included(flight, receipt)
            return None

        if flight.receipt is not None:
            # We had a receipt and it is gone: the block was reorged out.
            flight.receipt = None
            flight.reorgs += 1
            log.warning("receipt_reorged_out", label=flight.req.label,
                        tx_hash=flight.current.tx_hash if flight.current else None, head=head)
            if mined_nonce <= flight.lease.nonce:
                flight.lease.used = False
                return await self.same.after_reorg(flight, head, mined_nonce)

        if mined_nonce > flight.lease.nonce:
            # Our nonce is used, yet none of our hashes has a receipt: a node lagging on
            # receipts, or another sender on this key. Look twice before calling it lost.
            flight.foreign_nonce_strikes += 1
            if flight.foreign_nonce_strikes >= 2:
                flight.lease.mark_used()
                return self.accounting.failed(flight, Status.DROPPED,
                                              f"nonce {flight.lease.nonce} was used by another "
                                              "transaction")
            return None

        if mined_nonce < flight.lease.nonce and await self.same.behind_gap(flight, head, mined_nonce):
            # The chain went back below ours (a node restored from an older state).
            return self.same.rolled_back(flight)
        if not self.submitter.resubmits and head > flight.sent_block \
                and max(mined_nonce, self.reads.pending_nonce or 0) == flight.lease.nonce \
                and await self.same.vanished(flight):
            await self.same.resend_vanished(flight, head)  # later ones wait behind it
        flight.sent_block = min(flight.sent_block, head)  # the head may have gone back

        if flight.req.after is not None and await self.reads.waiting_in_mempool(flight.req.after):
            # The tx we follow is not mined yet: at the head ours would revert, and a higher
            # tip would put ours before it. Wait; count the replacement blocks from its mining.
            flight.sent_block = head
            return None

        # Not at the head it was sent on: nothing has changed since the simulation.
        if (still_wanted is not None and flight.cancel_hash is None and head > flight.sent_block
                and not await self._wanted(flight, head, still_wanted)):
            # A node may answer "latest" from the block it is mining, with ours already in
            # it: look once more before paying for a cancel that can only be refused.
            flight.receipt, mined_nonce = await self.reads.receipt_and_nonce(list(flight.signed))
            if flight.receipt is not None or mined_nonce > flight.lease.nonce:
                return None
            await self.same.cancel(flight, head, "no longer wanted")
            if flight.abandoned:
                return self.accounting.failed(flight, Status.CANCELLED,
                                              f"lost by the node and {flight.abandoned}",
                                              failure=False)
            return None

        if self.submitter.resubmits and flight.cancel_hash is None:
            ended = await self._resubmit(flight, head)
            if ended is not None or flight.receipt is not None:
                return ended

        if head - flight.sent_block >= self.settings.replace_after_blocks:
            if await self.same.behind_gap(flight, head, mined_nonce):
                # The node went back below our nonce (restored from an older state): neither
                # a replacement nor a cancel could be mined. Plan the account again.
                return self.same.rolled_back(flight)
            await self.same.replace(flight, head)
        return None

    async def _included(self, flight: Flight, receipt: dict[str, Any]) -> TxOutcome:
        why = await self.simulator.mined_revert(str(receipt["transactionHash"])) \
            if hex_to_int(receipt["status"], "status") == 0 else None
        return self.accounting.included(flight, receipt, asyncio.get_running_loop().time(),
                                        revert=why, lost_race=lost_the_race(why or ""))

    async def _wanted(self, flight: Flight, head: int, still_wanted: StillWanted) -> bool:
        try:
            return await still_wanted(flight.req, head)
        except Exception:
            # The caller's hook failing must not strand a transaction in flight: keep it,
            # the chain (simulation before any replacement) still guards it.
            log.exception("still_wanted_hook_failed", label=flight.req.label)
            return True

    async def _resubmit(self, flight: Flight, head: int) -> TxOutcome | None:
        """A relay forgets bundles after their target block: re-check, then resubmit."""
        assert flight.current is not None
        sim = await self.simulator.simulate(flight.req, "latest")
        if sim.reason is not None:
            # It may have been included since the receipt check: look once more (a receipt
            # found is left in ``flight.receipt`` for the next block) before giving up.
            flight.receipt, _ = await self.reads.receipt_and_nonce(list(flight.signed))
            if flight.receipt is not None:
                return None
            return self.accounting.failed(flight, Status.DROPPED,
                                          f"no longer valid: {sim.reason}", failure=False)
        try:
            await self.submitter.on_block(flight.current, head)
        except (RpcError, RpcResponseError) as exc:
            # Best effort: the bundle for the next block is lost, not the transaction.
            self.metrics.rpc_errors.labels("resubmit").inc()
            log.warning("resubmit_failed", error=str(exc), label=flight.req.label)
        return None

