"""The keeper network's metrics, on the keeper's registry (``keeper.obs.metrics.Metrics``).

Registered by every keeper (``keeper.app.root.build``), so the dashboard and alerts name only
exported metrics; ``keeper_cluster_role`` has samples only in a keeper network (the
no-holder alert needs one), the unlabelled ones read 0 in a single process.

| name | type | labels | meaning |
|---|---|---|---|
| keeper_cluster_role | Gauge | role (holder/standby) | 1 for this replica's role, 0 for the other |
| keeper_cluster_lease_age_seconds | Gauge | | how long this replica has held the lease (0: standby) |
| keeper_cluster_failovers_total | Counter | | times this replica took the lease over from another |
| keeper_cluster_claims | Gauge | | open claims in etcd (as last read) |
| keeper_cluster_sends_refused_total | Counter | reason | sends the gate refused |
| keeper_cluster_etcd_up | Gauge | | 1 when the last etcd call of the lease loop answered |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from keeper.cluster.lease import Role


class ClusterMetrics:
    def __init__(self, registry: CollectorRegistry, namespace: str = "keeper") -> None:
        r, ns = registry, namespace
        self.role = Gauge("cluster_role", "1 for this replica's role in the keeper network",
                          ["role"], namespace=ns, registry=r)
        self.lease_age = Gauge("cluster_lease_age_seconds", "Seconds this replica has held "
                               "the sender lease (0 when standing by)", namespace=ns, registry=r)
        self.failovers = Counter("cluster_failovers", "Sender lease taken over from another "
                                 "replica", namespace=ns, registry=r)
        self.claims = Gauge("cluster_claims", "Open liquidation claims in etcd", namespace=ns,
                            registry=r)
        self.refused = Counter("cluster_sends_refused", "Sends the cluster gate refused",
                               ["reason"], namespace=ns, registry=r)
        self.etcd_up = Gauge("cluster_etcd_up", "1 when etcd answered the last call",
                             namespace=ns, registry=r)
        self._failovers_seen = 0
        self._refusals_seen: dict[str, int] = {}

    def observe(self, role: Role, lease_age: float, failovers: int, refusals: dict[str, int],
                *, etcd_up: bool) -> None:
        """Bring the metrics up to date with the lease and gate counters."""
        for r in Role:
            self.role.labels(role=r.value).set(1 if r is role else 0)
        self.lease_age.set(lease_age)
        if failovers > self._failovers_seen:
            self.failovers.inc(failovers - self._failovers_seen)
            self._failovers_seen = failovers
        for reason, n in refusals.items():
            seen = self._refusals_seen.get(reason, 0)
            if n > seen:
                self.refused.labels(reason=reason).inc(n - seen)
                self._refusals_seen[reason] = n
        self.etcd_up.set(1 if etcd_up else 0)
