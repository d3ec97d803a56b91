"""Prometheus metrics of the keeper, on a registry of their own (no global singleton).

Build one ``Metrics`` in the composition root and hand it to whoever records something; tests
build their own and read values back with ``Metrics.value``. Names are prefixed ``keeper_``.

| attribute | type | labels | recorded by |
|---|---|---|---|
| blocks_processed | Counter | | head follower / scanner, once per new head |
| head_block | Gauge | | latest head seen |
| synced_block | Gauge | | last block the book fully applied |
| positions_tracked | Gauge | | book |
| liquidatable | Gauge | | scanner (positions with HF < 1 now) |
| plans | Counter | | planner, per Plan produced |
| rejections | Counter | reason | planner / executor, per candidate not acted on |
| txs_sent | Counter | route (public/relay) | sender, per signed tx handed out (incl. replacements) |
| txs_mined | Counter | | sender, status 1 |
| txs_reverted | Counter | | sender, status 0 |
| txs_replaced | Counter | | sender, per same-nonce replacement |
| txs_dropped | Counter | | sender, per request that ended without its tx mined |
| dry_run_would_send | Counter | | sender in dry-run mode |
| profit_realised_eth | Counter | | caller, from the Outcome (ETH, float) |
| gas_spent_eth | Counter | | sender, gas × effective price of mined/reverted txs (ETH) |
| circuit_breaker_open | Gauge | | sender, 1 when open |
| sending_halted | Gauge | reason (kill_switch/circuit_breaker/gas_budget) | daemon, 1 while that guard halts sending |
| rpc_requests | Counter | method | the RPC pool, every call put to an endpoint (each call of a batch, each retry): what a node provider bills |
| rpc_errors | Counter | method, kind | the RPC pool, per transient failure (kind: connection, timeout, malformed, error_reply, not_available); task boundaries |
| risk_liquidatable_debt_usd | Gauge | asset, shock | risk gauges task (keeper/app/risk_task.py), every [risk] refresh_blocks |
| risk_bad_debt_usd | Gauge | asset, shock | risk gauges task: debt no collateral backs after that shock |
| risk_block | Gauge | | risk gauges task: the block the stress figures are of |
| detection_to_send_seconds | Histogram | | sender, from TxRequest.detected_at (the executor picked the account and began planning it) to the node taking the tx: the hot path alone, without queueing |
| flag_to_send_seconds | Histogram | | sender, from the scanner's first flag of the account to the send (queueing shows) |
| block_to_send_seconds | Histogram | | sender, from the arrival of the block that made the account liquidatable (its first flag block) to the send |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

WEI_PER_ETH = 10**18
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Queueing spans blocks: from milliseconds to minutes.
_QUEUE_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 12.0, 30.0, 60.0, 120.0, 300.0)
# Latency of reaction on a local node is milliseconds; over the internet tens to hundreds.
_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def wei_to_eth(wei: int) -> float:
    """For metrics only: floats are fine for a dashboard, never for money decisions."""
    return wei / WEI_PER_ETH


HALT_REASONS = ("kill_switch", "circuit_breaker", "gas_budget")


class RpcErrorCounter:
    """``keeper_rpc_errors_total{method, kind}``. ``labels(method)`` alone counts under
    ``kind="other"``, for callers that only know which call failed."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.counter = Counter("rpc_errors", "Failed JSON-RPC calls, by method and kind of failure",
                               ["method", "kind"], namespace=namespace, registry=registry)

    def labels(self, method: str, kind: str = "other") -> Counter:
        return self.counter.labels(method=method, kind=kind)


class Metrics:
    """All of the keeper's metrics, registered on ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "keeper") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ns = self.registry, namespace
        self.blocks_processed = Counter("blocks_processed", "New heads processed", namespace=ns, registry=r)
        self.head_block = Gauge("head_block", "Latest head block number seen", namespace=ns, registry=r)
        self.synced_block = Gauge("synced_block", "Last block fully applied to the book", namespace=ns, registry=r)
        self.positions_tracked = Gauge("positions_tracked", "Borrower positions in the book", namespace=ns, registry=r)
        self.liquidatable = Gauge("liquidatable", "Positions with health factor below 1", namespace=ns, registry=r)
        self.plans = Counter("plans", "Liquidation plans produced", namespace=ns, registry=r)
        self.rejections = Counter("rejections", "Candidates or plans not acted on, by reason",
                                  ["reason"], namespace=ns, registry=r)
        self.book_repairs = Counter(
            "book_repairs", "Accounts restored in the book from the contracts, by what found them "
            "(mismatch: the scanner's check against the chain; audit: the sweep of every account)",
            ["source"], namespace=ns, registry=r)
        self.txs_sent = Counter("txs_sent", "Signed transactions handed to a node or relay",
                                ["route"], namespace=ns, registry=r)
        self.txs_mined = Counter("txs_mined", "Transactions mined with status 1", namespace=ns, registry=r)
        self.txs_reverted = Counter("txs_reverted", "Transactions mined with status 0", namespace=ns, registry=r)
        self.txs_replaced = Counter("txs_replaced", "Same-nonce replacements sent", namespace=ns, registry=r)
        self.txs_dropped = Counter("txs_dropped", "Requests that ended without their tx mined",
                                   namespace=ns, registry=r)
        self.dry_run_would_send = Counter("dry_run_would_send", "Transactions a dry run would have sent",
                                          namespace=ns, registry=r)
        self.profit_realised_eth = Counter("profit_realised_eth", "Realised profit (ETH)", namespace=ns, registry=r)
        self.gas_spent_eth = Counter("gas_spent_eth", "Gas paid by our transactions (ETH)", namespace=ns, registry=r)
        self.circuit_breaker_open = Gauge("circuit_breaker_open", "1 while execution is halted by the breaker",
                                          namespace=ns, registry=r)
        self.sending_halted = Gauge("sending_halted", "1 while this guard halts sending",
                                    ["reason"], namespace=ns, registry=r)
        for reason in HALT_REASONS:
            self.sending_halted.labels(reason=reason).set(0)
        self.rpc_errors = RpcErrorCounter(r, ns)
        self.rpc_requests = Counter("rpc_requests", "JSON-RPC calls put to an endpoint, by method",
                                    ["method"], namespace=ns, registry=r)
        self.detection_to_send_seconds = Histogram(
            "detection_to_send_seconds", "From detection of a liquidatable position to the send",
            buckets=_LATENCY_BUCKETS, namespace=ns, registry=r)
        # The risk lab's stress figures (``asset``: a symbol, or "all_volatile" for the joint
        # shock; ``shock``: "-10%", "-20%", "-30%").
        self.risk_liquidatable_debt_usd = Gauge(
            "risk_liquidatable_debt_usd", "Debt of the accounts this price shock makes liquidatable",
            ["asset", "shock"], namespace=ns, registry=r)
        self.risk_bad_debt_usd = Gauge(
            "risk_bad_debt_usd", "Debt no collateral would back after this price shock",
            ["asset", "shock"], namespace=ns, registry=r)
        self.risk_block = Gauge("risk_block", "Block of the latest stress figures",
                                namespace=ns, registry=r)
        self.flag_to_send_seconds = Histogram(
            "flag_to_send_seconds", "From the scanner's first flag of an account to the send",
            buckets=_QUEUE_BUCKETS, namespace=ns, registry=r)
        self.block_to_send_seconds = Histogram(
            "block_to_send_seconds",
            "From the arrival of the block that made an account liquidatable to the send",
            buckets=_QUEUE_BUCKETS, namespace=ns, registry=r)

    def rpc_request(self, method: str) -> None:
        """Count a call put to an endpoint."""
        self.rpc_requests.labels(method).inc()

    def rpc_error(self, method: str, exc: BaseException) -> None:
        """Count a failed call; ``kind`` from the error's class (``keeper.errors``)."""
        self.rpc_errors.labels(method, str(getattr(exc, "kind", "other"))).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's current value by full name (``keeper_txs_mined_total``), for tests."""
        return self.registry.get_sample_value(name, labels or {})
