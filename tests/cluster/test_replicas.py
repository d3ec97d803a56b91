"""Three ``keeper run --cluster`` replicas on the devnet through a crash, the holder killed
with -9 mid-crash (``-m network``; needs etcd and the devnet artifacts).

What is checked, from the replicas' logs and the chain:
- every account the keeper's own planner would still liquidate afterwards: none (the judge);
- every transaction of the shared key was handed out by a replica that held the lease at
  that moment (by its log: after its ``cluster_lease_acquired``, before its loss or its
  death), and no two replicas' holdings overlap in time;
- no liquidation reverted (a second send of an opportunity would), no nonce gap (nothing
  queued behind a gap, the pending nonce equals the mined one once idle);
- a standby takes the lease over within 2 blocks of the dead holder's lease expiring.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.etcd_procs import EtcdCluster
from tests.e2e.test_daemon import KeeperProcess
from tests.faults.harness import (
    FaultRun,
    explain_revert,
    judge_profitable,
    named,
    poll,
    tracebacks,
)

pytestmark = [pytest.mark.network, pytest.mark.integration, pytest.mark.timeout(300),
              pytest.mark.asyncio(loop_scope="session")]

TTL = 3
MARGIN = 1.0
BLOCK_TIME = 1.0


def ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


def holdings(keeper: KeeperProcess, died_at: float | None) -> list[tuple[float, float]]:
    """The (from, to) wall times this replica held the lease, by its log."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for e in keeper.events():
        if e.get("event") == "cluster_lease_acquired":
            start = ts(e)
        elif e.get("event") == "cluster_lease_lost" and start is not None:
            out.append((start, ts(e)))
            start = None
    if start is not None:
        out.append((start, died_at if died_at is not None else time.time()))
    return out


async def own_reverts(run: FaultRun, since: int) -> list[str]:
    """Keeper transactions that reverted through the keeper's own doing (a second send of one
    opportunity would be one), and accounts liquidated twice in one block. A revert because
    the crash driver moved the chain between the simulation and the send is excused, as in
    the fault tests (``tests.e2e.races.explain_revert``)."""
    out = []
    for tx_hash in await run.reverted_keeper_txs(since):
        raced, why = await explain_revert(run, tx_hash)
        if raced:
            print(f"reverted, lost a race to the crash driver: {why}")
        else:
            out.append(why)
    blocks = await run.liquidation_blocks(since)
    twice = [k for k, n in Counter((b, u) for b, u, _ in blocks).items() if n > 1]
    return out + [f"liquidated twice in one block: {k}" for k in twice]


async def role(keeper: KeeperProcess) -> str | None:
    if not keeper.running:
        return None
    try:
        if await keeper.metric_total("keeper_cluster_role", role="holder") == 1:
            return "holder"
    except (OSError, TimeoutError):
        return None
    return "standby"


async def holder_of(keepers: list[KeeperProcess]) -> KeeperProcess | None:
    roles = [await role(k) for k in keepers]
    holders = [k for k, r in zip(keepers, roles, strict=True) if r == "holder"]
    assert len(holders) <= 1, f"two replicas report holding the lease: {roles}"
    return holders[0] if holders else None


async def start_replicas(run: FaultRun, etcd: EtcdCluster, n: int) -> list[KeeperProcess]:
    cluster = {"KEEPER_CLUSTER__ENABLED": "true",
               "KEEPER_CLUSTER__ENDPOINTS": ",".join(etcd.endpoints),
               "KEEPER_CLUSTER__NAME": "e2e", "KEEPER_CLUSTER__LEASE_TTL": str(TTL),
               "KEEPER_CLUSTER__SAFETY_MARGIN": str(MARGIN),
               "KEEPER_CLUSTER__POLL_INTERVAL": "0.2",
               "KEEPER_CLUSTER__REQUEST_TIMEOUT": "0.5",
               "KEEPER_CLUSTER__TAKEOVER_TIMEOUT": "10"}
    return [await run.start_keeper(
        f"r{i}", KEEPER_CLUSTER__REPLICA_ID=f"r{i}",
        KEEPER_STATE__SQLITE=str(run.tmp / f"r{i}.sqlite"), **cluster) for i in range(n)]


async def test_three_replicas_crash_and_kill_9_of_the_holder(
        tmp_path: Path, etcd1: EtcdCluster) -> None:
    async with FaultRun.open(tmp_path, seed=31, block_time=BLOCK_TIME) as run:
        await run.seed(150)
        keepers = await start_replicas(run, etcd1, 3)

        async def one_holder() -> bool:
            return await holder_of(keepers) is not None

        assert await poll(one_holder, 20), "no replica took the lease"
        run.ticking.set()
        first = await run.crash()

        # Kill -9 the holder right after it hands out a transaction (one may be in flight).
        holder = await holder_of(keepers)
        assert holder is not None

        async def sent_something() -> bool:
            return bool(named(holder, "tx_handed_out"))

        assert await poll(sent_something, 60), "the holder sent nothing during the crash"
        assert holder.proc is not None
        holder.proc.kill()
        died = time.time()
        await holder.proc.wait()
        standbys = [k for k in keepers if k is not holder]

        async def new_holder() -> bool:
            return await holder_of(standbys) is not None

        assert await poll(new_holder, 4 * TTL), "no standby took the lease over"
        took_over = time.time()
        # The dead holder's lease expires at most TTL after its last keepalive (<= died).
        assert took_over - (died + TTL) <= 2 * BLOCK_TIME + 0.5, took_over - died

        await run.wait_blocks(await run.head(), 12, timeout=120)
        left = await judge_profitable(run)
        latest, pending = await run.nonces()
        queued = await run.queued()
        reverted = await own_reverts(run, first)
        chain = await run.liquidation_blocks(first)

    problems: list[str] = []
    if left:
        problems.append(f"{len(left)} profitable accounts left under water: {sorted(left)[:5]}")
    if reverted:
        problems.append(f"{len(reverted)} keeper transactions reverted:\n" + "\n".join(reverted))
    if queued or pending != latest:
        problems.append(f"nonce gap: queued {queued}, latest {latest}, pending {pending}")
    spans = {id(k): holdings(k, died if k is holder else None) for k in keepers}
    sent_by: dict[str, str] = {}
    for i, k in enumerate(keepers):
        if tb := tracebacks(k):
            problems.append(f"r{i}: {len(tb)} tracebacks, first: {tb[0]}")
        # The line the gate writes before each send: a kill -9 can fall between a send and
        # its hand-out line.
        for e in named(k, "tx_cleared_to_send"):
            sent_by[str(e["tx_hash"]).lower()] = f"r{i}"
            t = ts(e)
            if not any(a <= t <= b for a, b in spans[id(k)]):
                problems.append(f"r{i} sent {e['tx_hash']} at {t} outside its holdings")
            for other in keepers:
                if other is not k and any(a <= t <= b for a, b in spans[id(other)]):
                    problems.append(f"r{i} sent {e['tx_hash']} while another replica held")
    unknown = [h for _, _, h in chain if h.lower() not in sent_by]
    if unknown:
        problems.append(f"liquidations not handed out by any replica: {unknown[:3]}")
    print("liquidations:", len(chain), "by replica:",
          {r: sum(1 for v in sent_by.values() if v == r) for r in ("r0", "r1", "r2")},
          "takeover after kill:", round(took_over - died, 2), "s")
    assert not problems, "\n".join(problems)
    assert len({r for r in sent_by.values()}) >= 2, "only one replica ever sent"


async def test_quorum_lost_and_restored_under_two_replicas(
        tmp_path: Path, etcd3: EtcdCluster) -> None:
    """Two etcd members of three killed mid-crash: no replica hands out anything past the
    holder's deadline (its last keepalive + TTL − margin, by the log's timestamps), both keep
    scanning, /readyz says why; restored, a replica sends again within 2 blocks."""
    async with FaultRun.open(tmp_path, seed=32, block_time=BLOCK_TIME) as run:
        await run.seed(150)
        keepers = await start_replicas(run, etcd3, 2)

        async def one_holder() -> bool:
            return await holder_of(keepers) is not None

        assert await poll(one_holder, 20), "no replica took the lease"
        run.ticking.set()
        first = await run.crash(steps=2)
        await run.wait_blocks(await run.head(), 3)

        cut = time.time()
        await etcd3.kill(etcd3.members[0])
        await etcd3.kill(etcd3.members[1])
        synced = [await k.metric("keeper_synced_block") or 0 for k in keepers]
        await run.crash({"WETH": 0.5}, steps=2)  # more accounts go under during the outage
        await run.wait_blocks(await run.head(), 2 * TTL)
        bodies = [(await k.get("/readyz"))[1] for k in keepers]
        synced_after = [await k.metric("keeper_synced_block") or 0 for k in keepers]

        await etcd3.start_member(etcd3.members[0])
        await etcd3.start_member(etcd3.members[1])
        await etcd3.wait_ready(etcd3.members[0])
        # Quorum is back by the time the member answers, or earlier: when a replica took the
        # lease again (which needs quorum), possibly while this test was still polling.
        restored = min([time.time()] + [ts(e) for k in keepers for e in k.events()
                                        if e.get("event") == "cluster_lease_acquired"
                                        and ts(e) > cut])

        async def sent_again() -> bool:
            return any(ts(e) > restored for k in keepers for e in named(k, "tx_handed_out"))

        assert await poll(sent_again, 30), "no replica sent after quorum came back"
        resumed = min(ts(e) for k in keepers for e in named(k, "tx_handed_out")
                      if ts(e) > restored)
        await run.wait_blocks(await run.head(), 8, timeout=120)
        left = await judge_profitable(run)
        latest, pending = await run.nonces()
        queued = await run.queued()
        reverted = await own_reverts(run, first)

    problems: list[str] = []
    late = [(f"r{i}", e["tx_hash"], round(ts(e) - cut, 2)) for i, k in enumerate(keepers)
            for e in named(k, "tx_handed_out") if cut + TTL - MARGIN < ts(e) < restored]
    if late:
        problems.append(f"sent past the holder's deadline while etcd had no quorum: {late}")
    if not all(b > a for a, b in zip(synced, synced_after, strict=True)):
        problems.append(f"scanning stopped during the outage: {synced} -> {synced_after}")
    if not all('"etcd_error": "no etcd member answered' in b for b in bodies):
        problems.append(f"/readyz does not say etcd is unreachable: {bodies}")
    if resumed - restored > 2 * BLOCK_TIME:
        problems.append(f"sending resumed {resumed - restored:.2f} s after quorum came back")
    if left:
        problems.append(f"{len(left)} profitable accounts left under water: {sorted(left)[:5]}")
    if reverted:
        problems.append(f"{len(reverted)} keeper transactions reverted:\n" + "\n".join(reverted))
    if queued or pending != latest:
        problems.append(f"nonce gap: queued {queued}, latest {latest}, pending {pending}")
    for i, k in enumerate(keepers):
        if tb := tracebacks(k):
            problems.append(f"r{i}: {len(tb)} tracebacks, first: {tb[0]}")
    print("resumed", round(resumed - restored, 2), "s after quorum came back")
    assert not problems, "\n".join(problems)
