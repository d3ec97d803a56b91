"""The keeper network: replicas coordinated through etcd (sender lease, fencing, claims)."""
