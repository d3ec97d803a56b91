"""The etcd send gate: only the sender-lease holder may hand out a transaction, fenced.

``clear_to_send`` says yes only when all of these hold, checked in this order, the last one
again after the etcd round trip:

1. this replica holds the lease by its own clock (``SenderLease.holding``);
2. the takeover after acquiring it is done (``opened``: the previous holder's transactions
   were broadcast again and mined, or waited for; ``keeper.app.cluster``);
3. an etcd transaction finds the sender key with *our* create revision (the fencing token)
   and our replica id, and in the same transaction records the claim. A key that expired, was
   revoked or was taken by another replica fails the compare, so a replica that lost the
   lease cannot pass even if its clock says otherwise;
4. the local clock still says we hold it.

etcd unreachable or without quorum: refused (fail closed). Each hand-out is recorded under
``sent/<nonce>`` with its raw bytes; ``release`` deletes the claim and its records.

Keys under ``/keeper/<network>/``: ``sender`` (the lease), ``claims/<account>/<debt>/<block>``
(JSON: replica, token, time), ``sent/<nonce, 12 digits>`` (JSON: tx_hash, raw, claim, replica,
token). All replicas share one signing key, hence one nonce sequence: ``sent/`` is keyed by it.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass

from keeper.cluster.etcd import (
    EtcdClient,
    EtcdRejected,
    EtcdUnavailable,
    compare_create,
    compare_value,
    op_put,
    txn_succeeded,
)
from keeper.cluster.lease import SenderLease
from keeper.domain.claim import Claim
from keeper.obs.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SentRecord:
    """A transaction a holder handed out, as recorded in etcd."""

    nonce: int
    tx_hash: str
    raw: bytes
    claim: str | None
    replica: str
    token: int


def network_prefix(network: str) -> str:
    return f"/keeper/{network}/"


class EtcdSendGate:
    """``keeper.exec.gate.SendGate`` for one replica of a keeper network."""

    def __init__(self, client: EtcdClient, lease: SenderLease, prefix: str) -> None:
        self.client = client
        self.lease = lease
        self.prefix = prefix
        self.opened_token: int | None = None  # the holding whose takeover is done
        self.refusals: dict[str, int] = defaultdict(int)
        self.passed = 0
        self.open_claims: dict[str, set[int]] = {}  # claim key -> nonces sent for it
        self.last_refusal: str | None = None

    @property
    def sent_prefix(self) -> str:
        return self.prefix + "sent/"

    @property
    def claims_prefix(self) -> str:
        return self.prefix + "claims/"

    def open(self, token: int) -> None:
        """The takeover of the holding ``token`` is done: sending may start."""
        self.opened_token = token

    def _refuse(self, reason: str) -> bool:
        self.refusals[reason] += 1
        if self.last_refusal != reason:
            log.info("cluster_send_refused", reason=reason, replica=self.lease.replica)
        self.last_refusal = reason
        return False

    def may_send(self) -> bool:
        held = self.lease.holding()
        return held is not None and self.opened_token == held.token

    async def clear_to_send(self, claim: Claim | None) -> bool:
        held = self.lease.holding()
        if held is None:
            return self._refuse("not_holder")
        if self.opened_token != held.token:
            return self._refuse("taking_over")
        success = []
        if claim is not None:
            record = {"replica": self.lease.replica, "token": held.token, "at": time.time()}
            success.append(op_put(self.claims_prefix + claim.key, json.dumps(record)))
        try:
            reply = await self.client.txn([compare_create(self.lease.key, held.token),
                                           compare_value(self.lease.key, self.lease.replica)],
                                          success)
        except (EtcdUnavailable, EtcdRejected):
            return self._refuse("etcd_unreachable")
        if not txn_succeeded(reply):
            return self._refuse("fenced")
        if self.lease.holding() is not held:
            return self._refuse("ttl_ran_out")
        if claim is not None:
            self.open_claims.setdefault(claim.key, set())
        self.passed += 1
        self.last_refusal = None
        return True

    async def record_sent(self, claim: Claim | None, tx_hash: str, nonce: int,
                          raw: bytes) -> None:
        held = self.lease.holding_now
        record = {"tx_hash": tx_hash, "raw": raw.hex(), "claim": claim.key if claim else None,
                  "replica": self.lease.replica, "token": held.token if held else 0}
        if claim is not None:
            self.open_claims.setdefault(claim.key, set()).add(nonce)
        try:
            await self.client.put(self.sent_prefix + f"{nonce:012d}", json.dumps(record))
        except (EtcdUnavailable, EtcdRejected) as exc:
            # A new holder still finds this nonce on the chain or in its node's mempool.
            log.warning("cluster_record_sent_failed", tx_hash=tx_hash, nonce=nonce,
                        error=str(exc))

    async def release(self, claim: Claim) -> None:
        nonces = self.open_claims.pop(claim.key, set())
        try:
            await self.client.delete(self.claims_prefix + claim.key)
            for nonce in nonces:
                await self.client.delete(self.sent_prefix + f"{nonce:012d}")
        except (EtcdUnavailable, EtcdRejected) as exc:
            # Left behind, they are cleared by the next takeover once their nonce is mined.
            log.warning("cluster_release_failed", claim=claim.key, error=str(exc))

    # ---- what a new holder reads -------------------------------------------------------
    async def sent_records(self) -> list[SentRecord]:
        out = []
        for kv in await self.client.get_prefix(self.sent_prefix):
            try:
                data = json.loads(kv.value)
                out.append(SentRecord(int(kv.key.rsplit("/", 1)[1]), str(data["tx_hash"]),
                                      bytes.fromhex(data["raw"]), data.get("claim"),
                                      str(data["replica"]), int(data["token"])))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("cluster_sent_record_unreadable", key=kv.key, error=str(exc))
        return sorted(out, key=lambda r: r.nonce)

    async def forget_mined(self, below_nonce: int) -> None:
        """Drop the records of nonces the chain has mined, and claims no one works on."""
        for record in await self.sent_records():
            if record.nonce < below_nonce:
                await self.client.delete(self.sent_prefix + f"{record.nonce:012d}")
        held = self.lease.holding_now
        for kv in await self.client.get_prefix(self.claims_prefix):
            key = kv.key.removeprefix(self.claims_prefix)
            if key not in self.open_claims or held is None:
                await self.client.delete(kv.key)

    async def claim_count(self) -> int:
        return len(await self.client.get_prefix(self.claims_prefix))
