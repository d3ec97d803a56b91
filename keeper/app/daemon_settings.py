"""How the daemon paces itself: head polling, readiness, task restarts, per-account back-off."""

from __future__ import annotations

from dataclasses import dataclass

from keeper.app.config import KeeperConfig


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """How the daemon paces itself (derived from the config by ``from_config``)."""

    head_poll: float = 1.0  # seconds between head reads for readiness and keeper_head_block
    ready_lag_blocks: int = 2  # ready while the last scanned block is this close to the head
    ready_head_age: float = 30.0  # ... and the node answered within this many seconds
    retry_min: float = 0.5  # a failed task waits this long before trying again, doubling
    retry_max: float = 15.0  # ... up to this
    backoff_max_blocks: int = 64  # a candidate that was not liquidated waits 1, 2, 4 ... blocks
    backoff_seconds: float = 2.0  # ... or 2, 4, 8 ... seconds if no block comes meanwhile
    max_in_flight: int = 1  # liquidations in flight at once (consecutive nonces)
    batch_size: int = 1  # liquidations that keep their collateral sent in one transaction
    drain_timeout: float = 90.0  # on a signal, how long the liquidation in flight may take
    max_consecutive_failures: int = 5  # task failures in a row that open the circuit breaker
    breaker_cooldown: float = 60.0  # ... which closes again after this many quiet seconds
    freeze_heap: bool = False  # gc.freeze the long-lived heap (keeper.app.heap): own process only

    @classmethod
    def from_config(cls, cfg: KeeperConfig) -> DaemonSettings:
        head_poll = min(max(cfg.scanner.poll_interval, 0.5), 5.0)
        return cls(
            head_poll=head_poll,
            ready_head_age=max(15.0, 10 * head_poll),
            # Long enough for a receipt and one cancel round (the sender's own deadlines).
            drain_timeout=cfg.executor.receipt_timeout + 30.0,
            max_consecutive_failures=cfg.executor.max_consecutive_failures,
            # One at a time through a private relay (its bundles target one block), and in a
            # keeper network: the holder's fencing check and the nonce turns of several
            # flights are not proven together yet (a flight waiting for its turn could be
            # handed out past the lease deadline), so the network sends one at a time.
            max_in_flight=1 if cfg.executor.private_relay_url is not None
            or cfg.cluster.enabled else cfg.executor.max_in_flight,
            batch_size=1 if cfg.cluster.enabled else cfg.executor.batch_size,
        )
