"""The sender lease: at most one replica of a keeper network may send at a time.

One key, ``/keeper/<network>/sender``, holds the holder's replica id and is bound to an etcd
lease of ``ttl`` seconds that the holder keeps alive. Whoever creates the key holds the lease;
the key's *create revision* is the fencing token: it is unique to one holding (a key created
again after an expiry has a new, higher revision), and the gate (``keeper.cluster.gate``)
compares it in an etcd transaction before each send.

The holder's own clock is the second guard. etcd starts a lease's TTL when it processes the
grant or keepalive, which is after we sent the request; so ``valid_until`` (the moment the
request was *sent*, plus the TTL etcd granted, minus ``margin``) is always before etcd can let
the lease expire and grant the key to another replica. Once ``valid_until`` passes without a
successful keepalive, ``holding()`` is False whether or not etcd can be reached: a holder cut
off from etcd stops sending before anyone else may start. ``margin`` covers the clock rates of
two machines and the time from the last check to the node receiving the transaction.

A standby polls the key every ``poll`` seconds and campaigns when it is gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from keeper.cluster.etcd import (
    EtcdClient,
    EtcdRejected,
    EtcdUnavailable,
    compare_create,
    op_get,
    op_put,
    txn_range,
    txn_succeeded,
)
from keeper.obs.logging import get_logger

log = get_logger(__name__)

Clock = Callable[[], float]


class Role(StrEnum):
    HOLDER = "holder"
    STANDBY = "standby"


@dataclass(frozen=True, slots=True)
class Holding:
    """One holding of the sender lease, as this replica knows it."""

    lease: int  # the etcd lease id
    token: int  # the sender key's create revision: the fencing token
    ttl: int  # seconds etcd granted
    acquired_at: float  # clock()


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    ttl: int = 6
    margin: float = 1.0
    poll: float = 0.5  # standby: how often to look at the key; holder: keepalive every ttl/3


class SenderLease:
    """Campaign for, keep, and give up the sender lease of one network (``run`` loops)."""

    def __init__(self, client: EtcdClient, key: str, replica: str, settings: LeaseSettings,
                 *, clock: Clock = time.monotonic) -> None:
        if settings.margin >= settings.ttl:
            raise ValueError("the safety margin must be shorter than the lease TTL")
        self.client = client
        self.key = key
        self.replica = replica
        self.settings = settings
        self.clock = clock
        self.holding_now: Holding | None = None
        self.valid_until = 0.0
        self.failovers = 0  # times this replica took the lease over from another holder
        self.acquisitions = 0
        self.last_error: str | None = None
        self.holder_seen: str | None = None  # who holds the key, as last read
        self.changed = asyncio.Event()  # set on every gain or loss (for the takeover)
        # The lease of a holding we gave up by our clock: etcd may still keep the key alive on
        # it (a restored quorum restarts every lease's TTL); we revoke it rather than wait.
        self._stale_lease: int | None = None

    # ---- what the gate asks ----------------------------------------------------------
    def holding(self) -> Holding | None:
        """The current holding, if this replica holds the lease by its own clock."""
        h = self.holding_now
        if h is None:
            return None
        if self.clock() >= self.valid_until:
            self._lose("ttl_ran_out_locally")
            return None
        return h

    @property
    def role(self) -> Role:
        return Role.HOLDER if self.holding() is not None else Role.STANDBY

    def age(self) -> float:
        """Seconds since this replica acquired the lease it holds (0 when standing by)."""
        h = self.holding()
        return self.clock() - h.acquired_at if h is not None else 0.0

    # ---- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: campaign while standing by, keep alive while holding."""
        while True:
            try:
                if self.holding() is None:
                    await self.campaign()
                else:
                    await self.keep_alive()
                self.last_error = None
            except (EtcdUnavailable, EtcdRejected) as exc:
                if self.last_error is None:
                    log.warning("cluster_etcd_error", error=str(exc), role=self.role.value)
                self.last_error = str(exc)
            except Exception as exc:  # a task boundary: a bad reply must not end the loop
                log.exception("cluster_lease_loop_failed", role=self.role.value)
                self.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self._pause())

    def _pause(self) -> float:
        h = self.holding_now
        if h is None:
            return self.settings.poll
        # Keep alive three times per TTL, sooner when the local deadline is near.
        left = self.valid_until - self.clock()
        return max(0.05, min(h.ttl / 3, left / 2))

    async def campaign(self) -> bool:
        """Take the lease if nobody holds it; whether we now do."""
        current = await self.client.get(self.key)
        if current is not None and self._stale_lease is not None \
                and current.lease == self._stale_lease:
            log.info("cluster_stale_lease_revoked", replica=self.replica, lease=current.lease)
            await self.client.revoke(current.lease)
            self._stale_lease = None
            current = await self.client.get(self.key)
        if current is not None:
            self.holder_seen = current.value.decode(errors="replace")
            return False
        started = self.clock()
        lease, ttl = await self.client.grant(self.settings.ttl)
        try:
            reply = await self.client.txn([compare_create(self.key, 0)],
                                          [op_put(self.key, self.replica, lease), op_get(self.key)],
                                          [op_get(self.key)])
        except (EtcdUnavailable, EtcdRejected):
            # Revoking our lease undoes a put that may have been applied with its reply lost.
            await self._forget(lease)
            raise
        kv = txn_range(reply, 1 if txn_succeeded(reply) else 0)
        if kv is None or kv.lease != lease:
            await self._forget(lease)
            self.holder_seen = kv.value.decode(errors="replace") if kv is not None else None
            return False
        self._gain(Holding(lease, kv.create_revision, ttl, started), started + ttl)
        return True

    async def keep_alive(self) -> None:
        h = self.holding_now
        assert h is not None
        sent = self.clock()
        ttl = await self.client.keepalive(h.lease)
        if ttl <= 0:
            self._lose("lease_expired_in_etcd")
            return
        if self.holding_now is h:
            self.valid_until = sent + ttl - self.settings.margin

    async def resign(self) -> None:
        """Give the lease up now (on shutdown): a standby may take it at once."""
        h = self.holding_now
        self._lose("resigned")
        if h is not None:
            await self._forget(h.lease)
            self._stale_lease = None

    async def _forget(self, lease: int) -> None:
        try:
            await self.client.revoke(lease)
        except (EtcdUnavailable, EtcdRejected) as exc:
            log.warning("cluster_lease_revoke_failed", lease=lease, error=str(exc))

    def _gain(self, holding: Holding, expires: float) -> None:
        previous = self.holder_seen
        self.holding_now = holding
        self.valid_until = expires - self.settings.margin
        self.acquisitions += 1
        if previous is not None and previous != self.replica:
            self.failovers += 1
        self.holder_seen = self.replica
        log.info("cluster_lease_acquired", replica=self.replica, token=holding.token,
                 ttl=holding.ttl, previous_holder=previous)
        self.changed.set()

    def _lose(self, why: str) -> None:
        h = self.holding_now
        if h is None:
            return
        self.holding_now = None
        self.holder_seen = None
        self._stale_lease = h.lease
        log.warning("cluster_lease_lost", replica=self.replica, token=h.token, why=why,
                    held_for=round(self.clock() - h.acquired_at, 3))
        self.changed.set()
