"""The sender lease and the gate against real etcd members (``-m network``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from keeper.cluster.etcd import EtcdClient
from keeper.cluster.gate import EtcdSendGate, network_prefix
from keeper.cluster.lease import LeaseSettings, Role, SenderLease
from keeper.domain.claim import Claim
from tests.cluster.etcd_procs import EtcdCluster

pytestmark = [pytest.mark.network, pytest.mark.asyncio(loop_scope="session")]

PREFIX = network_prefix("test")
KEY = PREFIX + "sender"
FAST = LeaseSettings(ttl=2, margin=0.5, poll=0.1)


def replica(cluster: EtcdCluster, name: str, *, timeout: float = 0.5,
            settings: LeaseSettings = FAST) -> tuple[EtcdClient, SenderLease, EtcdSendGate]:
    client = EtcdClient(cluster.endpoints, timeout=timeout)
    lease = SenderLease(client, KEY, name, settings)
    return client, lease, EtcdSendGate(client, lease, PREFIX)


async def until(predicate: object, timeout: float) -> float:
    """Poll ``predicate`` (a callable) until true; the time it took."""
    assert callable(predicate)
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def opened(gate: EtcdSendGate) -> None:
    held = gate.lease.holding()
    assert held is not None
    gate.open(held.token)


CLAIM = Claim("0x" + "11" * 20, "0x" + "22" * 20, 7)


async def test_one_holder_keepalive_and_failover_on_expiry(etcd1: EtcdCluster) -> None:
    ca, a, gate_a = replica(etcd1, "a")
    cb, b, gate_b = replica(etcd1, "b")
    async with ca, cb:
        assert await a.campaign()
        assert not await b.campaign()  # the key is taken
        assert b.holder_seen == "a"
        await opened(gate_a)
        run_a = asyncio.create_task(a.run())
        run_b = asyncio.create_task(b.run())
        try:
            await asyncio.sleep(3 * FAST.ttl)  # kept alive past its TTL, several times over
            assert (a.role, b.role) == (Role.HOLDER, Role.STANDBY)
            assert await gate_a.clear_to_send(CLAIM)
            assert not await gate_b.clear_to_send(CLAIM)
            token_a = a.holding_now.token if a.holding_now else 0
            run_a.cancel()  # the holder dies without resigning: its lease must expire
            lost_at = time.monotonic()
            waited = await until(lambda: b.role is Role.HOLDER, 3 * FAST.ttl)
            # Not before the lease could expire, and soon after.
            assert FAST.ttl - 0.6 <= waited <= FAST.ttl + 1.5, waited
            assert b.failovers == 1
            assert b.holding_now is not None and b.holding_now.token > token_a
            assert time.monotonic() - lost_at >= FAST.ttl - 0.6
        finally:
            run_a.cancel()
            run_b.cancel()


async def test_fencing_revoked_or_replaced_holder_cannot_pass(etcd1: EtcdCluster) -> None:
    ca, a, gate_a = replica(etcd1, "a")
    cb, b, gate_b = replica(etcd1, "b")
    async with ca, cb:
        assert await a.campaign()
        await opened(gate_a)
        assert await gate_a.clear_to_send(CLAIM)
        held = a.holding_now
        assert held is not None
        # Someone revokes a's lease (an operator, or etcd expiring it): a's clock still says
        # it holds it, but the fencing transaction must refuse.
        await cb.revoke(held.lease)
        assert a.holding() is not None
        assert not await gate_a.clear_to_send(CLAIM)
        assert gate_a.refusals["fenced"] == 1
        # b takes the key; a's stale token still cannot pass, b's can.
        assert await b.campaign()
        await opened(gate_b)
        assert not await gate_a.clear_to_send(CLAIM)
        assert await gate_b.clear_to_send(CLAIM)
        # The keepalive of a lease that is gone tells a it lost it.
        await a.keep_alive()
        assert a.role is Role.STANDBY


async def test_new_holder_is_closed_until_takeover_is_done(etcd1: EtcdCluster) -> None:
    ca, a, gate_a = replica(etcd1, "a")
    async with ca:
        assert not gate_a.may_send()  # a standby plans nothing
        assert await a.campaign()
        assert not gate_a.may_send()
        assert not await gate_a.clear_to_send(CLAIM)
        assert gate_a.refusals["taking_over"] == 1
        await opened(gate_a)
        assert gate_a.may_send()
        assert await gate_a.clear_to_send(CLAIM)


async def test_claims_and_sent_records_round_trip(etcd1: EtcdCluster) -> None:
    ca, a, gate_a = replica(etcd1, "a")
    async with ca:
        assert await a.campaign()
        await opened(gate_a)
        assert await gate_a.clear_to_send(CLAIM)
        await gate_a.record_sent(CLAIM, "0x" + "ab" * 32, 5, b"\x02raw")
        assert await gate_a.claim_count() == 1
        (record,) = await gate_a.sent_records()
        assert (record.nonce, record.raw, record.claim, record.replica) == (
            5, b"\x02raw", CLAIM.key, "a")
        await gate_a.release(CLAIM)
        assert await gate_a.claim_count() == 0
        assert await gate_a.sent_records() == []


async def test_partitioned_holder_stops_before_its_lease_can_expire(
        etcd1: EtcdCluster) -> None:
    """The holder loses etcd (every member gone): by its own clock it stops sending before
    etcd could let the lease go to anyone else (granted TTL after the last keepalive)."""
    ca, a, gate_a = replica(etcd1, "a", timeout=0.3)
    async with ca:
        assert await a.campaign()
        await opened(gate_a)
        run_a = asyncio.create_task(a.run())
        try:
            await asyncio.sleep(1.0)
            assert await gate_a.clear_to_send(CLAIM)
            # The last keepalive that etcd could have processed was sent at most now.
            last_possible_renewal = time.monotonic()
            await etcd1.kill(etcd1.members[0])
            last_pass = time.monotonic()
            await until(lambda: a.holding() is None, 2 * FAST.ttl)
            stopped = time.monotonic()
            assert not await gate_a.clear_to_send(CLAIM)
            # etcd can expire the lease no earlier than TTL after the last renewal it saw.
            assert stopped < last_possible_renewal + FAST.ttl - FAST.margin + 0.05
            assert stopped >= last_pass
        finally:
            run_a.cancel()


async def test_a_holder_that_lost_by_its_clock_revokes_its_stale_lease(
        etcd1: EtcdCluster) -> None:
    """Locally lost (the deadline passed) while etcd still has the key: the next campaign
    revokes that lease instead of waiting a whole TTL for etcd to expire it."""
    ca, a, _ = replica(etcd1, "a")
    async with ca:
        assert await a.campaign()
        first = a.holding_now
        assert first is not None
        a.valid_until = 0.0  # as if keepalives had failed past the deadline
        assert a.holding() is None
        assert (await ca.get(KEY)) is not None  # etcd still has it
        assert await a.campaign()
        assert a.holding_now is not None and a.holding_now.token > first.token
