"""A three-member etcd cluster under the sender lease (``-m network``): one member down
changes nothing; two down and no holder can send; restored, sending resumes."""

from __future__ import annotations

import asyncio

import pytest

from keeper.cluster.etcd import EtcdClient
from keeper.cluster.lease import LeaseSettings, Role
from tests.cluster.etcd_procs import EtcdCluster, Member
from tests.cluster.test_lease import CLAIM, opened, replica, until

pytestmark = [pytest.mark.network, pytest.mark.asyncio(loop_scope="session")]

SETTINGS = LeaseSettings(ttl=3, margin=0.5, poll=0.1)


async def leader_of(client: EtcdClient, cluster: EtcdCluster) -> Member:
    for m in cluster.members:
        status = await client.status(m.url)
        if status.get("leader") == status.get("header", {}).get("member_id"):
            return m
    raise AssertionError("no leader")


async def test_quorum_loss_stops_sending_and_restore_resumes(etcd3: EtcdCluster) -> None:
    ca, a, gate_a = replica(etcd3, "a", timeout=0.4, settings=SETTINGS)
    cb, b, gate_b = replica(etcd3, "b", timeout=0.4, settings=SETTINGS)
    async with ca, cb:
        tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
        try:
            await until(lambda: a.role is Role.HOLDER or b.role is Role.HOLDER, 5)
            holder, gate = (a, gate_a) if a.role is Role.HOLDER else (b, gate_b)
            other_gate = gate_b if gate is gate_a else gate_a
            await opened(gate)
            assert await gate.clear_to_send(CLAIM)

            # One follower of three down: nothing stops.
            leader = await leader_of(ca, etcd3)
            follower, other = [m for m in etcd3.members if m is not leader][:2]
            await etcd3.kill(follower)
            for _ in range(10):
                assert await gate.clear_to_send(CLAIM)
                await asyncio.sleep(0.3)
            assert holder.role is Role.HOLDER and holder.failovers == 0
            assert not await other_gate.clear_to_send(CLAIM)

            # Then the leader as well: no quorum. The holder is refused at once (etcd cannot
            # confirm the fence) and stops by its own clock within the TTL; nobody else can
            # take over.
            await etcd3.kill(leader)
            assert not await gate.clear_to_send(CLAIM)
            await until(lambda: a.role is Role.STANDBY and b.role is Role.STANDBY,
                        SETTINGS.ttl + 1)
            await asyncio.sleep(1.0)
            assert not await gate_a.clear_to_send(CLAIM)
            assert not await gate_b.clear_to_send(CLAIM)

            # Restore both: a holder again, and it may send once its takeover is done.
            await etcd3.start_member(follower)
            await etcd3.start_member(leader)
            assert other.proc is not None and other.proc.returncode is None
            await until(lambda: a.role is Role.HOLDER or b.role is Role.HOLDER, 20)
            new_gate = gate_a if a.role is Role.HOLDER else gate_b
            await opened(new_gate)
            assert await new_gate.clear_to_send(CLAIM)
            assert a.role is not b.role
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
