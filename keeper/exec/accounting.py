"""How each request ended, told to the guards, the metrics and the log, as a ``TxOutcome``.

What counts against the circuit breaker: an on-chain revert, a rejected send, a lost nonce.
A refused simulation, an unprofitable or guarded request, a dry run are skips and never do.
Gas actually paid (mined or reverted) goes into the spend budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keeper.chain.types import hex_to_int
from keeper.exec.admission import Admission
from keeper.exec.flight import Flight
from keeper.exec.guards import Guards
from keeper.exec.tx import SendAttempt, Status, TxOutcome, TxRequest
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics, wei_to_eth

log = get_logger(__name__)


class Accounting:
    """Endings of one executor's requests (``dry_run`` marks every skip as a dry run's)."""

    def __init__(self, guards: Guards, metrics: Metrics, *, dry_run: bool) -> None:
        self.guards = guards
        self.metrics = metrics
        self.dry_run = dry_run
        # Told of every hand-out (request, nonce, attempt): the daemon's decision record.
        self.on_handed_out: Callable[[TxRequest, int, SendAttempt], None] | None = None

    def observe_send(self, req: TxRequest, now: float) -> None:
        """The latency histograms, at the moment the node took the transaction."""
        for start, histogram in ((req.detected_at, self.metrics.detection_to_send_seconds),
                                 (req.flagged_at, self.metrics.flag_to_send_seconds),
                                 (req.block_seen_at, self.metrics.block_to_send_seconds)):
            if start is not None:
                histogram.observe(max(now - start, 0.0))

    def handed_out(self, flight: Flight, route: str) -> None:
        """``flight``'s latest attempt went out through ``route``."""
        attempt = flight.attempts[-1]
        self.metrics.txs_sent.labels(route).inc()
        if attempt.kind in ("replace", "cancel"):
            self.metrics.txs_replaced.inc()
        log.info("tx_handed_out", kind=attempt.kind, route=route, label=flight.req.label,
                 tx_hash=attempt.tx_hash, nonce=flight.lease.nonce, gas_limit=attempt.gas_limit,
                 max_fee=attempt.fees.max_fee_per_gas, tip=attempt.fees.max_priority_fee_per_gas,
                 head=attempt.block)
        if self.on_handed_out is not None:
            self.on_handed_out(flight.req, flight.lease.nonce, attempt)

    def included(self, flight: Flight, receipt: dict[str, Any], now: float, *,
                 revert: str | None = None, lost_race: bool = False) -> TxOutcome:
        """A receipt deep enough and canonical: mined, reverted, or our cancel mined.

        A revert whose ``revert`` reason says the account was taken or healed before ours
        (``lost_race``) is not the keeper's failure: it costs its gas and counts as a revert,
        but does not move the circuit breaker, which 5 lost races in a row among 256 flights
        opened in the 10,000-borrower crash, halting every send."""
        tx_hash = str(receipt["transactionHash"]).lower()
        gas_used = hex_to_int(receipt["gasUsed"], "gasUsed")
        price = hex_to_int(receipt["effectiveGasPrice"], "effectiveGasPrice")
        ok = hex_to_int(receipt["status"], "status") == 1
        self.guards.budget.record(gas_used * price, now)
        self.metrics.gas_spent_eth.inc(wei_to_eth(gas_used * price))
        if tx_hash == flight.cancel_hash:
            status, reason = Status.CANCELLED, "cancelled"
            self.metrics.txs_dropped.inc()
        elif ok:
            status, reason = Status.MINED, ""
            self.metrics.txs_mined.inc()
            self.guards.breaker.record_success()
        else:
            status = Status.REVERTED
            reason = f"reverted on chain: {revert}" if revert else "reverted on chain"
            self.metrics.txs_reverted.inc()
            if lost_race:
                reason += " (lost the race)"
            else:
                self.guards.breaker.record_failure(f"{flight.req.label or 'tx'} {reason}")
        self._breaker_gauge()
        outcome = TxOutcome(
            status, flight.req.label, reason, tx_hash=tx_hash, nonce=flight.lease.nonce,
            gas_used=gas_used, effective_gas_price=price,
            block_number=hex_to_int(receipt["blockNumber"], "blockNumber"),
            replacements=flight.replacements, reorgs=flight.reorgs,
            attempts=tuple(flight.attempts), simulated_gas=flight.gas)
        log.info("tx_final", status=str(status), reason=reason, label=flight.req.label,
                 tx_hash=tx_hash,
                 nonce=flight.lease.nonce, block=outcome.block_number, gas_used=gas_used,
                 effective_gas_price=price, replacements=outcome.replacements, reorgs=flight.reorgs)
        return outcome

    def failed(self, flight: Flight, status: Status, reason: str, *,
               failure: bool = True, rolled_back: bool = False,
               fenced: bool = False) -> TxOutcome:
        """Sent but not included; ``failure`` counts it against the circuit breaker."""
        if failure:
            self.guards.breaker.record_failure(reason)
        self.metrics.txs_dropped.inc()
        self._breaker_gauge()
        log.warning("tx_not_mined", status=str(status), label=flight.req.label, reason=reason,
                    nonce=flight.lease.nonce, hashes=flight.hashes)
        return TxOutcome(status, flight.req.label, reason,
                         tx_hash=flight.attempts[-1].tx_hash if flight.attempts else None,
                         nonce=flight.lease.nonce, replacements=flight.replacements,
                         reorgs=flight.reorgs, attempts=tuple(flight.attempts),
                         simulated_gas=flight.gas, rolled_back=rolled_back, fenced=fenced)

    def skipped(self, req: TxRequest, code: str, reason: str, *,
                gas: int | None = None, head: int | None = None) -> TxOutcome:
        """Never sent: ``code`` labels the rejection metric; ``head`` the simulation's."""
        self.metrics.rejections.labels(code).inc()
        log.info("tx_not_sent", label=req.label, code=code, reason=reason)
        return TxOutcome(Status.SKIPPED, req.label, reason, simulated_gas=gas,
                         dry_run=self.dry_run, head=head, code=code)

    def would_send(self, req: TxRequest, nonce: int, gas: int, admission: Admission) -> TxOutcome:
        """Dry run: everything passed; say what would have been sent, send nothing."""
        fees, cost = admission.fees, admission.cost
        self.metrics.dry_run_would_send.inc()
        log.info("dry_run_would_send", label=req.label, to=req.to, nonce=nonce, gas=gas,
                 gas_limit=admission.gas_limit, max_fee=fees.max_fee_per_gas,
                 tip=fees.max_priority_fee_per_gas, expected_cost_wei=cost,
                 expected_profit_wei=req.expected_profit_native,
                 simulated_net_profit_wei=req.expected_profit_native - cost)
        return TxOutcome(Status.SKIPPED, req.label, "dry run: would have sent", nonce=nonce,
                         simulated_gas=gas, expected_cost=cost, dry_run=True)

    def _breaker_gauge(self) -> None:
        self.metrics.circuit_breaker_open.set(1 if self.guards.breaker.is_open else 0)
