"""``keeper run --cluster``: this process as one replica of a keeper network.

Every replica follows the chain, keeps the book and scans (a hot standby); only the holder of
the sender lease (``keeper.cluster.lease``) passes the send gate (``keeper.cluster.gate``).
``ClusterNode`` owns the etcd client, the lease, the gate and the metrics, and runs beside the
daemon (``run_clustered``): the lease loop, the takeover when this replica gains the lease,
and the metrics / ``/readyz`` details.

The takeover, before the new holder's gate opens: every transaction the previous holders
recorded under ``sent/`` is broadcast again to this replica's node (the same signed bytes: a
node that already has it, or mined it, refuses harmlessly), then the holder waits until the
chain has mined past the highest recorded nonce, up to ``takeover_timeout``. All replicas
sign with one key, so the new holder's nonce counter, read from its node's pending count,
continues right after them: no gap, and no opportunity the old holder sent is sent again
(a plan for an account already liquidated no longer simulates).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from keeper.app.config import KeeperConfig
from keeper.app.daemon import Daemon
from keeper.app.root import Keeper
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import hex_to_int
from keeper.cluster.etcd import EtcdClient, EtcdRejected, EtcdUnavailable
from keeper.cluster.gate import EtcdSendGate, SentRecord, network_prefix
from keeper.cluster.lease import LeaseSettings, SenderLease
from keeper.cluster.metrics import ClusterMetrics
from keeper.errors import ConfigError, RpcError, RpcResponseError
from keeper.exec.submit import is_already_known
from keeper.obs.logging import get_logger

log = get_logger(__name__)


class ClusterNode:
    """This replica: lease, gate, metrics (build with ``cluster_node``)."""

    def __init__(self, client: EtcdClient, lease: SenderLease, gate: EtcdSendGate, *,
                 takeover_timeout: float) -> None:
        self.client = client
        self.lease = lease
        self.gate = gate
        self.metrics: ClusterMetrics | None = None  # on the keeper's registry, once built
        self.takeover_timeout = takeover_timeout
        self.claims = 0

    def describe(self) -> dict[str, object]:
        """The ``/readyz`` details: role, lease age, who holds it, why sending is refused."""
        held = self.lease.holding()
        return {"cluster": {
            "replica": self.lease.replica,
            "role": self.lease.role.value,
            "lease_age": round(self.lease.age(), 3),
            "token": held.token if held is not None else None,
            "holder": self.lease.holder_seen,
            "sending": held is not None and self.gate.opened_token == held.token,
            "failovers": self.lease.failovers,
            "claims": self.claims,
            "etcd_error": self.lease.last_error,
        }}

    async def run(self, rpc: JsonRpc, account: str | None, *, interval: float = 1.0) -> None:
        """Forever: the lease loop, the takeovers, the metrics."""
        lease_loop = asyncio.create_task(self.lease.run(), name="cluster_lease")
        try:
            while True:
                self.lease.changed.clear()
                try:
                    held = self.lease.holding()
                    if held is not None and self.gate.opened_token != held.token:
                        await self._take_over(rpc, account, held.token)
                    await self._observe()
                except Exception:  # a task boundary: the gate stays shut, the loop goes on
                    log.exception("cluster_task_failed", role=self.lease.role.value)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.lease.changed.wait(), interval)
        finally:
            lease_loop.cancel()
            await asyncio.gather(lease_loop, return_exceptions=True)

    async def _observe(self) -> None:
        with contextlib.suppress(EtcdUnavailable, EtcdRejected):
            self.claims = await self.gate.claim_count()
        if self.metrics is None:
            return
        self.metrics.claims.set(self.claims)
        self.metrics.observe(self.lease.role, self.lease.age(), self.lease.failovers,
                             dict(self.gate.refusals), etcd_up=self.lease.last_error is None)

    async def _take_over(self, rpc: JsonRpc, account: str | None, token: int) -> None:
        """Carry on from the previous holder (see the module docstring); then open the gate."""
        try:
            records = await self.gate.sent_records()
        except (EtcdUnavailable, EtcdRejected) as exc:
            log.warning("cluster_takeover_waiting_for_etcd", error=str(exc))
            return
        top = await self._carry_on(rpc, account, records)
        mined = await self._mined_past(rpc, account, top)
        with contextlib.suppress(EtcdUnavailable, EtcdRejected):
            await self.gate.forget_mined(mined)
        if self.lease.holding() is None or self.lease.holding_now is None:
            return
        if self.lease.holding_now.token == token:
            self.gate.open(token)
            log.info("cluster_sending_opened", replica=self.lease.replica, token=token,
                     inherited=len(records), mined_nonce=mined)

    async def _carry_on(self, rpc: JsonRpc, account: str | None,
                        records: list[SentRecord]) -> int:
        """Broadcast the recorded transactions again, in nonce order, as long as each one
        continues the account's sequence on our node (one behind a gap would never be mined
        and would sit in the node's queue); the highest nonce the node may now hold, or -1."""
        if account is None or not records:
            return -1
        try:
            next_nonce = await _node_nonce(rpc, account, "pending")
        except RpcError as exc:
            log.warning("cluster_takeover_nonce_unreadable", error=str(exc))
            return max(r.nonce for r in records)  # wait for all of them: the timeout bounds it
        top = next_nonce - 1
        for record in records:
            if record.nonce > next_nonce:
                log.warning("cluster_takeover_record_behind_gap", nonce=record.nonce,
                            next_nonce=next_nonce, tx_hash=record.tx_hash)
                break
            if await _rebroadcast(rpc, record) and record.nonce == next_nonce:
                next_nonce += 1
                top = record.nonce
        return top

    async def _mined_past(self, rpc: JsonRpc, account: str | None, top: int) -> int:
        """Wait until the account's mined nonce passes ``top`` (or the timeout); the nonce."""
        if account is None:
            return 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.takeover_timeout
        mined = 0
        while True:
            try:
                mined = await _node_nonce(rpc, account, "latest")
            except RpcError as exc:
                log.warning("cluster_takeover_nonce_unreadable", error=str(exc))
            if mined > top or loop.time() >= deadline:
                if mined <= top:
                    log.warning("cluster_takeover_timeout", mined_nonce=mined, inherited_top=top)
                return mined
            await asyncio.sleep(0.25)


async def _node_nonce(rpc: JsonRpc, account: str, block: str) -> int:
    return hex_to_int(await rpc.call("eth_getTransactionCount", [account, block], timeout=5.0),
                      "eth_getTransactionCount")


async def _rebroadcast(rpc: JsonRpc, record: SentRecord) -> bool:
    """Hand the previous holder's signed bytes to our node; whether the node may now hold
    them (accepted, already known, or no clear answer)."""
    try:
        await rpc.call("eth_sendRawTransaction", ["0x" + record.raw.hex()], timeout=5.0)
    except RpcResponseError as exc:
        held = isinstance(exc, RpcError) or is_already_known(exc)
        # Refused otherwise: mined already ("nonce too low") or never to be mined.
        log.info("cluster_takeover_rebroadcast_refused", nonce=record.nonce,
                 tx_hash=record.tx_hash, error=exc.rpc_message, waiting=held)
        return held
    except RpcError as exc:
        log.warning("cluster_takeover_rebroadcast_unknown", nonce=record.nonce,
                    tx_hash=record.tx_hash, error=str(exc))
        return True
    log.info("cluster_takeover_rebroadcast", nonce=record.nonce, tx_hash=record.tx_hash,
             from_replica=record.replica)
    return True


def lease_ttl(cfg: KeeperConfig) -> int:
    """The configured TTL, else three block times (at least 3 s)."""
    return cfg.cluster.lease_ttl or max(3, 3 * cfg.network.block_time)


@contextlib.asynccontextmanager
async def cluster_node(cfg: KeeperConfig) -> AsyncIterator[ClusterNode]:
    """This replica of the network ``cfg.cluster`` describes; resigns the lease on exit."""
    c = cfg.cluster
    if not c.endpoints:
        raise ConfigError("cluster.endpoints: the etcd members' client URLs are needed "
                          "for --cluster")
    ttl = lease_ttl(cfg)
    if c.safety_margin >= ttl:
        raise ConfigError(f"cluster.safety_margin: must be shorter than the lease TTL ({ttl}s)")
    prefix = network_prefix(c.name or cfg.network.name)
    replica = c.replica_id or socket.gethostname()
    async with EtcdClient(list(c.endpoints), timeout=c.request_timeout) as client:
        lease = SenderLease(client, prefix + "sender", replica,
                            LeaseSettings(ttl=ttl, margin=c.safety_margin, poll=c.poll_interval))
        node = ClusterNode(client, lease, EtcdSendGate(client, lease, prefix),
                           takeover_timeout=c.takeover_timeout)
        log.info("cluster_replica_started", replica=replica, prefix=prefix, lease_ttl=ttl,
                 endpoints=len(c.endpoints))
        try:
            yield node
        finally:
            await asyncio.shield(lease.resign())


async def run_clustered(keeper: Keeper, node: ClusterNode) -> None:
    """The daemon, with this replica's cluster tasks beside it."""
    daemon = Daemon(keeper)
    daemon.readiness.details = node.describe
    node.metrics = keeper.cluster_metrics or ClusterMetrics(keeper.metrics.registry)
    account = keeper.executor.sender.address if keeper.executor is not None else None
    task = asyncio.create_task(node.run(keeper.rpc, account), name="cluster")
    try:
        await daemon.run()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
