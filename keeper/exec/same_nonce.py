"""The same nonce again: resend after a reorg, replace with higher fees, cancel, or give a
request up when a rollback went below its nonce; and the signing and handing out they share
with the first send. Part of the executor (``keeper.exec.sender`` runs the state machine).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from keeper.domain.fees import (
    FeePolicy,
    Fees,
    bump,
    is_profitable,
    outbid_fees,
    replacement_fees,
)
from keeper.errors import RpcError, RpcErrorReply, RpcResponseError
from keeper.exec.accounting import Accounting
from keeper.exec.flight import Flight
from keeper.exec.keys import SignedTx, Signer
from keeper.exec.nonce import NonceLease, NonceManager
from keeper.exec.reads import ChainReads
from keeper.exec.simulate import Simulator
from keeper.exec.submit import Submitter, is_already_known
from keeper.exec.tx import Status, TxOutcome, TxRequest
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics

log = get_logger(__name__)
_GAP_CHECKS = 3  # reads of the node's word on a gap before it is left to the flights

CANCEL_GAS = 21_000


@dataclass(slots=True)
class SameNonce:
    """Hands out signed transactions for one account's nonce (owned by its ``Sender``)."""

    address: str
    chain_id: int
    signer: Signer | None
    policy: FeePolicy
    submitter: Submitter
    nonces: NonceManager
    reads: ChainReads
    simulator: Simulator
    accounting: Accounting
    metrics: Metrics

    def sign(self, to: str, data: bytes, value: int, nonce: int, gas_limit: int,
             fees: Fees) -> SignedTx:
        assert self.signer is not None  # guaranteed by __init__ outside dry run
        return self.signer.sign_eip1559(self.chain_id, nonce, to, data, value,
                                        gas_limit, fees)

    async def submit(self, flight: Flight, kind: str, signed: SignedTx, fees: Fees,
                     gas_limit: int, head: int) -> None:
        """Hand out ``signed``. A transport error is not a refusal: the node may hold it. Nor,
        for a first send, is an error object that says the node could not serve the call
        (overloaded): its nonce may have later ones of ours behind it already, and its flight
        hands it out again if the node does not hold it."""
        flight.lease.mark_sent()
        flight.signed[signed.tx_hash] = signed
        try:
            await self.submitter.submit(signed, head)
        except RpcResponseError as exc:
            if is_already_known(exc):
                pass  # the send did happen
            elif kind == "send" and isinstance(exc, RpcErrorReply):
                self._outcome_unknown(flight, signed, exc)
            else:
                flight.signed.pop(signed.tx_hash, None)
                raise
        except RpcError as exc:
            self._outcome_unknown(flight, signed, exc)
        flight.handed_out(kind, signed, fees, gas_limit, head)
        self.accounting.handed_out(flight, self.submitter.route)

    def _outcome_unknown(self, flight: Flight, signed: SignedTx, exc: RpcError) -> None:
        self.metrics.rpc_errors.labels("eth_sendRawTransaction").inc()
        log.warning("send_outcome_unknown", label=flight.req.label, tx_hash=signed.tx_hash,
                    error=str(exc))

    async def behind_gap(self, flight: Flight, head: int, mined: int) -> bool:
        """True when the chain's next nonce is below ours and a nonce in between belongs to
        no flight of ours: a rollback took more than this transaction, and it would wait
        behind a gap nobody fills. When every nonce in between is a flight of ours, each
        of them sees its own through (anvil drops a sender's pooled transactions while it
        builds a block); this one waits, handed out again if the node lost it. Given up
        instead, it would still be mined once the gap is filled, with nobody watching it.
        ``mined`` is the receipt round's mined count at ``head``; the round read the pending
        count beside it (a flight behind a gap asks every block: one read for all of them)."""
        pending = self.reads.pending_nonce
        if pending is None:  # the round's pending read failed: ask once more
            mined, pending = await self.nonces.node_nonces()
        chain = max(mined, pending)
        if chain >= flight.lease.nonce:
            return False
        ours = set(self.nonces.outstanding)
        if all(n in ours for n in range(chain, flight.lease.nonce)):
            log.info("nonce_gap_below_waiting", label=flight.req.label,
                     nonce=flight.lease.nonce, chain=chain)
            if flight.current is not None \
                    and not await self.reads.known_to_node(flight.current.tx_hash):
                await self.resend_vanished(flight, head)
            return False
        log.warning("nonce_above_chain_after_rollback", label=flight.req.label,
                    nonce=flight.lease.nonce, chain=chain)
        return True

    async def vanished(self, flight: Flight) -> bool:
        """Whether our transaction, at the edge of what the node holds (the caller's receipt
        round read its pool of ours ending right below it, or the chain's nonce at ours), left
        the node: the node does not know the hash (evicted, dropped while a block was built,
        or a restart)."""
        if flight.current is None or await self.reads.known_to_node(flight.current.tx_hash):
            return False
        log.warning("tx_vanished_from_node", label=flight.req.label, nonce=flight.lease.nonce,
                    tx_hash=flight.current.tx_hash)
        return True

    async def after_reorg(self, flight: Flight, head: int, mined: int) -> TxOutcome | None:
        """Re-simulate; resend the same signed tx if still valid, else cancel it; give it up
        (to be planned again) when the rollback went below its nonce."""
        if await self.behind_gap(flight, head, mined):
            return self.rolled_back(flight)
        # On a real node the reorged tx is back in the mempool and may now revert.
        await self._resend_checked(flight, head, "after reorg")
        return None

    async def resend_vanished(self, flight: Flight, head: int) -> None:
        """Our transaction, next in line, left the node (``vanished``): simulated again and
        the same bytes handed out again, or a cancel if it would now revert. Not while its
        fee cap is under the next base fee: the node would drop it again, and the replacement
        (``replace_after_blocks``) raises its fees, on its schedule: a node that drops it
        again for its price gets higher fees, not the same bytes every block."""
        await self._resend_checked(flight, head, "lost by the node", priced_out_waits=True,
                                   keep_schedule=True)

    async def _resend_checked(self, flight: Flight, head: int, why: str, *,
                              priced_out_waits: bool = False,
                              keep_schedule: bool = False) -> None:
        """The same signed bytes handed out again (the cancel, if one was sent), after a
        simulation at the head: one that would now revert is cancelled instead."""
        assert flight.current is not None and flight.current_fees is not None
        signed = flight.current
        if flight.cancel_hash is not None:
            signed = flight.signed[flight.cancel_hash]
        else:
            sim = await self.simulator.simulate(flight.req, "latest")
            if sim.reason is not None:
                await self.cancel(flight, head, f"{why}: {sim.reason}")
                return
            if priced_out_waits and flight.current_fees.max_fee_per_gas < sim.base_fee:
                return
        sent_block = flight.sent_block
        try:
            await self.submit(flight, "resend", signed, flight.current_fees, flight.gas_limit,
                               head)
        except RpcResponseError as exc:
            log.warning("resend_refused", why=why, error=exc.rpc_message, label=flight.req.label)
        if keep_schedule:
            flight.sent_block = sent_block

    def rolled_back(self, flight: Flight) -> TxOutcome:
        """Give the request up: the chain's nonce is below ours, so it can never be mined as
        signed. The nonce counter is re-read (the lease is not used) and the caller plans the
        account again on the rolled-back state. Not the keeper's failure. The node may still
        hold the transaction, queued behind the gap: an orphan, which the send that next takes
        its nonce outbids (``first_fees``)."""
        flight.lease.used = False
        self.nonces.orphaned(flight.lease.nonce, flight.current_fees)
        self.nonces.rolled_back()
        return self.accounting.failed(flight, Status.DROPPED, "rolled back below its nonce",
                                      failure=False, rolled_back=True)

    def first_fees(self, lease: NonceLease, fees: Fees, req: TxRequest, gas: int,
                   base_fee: int) -> Fees:
        """The fees of a first send at ``lease``'s nonce: ``fees``, raised to replace an orphan
        the node may hold there (``NonceLease.outbid``) while that stays within the caps and
        pays. Else ``fees``: the node may then refuse ours for the orphan, which is mined once
        the nonces below it are; the send is simulated again and goes at the next nonce, or
        is planned again (a nonce conflict, never the breaker's failure)."""
        if lease.outbid is None:
            return fees
        raised = outbid_fees(self.policy, lease.outbid, fees, base_fee,
                             req.expected_profit_native, gas)
        if raised is None:
            log.info("orphan_not_outbid", label=req.label, nonce=lease.nonce)
            return fees
        log.info("orphan_outbid", label=req.label, nonce=lease.nonce,
                 max_fee=raised.max_fee_per_gas, tip=raised.max_priority_fee_per_gas)
        return raised

    async def replace(self, flight: Flight, head: int) -> None:
        """Same nonce, fee cap and tip +≥10% (and at least today's price), if still worth it."""
        assert flight.current_fees is not None
        if flight.cancel_hash is not None:
            await self.cancel(flight, head, "cancel not mined yet")
            return
        sim = await self.simulator.simulate(flight.req, "latest")
        if sim.reason is not None:
            await self.cancel(flight, head, f"would now revert: {sim.reason}")
            return
        fees = replacement_fees(self.policy, flight.current_fees, sim.base_fee,
                                flight.req.expected_profit_native, flight.gas)
        if not self.policy.allows(fees):
            await self._rebroadcast_if_lost(flight, head, fees)
            return
        if not is_profitable(flight.req.expected_profit_native, flight.gas, fees, sim.base_fee):
            log.warning("replacement_unprofitable_waiting", label=flight.req.label)
            flight.sent_block = head
            return
        signed = self.sign(flight.req.to, flight.req.data, flight.req.value, flight.lease.nonce,
                            flight.gas_limit, fees)
        try:
            await self.submit(flight, "replace", signed, fees, flight.gas_limit, head)
        except RpcResponseError as exc:
            log.warning("replacement_refused_keeping_previous", error=exc.rpc_message,
                        label=flight.req.label)
            flight.sent_block = head

    async def _rebroadcast_if_lost(self, flight: Flight, head: int, capped: Fees) -> None:
        """We may not bid ``capped``. If the node has lost our transaction (evicted from its
        mempool, a restart), hand the same signed bytes out again: same nonce, same hash,
        nothing new is spent; otherwise it is merely waiting for its price."""
        assert flight.current is not None and flight.current_fees is not None
        if not await self.reads.known_to_node(flight.current.tx_hash):
            log.warning("tx_lost_rebroadcasting", label=flight.req.label,
                        tx_hash=flight.current.tx_hash)
            try:
                await self.submit(flight, "resend", flight.current, flight.current_fees,
                                   flight.gas_limit, head)
            except RpcResponseError as exc:
                log.warning("rebroadcast_refused", error=exc.rpc_message, label=flight.req.label)
                flight.sent_block = head
            return
        log.warning("replacement_over_fee_caps_waiting", label=flight.req.label,
                    max_fee=capped.max_fee_per_gas, tip=capped.max_priority_fee_per_gas)
        flight.sent_block = head

    async def cancel(self, flight: Flight, head: int, why: str) -> None:
        """Take the nonce with a 0-value transfer to ourselves, fees bumped ≥10%."""
        if flight.current_fees is None:
            return
        fees = bump(flight.current_fees)
        if not self.policy.allows(fees):
            assert flight.current is not None
            if not await self.reads.known_to_node(flight.current.tx_hash):
                # The node lost our transaction: nothing will spend the nonce, so there is
                # nothing to cancel. Abandon it; the nonce is re-read before the next send.
                flight.abandoned = why
                return
            # A cancel is a 21,000-gas self-transfer: even 10% above the caps it costs a small
            # fraction of letting a ~500k-gas liquidation revert.
            log.warning("cancel_over_fee_caps", label=flight.req.label, why=why,
                        max_fee=fees.max_fee_per_gas, tip=fees.max_priority_fee_per_gas)
        log.info("tx_cancelling", label=flight.req.label, nonce=flight.lease.nonce, why=why)
        signed = self.sign(self.address, b"", 0, flight.lease.nonce, CANCEL_GAS, fees)
        try:
            await self.submit(flight, "cancel", signed, fees, CANCEL_GAS, head)
        except RpcResponseError as exc:
            log.warning("cancel_refused", error=exc.rpc_message, label=flight.req.label)
            flight.sent_block = head

    async def fill_gap(self, flight: Flight, fees: Fees | None = None) -> None:
        """``flight``'s nonce was sent but will not be used, below other flights of ours:
        unless the node holds something for it, take it with a cancel so the later nonces
        are not stuck behind a gap. ``fees``: those of a send the node refused (it holds
        nothing at the nonce: the cancel outbids nothing, and goes at them). The node's word
        is asked up to three times (a node that refused a send may fail a read too)."""
        for attempt in range(_GAP_CHECKS):
            try:
                latest, pending = await self.nonces.node_nonces()
                held = any([await self.reads.known_to_node(h) for h in flight.signed])
                break
            except RpcError as exc:
                log.warning("nonce_gap_check_failed", label=flight.req.label, error=str(exc))
                if attempt == _GAP_CHECKS - 1:
                    return
                await asyncio.sleep(0.1 * (attempt + 1))
        if latest > flight.lease.nonce or held:
            return
        log.warning("nonce_gap_filling", label=flight.req.label, nonce=flight.lease.nonce,
                    chain=max(latest, pending))
        async with self.nonces.claim() as lease:
            # The claim serialises with other sends; the cancel reuses the gap's nonce.
            lease.nonce = flight.lease.nonce
            gap = Flight(flight.req, lease, flight.gas, flight.gas_limit)
            gap.current_fees = flight.current_fees
            gap.current = flight.current
            head = self.reads.last_head[0] if self.reads.last_head else 0
            try:
                if fees is not None:
                    log.info("tx_cancelling", label=flight.req.label, nonce=lease.nonce,
                             why="fill the nonce of a send the node does not hold")
                    signed = self.sign(self.address, b"", 0, lease.nonce, CANCEL_GAS, fees)
                    await self.submit(gap, "cancel", signed, fees, CANCEL_GAS, head)
                else:
                    await self.cancel(gap, head, "fill a nonce gap")
            except RpcResponseError as exc:
                log.warning("nonce_gap_fill_refused", error=exc.rpc_message)
            lease.sent = False  # not a flight of its own; the counter is re-read next
        self.nonces.invalidate()
