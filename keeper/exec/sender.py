"""See one transaction through: simulate, sign, send, watch, replace, survive a reorg.

``Sender.execute(request)`` is the whole life of a transaction for one account, and it holds
the account's nonce lease for all of it, so there is at most one transaction in flight per
account. It never sends a transaction that a simulation against the pending state says would
revert, or whose gas at current fees would eat the expected profit, or that the guards refuse.
It never resends blindly: before any replacement or resend it checks, in one batch, the
receipt of every hash sent so far for this nonce and the account's mined nonce.

Life of a request::

    simulate (eth_call + eth_estimateGas + pending block + balance, one batch, at "pending")
      → refuse (reverts / unprofitable / guard / balance)  → Outcome SKIPPED
      → dry run: log what would be sent                     → Outcome SKIPPED, dry_run=True
    sign locally, submit (public mempool or private relay)
    each new block:
      receipts of all our hashes + mined nonce (one batch)
      receipt found → wait ``confirmations`` blocks, then MINED / REVERTED
      receipt gone (reorg) → re-simulate; resend the same signed tx, or cancel if it now reverts
      nonce used by something not ours → DROPPED
      caller's ``still_wanted(request, block)`` says no → cancel (0-value self-transfer, same nonce)
      not mined after ``replace_after_blocks`` → re-simulate, replace with fee cap and tip +≥10%
    after ``receipt_timeout`` seconds without a receipt → cancel attempt, DROPPED

A *backrun* request (``after`` set) must land right after a transaction still in the
mempool: it is simulated with ``eth_simulateV1`` as the pair [that tx, ours] and refused
unless ours succeeds after it; it bids ``exact_fees`` (the same tip as that tx, so fee
ordering puts it just behind); and while that tx is pending it is neither re-checked with
``still_wanted`` nor replaced (either would judge it against a state without the tx it follows).
Once that tx is mined, ours is an ordinary request and every rule above applies.

A simulation that reverts is not a failure for the circuit breaker (losing a race is normal);
an on-chain revert, a rejected send and a lost nonce are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from eth_abi import decode as abi_decode

from keeper.app.config import KeeperConfig
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import PendingTx, hex_to_int
from keeper.domain.fees import (
    FeePolicy,
    Fees,
    bump,
    gas_cost,
    initial_fees,
    is_profitable,
    replacement_fees,
)
from keeper.errors import ConfigError, RpcError, RpcResponseError
from keeper.exec.guards import Guards
from keeper.exec.keys import SignedTx, Signer
from keeper.exec.nonce import NonceLease, NonceManager
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics, wei_to_eth

log = get_logger(__name__)

CANCEL_GAS = 21_000
AFTER_GAS_HEADROOM_PERCENT = 150
"""A backrun's pair simulation runs ours at this share of its gas hint (see ``_simulate_after``)."""
_ERROR_SELECTOR = "0x08c379a0"  # Error(string)
_PANIC_SELECTOR = "0x4e487b71"  # Panic(uint256)


class Status(StrEnum):
    MINED = "mined"  # included with status 1
    REVERTED = "reverted"  # included with status 0 (gas paid)
    CANCELLED = "cancelled"  # our 0-value self-transfer took the nonce instead
    DROPPED = "dropped"  # sent, but never included (lost nonce, timeout, rejected)
    SKIPPED = "skipped"  # never sent (simulation, profit, guards, dry run)


@dataclass(frozen=True, slots=True)
class TxRequest:
    """What to send. A planner's ``Plan`` maps onto it field for field.

    ``expected_profit_native`` is the value the transaction captures, in wei of the native
    token, *before* gas: the executor refuses when gas at current fees would reach it, and
    bids a share of it as the priority fee. ``detected_at`` (event-loop time) feeds the
    detection→send latency histogram.
    """

    to: str
    data: bytes
    expected_profit_native: int
    gas_limit: int | None = None
    value: int = 0
    label: str = ""
    detected_at: float | None = None
    known_gas: int | None = None
    """Gas the transaction uses, when the caller already traced it exactly. The simulation
    then checks the call at ``gas_limit`` (catching an out-of-gas) instead of running
    ``eth_estimateGas``, whose binary search costs ~10 executions on the hot path."""
    after: PendingTx | None = None
    """A pending transaction ours must follow (a backrun): simulated as the pair [after, ours]
    with ``eth_simulateV1`` while ``after`` is not mined."""
    exact_fees: Fees | None = None
    """Bid exactly these on the first send instead of the policy's share of the profit."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One signed transaction handed out for the request's nonce."""

    kind: str  # "send" | "replace" | "resend" | "cancel"
    tx_hash: str
    fees: Fees
    gas_limit: int
    block: int  # head when it was handed out


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a request ended."""

    status: Status
    label: str
    reason: str = ""
    tx_hash: str | None = None  # the hash that was mined, else the last one sent
    nonce: int | None = None
    gas_used: int | None = None
    effective_gas_price: int | None = None
    block_number: int | None = None
    replacements: int = 0
    reorgs: int = 0
    attempts: tuple[Attempt, ...] = ()
    simulated_gas: int | None = None
    expected_cost: int | None = None  # wei, simulated gas × effective price at send time
    dry_run: bool = False

    @property
    def hashes(self) -> tuple[str, ...]:
        return tuple(a.tx_hash for a in self.attempts)

    @property
    def gas_cost(self) -> int | None:
        """Wei actually paid, when included."""
        if self.gas_used is None or self.effective_gas_price is None:
            return None
        return self.gas_used * self.effective_gas_price


StillWanted = Callable[[TxRequest, int], Awaitable[bool]]
"""Called once per new block while a request is in flight: False cancels it."""


class Submitter(Protocol):
    """Where signed transactions go: the public mempool or a private relay."""

    route: str
    resubmits: bool  # True when it must be told of every block (a relay's bundles expire)

    async def submit(self, signed: SignedTx, head: int) -> None:
        """Hand out a signed tx; raise RpcResponseError if refused, RpcError if unknown."""
        ...

    async def on_block(self, signed: SignedTx, head: int) -> None:
        """Called on each new head while ``signed`` is not included."""
        ...


class PublicSubmitter:
    """``eth_sendRawTransaction`` to the node: the public mempool. Never retried (a write)."""

    route = "public"
    resubmits = False

    def __init__(self, rpc: JsonRpc, timeout: float = 10.0) -> None:
        self.rpc = rpc
        self.timeout = timeout

    async def submit(self, signed: SignedTx, head: int) -> None:
        await self.rpc.call("eth_sendRawTransaction", [signed.raw_hex], timeout=self.timeout)

    async def on_block(self, signed: SignedTx, head: int) -> None:
        return None


@dataclass(frozen=True, slots=True)
class SenderSettings:
    """Knobs of the executor. ``from_config`` maps the ``[executor]`` section."""

    chain_id: int
    dry_run: bool = False
    replace_after_blocks: int = 3
    receipt_timeout: float = 60.0
    confirmations: int = 2  # 1 = done at the first receipt; 2 = one block on top (reorg check)
    poll_interval: float = 0.5  # head polling when nobody calls notify_head
    gas_margin_percent: int = 20  # gas limit = estimate × (1 + margin), at least the hint
    rpc_timeout: float = 10.0

    @classmethod
    def from_config(cls, cfg: KeeperConfig, **overrides: Any) -> SenderSettings:
        ex = cfg.executor
        base: dict[str, Any] = {
            "chain_id": cfg.network.chain_id,
            "dry_run": ex.dry_run,
            "replace_after_blocks": ex.replace_after_blocks,
            "receipt_timeout": ex.receipt_timeout,
            "rpc_timeout": cfg.network.request_timeout,
            "confirmations": ex.confirmations,
            "poll_interval": ex.poll_interval,
            "gas_margin_percent": ex.gas_margin_percent,
        }
        return cls(**(base | overrides))


@dataclass(frozen=True, slots=True)
class _Simulation:
    reason: str | None  # None when it would succeed
    gas: int
    base_fee: int
    balance: int
    head: int
    return_data: str
    checked_limit: int = 0  # the gas limit the call was checked at (a floor for the send)


@dataclass(slots=True)
class _Flight:
    """The mutable state of one request in flight (private to ``execute``)."""

    req: TxRequest
    lease: NonceLease
    gas: int  # simulated gas
    gas_limit: int
    attempts: list[Attempt] = field(default_factory=list)
    signed: dict[str, SignedTx] = field(default_factory=dict)
    current: SignedTx | None = None
    current_fees: Fees | None = None
    sent_block: int = 0
    cancel_hash: str | None = None
    receipt: dict[str, Any] | None = None
    reorgs: int = 0
    foreign_nonce_strikes: int = 0
    abandoned: str = ""  # why a lost transaction was given up instead of cancelled

    @property
    def replacements(self) -> int:
        return sum(1 for a in self.attempts if a.kind in ("replace", "cancel"))


def revert_reason(exc: RpcResponseError) -> str:
    """A readable revert reason from a node's error: Error(string), Panic(code) or selector."""
    data: Any = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith(_ERROR_SELECTOR):
        with contextlib.suppress(Exception):
            (text,) = abi_decode(["string"], bytes.fromhex(data[10:]))
            return f"reverted: {text}"
    if isinstance(data, str) and data.startswith(_PANIC_SELECTOR):
        with contextlib.suppress(Exception):
            (code,) = abi_decode(["uint256"], bytes.fromhex(data[10:]))
            return f"reverted: panic 0x{code:02x}"
    if isinstance(data, str) and len(data) >= 10 and "revert" in exc.rpc_message.lower():
        return f"{exc.rpc_message} (error selector {data[:10]})"
    return exc.rpc_message


def _pair_failure(simulated: Any) -> str | None:
    """Why an ``eth_simulateV1`` answer for [leader, ours] is not a success of both, or None."""
    try:
        calls = simulated[0]["calls"]
    except (KeyError, IndexError, TypeError):
        if isinstance(simulated, RpcResponseError):
            return f"eth_simulateV1: {simulated.rpc_message}"
        if isinstance(simulated, Exception):
            return f"eth_simulateV1: {type(simulated).__name__}: {simulated}"
        return f"eth_simulateV1: unexpected answer {str(simulated)[:200]}"
    if len(calls) != 2:
        return f"eth_simulateV1: {len(calls)} call results for 2 calls"
    for name, result in (("the transaction to follow", calls[0]), ("ours", calls[1])):
        if hex_to_int(result.get("status", "0x0"), "status") != 1:
            error = result.get("error") or {}
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            return f"{name} fails in the pair: {message or 'reverted'} ({result.get('returnData')}, gas {result.get('gasUsed')})"
    return None


def _is_known(exc: RpcResponseError) -> bool:
    m = exc.rpc_message.lower()
    return "already known" in m or "known transaction" in m or "already imported" in m


def _is_nonce_error(exc: RpcResponseError) -> bool:
    m = exc.rpc_message.lower()
    return "nonce too low" in m or "nonce too high" in m or "invalid nonce" in m


class Sender:
    """The executor for one account.

    ``signer`` may be None only in dry-run mode (then ``address`` says whom to simulate as).
    ``nonces`` defaults to a fresh ``NonceManager``; share one per account if several senders
    ever use the same key (they should not).
    """

    def __init__(
        self,
        rpc: JsonRpc,
        signer: Signer | None,
        policy: FeePolicy,
        guards: Guards,
        settings: SenderSettings,
        *,
        metrics: Metrics | None = None,
        submitter: Submitter | None = None,
        nonces: NonceManager | None = None,
        address: str | None = None,
    ) -> None:
        if signer is None and not settings.dry_run:
            raise ConfigError("a signer is required unless executor.dry_run is set")
        account = signer.address if signer is not None else address
        if account is None:
            raise ConfigError("dry-run sender needs the account address to simulate from")
        self.rpc = rpc
        self.signer = signer
        self.address = account.lower()
        self.policy = policy
        self.guards = guards
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.submitter: Submitter = submitter or PublicSubmitter(rpc, settings.rpc_timeout)
        self.nonces = nonces or NonceManager(rpc, self.address, timeout=settings.rpc_timeout)
        self._new_head = asyncio.Event()
        self._last_head: tuple[int, str] | None = None

    def __repr__(self) -> str:
        return f"Sender({self.address}, route={self.submitter.route}, dry_run={self.settings.dry_run})"

    @property
    def busy(self) -> bool:
        """True while a transaction is in flight."""
        return self.nonces.busy

    def notify_head(self) -> None:
        """Wake the watcher now (call from the head follower); polling is the fallback."""
        self._new_head.set()

    # ---- the one public operation ------------------------------------------------------
    async def execute(self, req: TxRequest, still_wanted: StillWanted | None = None) -> Outcome:
        """Simulate, and unless refused sign, send and see ``req`` through. Never raises for
        chain-side outcomes; transport errors before the first send propagate (nothing sent)."""
        loop = asyncio.get_running_loop()
        refusal = self.guards.refusal(0, loop.time())
        if refusal is not None:
            return self._skip(req, refusal.code, refusal.message)
        async with self.nonces.lease() as lease:
            for _ in range(2):  # a second round only after a nonce error on the first send
                outcome = await self._attempt(req, lease, still_wanted)
                if outcome is not None:
                    return outcome
                lease.nonce = await self.nonces.resync()
                lease.sent = False
            return self._skip(req, "nonce", "nonce kept changing under us; giving up")

    # ---- stages ------------------------------------------------------------------------
    async def _attempt(
        self, req: TxRequest, lease: NonceLease, still_wanted: StillWanted | None
    ) -> Outcome | None:
        loop = asyncio.get_running_loop()
        sim = await self._simulate(req, "pending")
        if sim.reason is not None:
            return self._skip(req, "simulation_reverted", f"simulation: {sim.reason}")
        gas_limit = max(req.gas_limit or 0, sim.checked_limit,
                        sim.gas * (100 + self.settings.gas_margin_percent) // 100)
        if req.exact_fees is not None:
            fees = req.exact_fees
            if fees.max_fee_per_gas < sim.base_fee:
                return self._skip(req, "fee_cap", f"fee cap {fees.max_fee_per_gas} wei below the "
                                  f"base fee {sim.base_fee} wei", gas=sim.gas)
            if not self.policy.allows(fees):
                return self._skip(req, "fee_cap", f"fees {fees} exceed the configured caps",
                                  gas=sim.gas)
        else:
            fees = initial_fees(self.policy, sim.base_fee, req.expected_profit_native, sim.gas)
        cost = gas_cost(sim.gas, fees, sim.base_fee)
        if not is_profitable(req.expected_profit_native, sim.gas, fees, sim.base_fee):
            return self._skip(req, "unprofitable", f"unprofitable: gas {cost} wei ≥ expected "
                              f"profit {req.expected_profit_native} wei", gas=sim.gas)
        refusal = self.guards.refusal(cost, loop.time())
        if refusal is not None:
            return self._skip(req, refusal.code, refusal.message, gas=sim.gas)
        worst = gas_limit * fees.max_fee_per_gas + req.value
        if worst > sim.balance:
            return self._skip(req, "balance", f"balance {sim.balance} wei < worst-case cost "
                              f"{worst} wei", gas=sim.gas)
        if self.settings.dry_run:
            self.metrics.dry_run_would_send.inc()
            log.info("dry run: would send", label=req.label, to=req.to, nonce=lease.nonce,
                     gas=sim.gas, gas_limit=gas_limit, max_fee=fees.max_fee_per_gas,
                     tip=fees.max_priority_fee_per_gas, expected_cost_wei=cost,
                     expected_profit_wei=req.expected_profit_native,
                     simulated_net_profit_wei=req.expected_profit_native - cost)
            return Outcome(Status.SKIPPED, req.label, "dry run: would have sent", nonce=lease.nonce,
                           simulated_gas=sim.gas, expected_cost=cost, dry_run=True)

        flight = _Flight(req, lease, sim.gas, gas_limit)
        signed = self._sign(req.to, req.data, req.value, lease.nonce, gas_limit, fees)
        try:
            await self._submit(flight, "send", signed, fees, gas_limit, sim.head)
        except RpcResponseError as exc:
            if _is_nonce_error(exc):
                log.warning("nonce rejected; resyncing from the node", label=req.label,
                            nonce=lease.nonce, error=exc.rpc_message)
                return None
            return self._fail(flight, Status.DROPPED, f"rejected by node: {exc.rpc_message}")
        if req.detected_at is not None:
            self.metrics.detection_to_send_seconds.observe(max(loop.time() - req.detected_at, 0.0))
        return await self._watch(flight, still_wanted)

    async def _simulate(self, req: TxRequest, block: str) -> _Simulation:
        """The exact call against ``block``, with gas estimate, next base fee and balance
        (for a backrun whose leader is still pending: the pair, see ``_simulate_after``)."""
        if req.after is not None:
            sim = await self._simulate_after(req, req.after)
            if sim is not None:
                return sim
        call: dict[str, Any] = {"from": self.address, "to": req.to,
                                "data": "0x" + req.data.hex(), "value": hex(req.value)}
        if req.known_gas is not None and req.gas_limit is not None:
            gas_check: tuple[str, list[Any]] = (
                "eth_call", [call | {"gas": hex(req.gas_limit)}, block])
        else:
            gas_check = ("eth_estimateGas", [call, block])
        results = await self._batch([
            ("eth_call", [call, block]),
            gas_check,
            ("eth_getBlockByNumber", ["pending", False]),
            ("eth_getBalance", [self.address, block]),
        ])
        ret, est, pending, balance = results
        for r in (pending, balance):
            if isinstance(r, Exception):
                raise r
        if pending is None:
            raise RpcError("eth_getBlockByNumber(pending): no pending block")
        base_fee = hex_to_int(pending.get("baseFeePerGas", "0x0"), "baseFeePerGas")
        head = hex_to_int(pending["number"], "number") - 1
        for r in (ret, est):
            if isinstance(r, RpcResponseError):
                reason = revert_reason(r)
                log.info("simulation refused", label=req.label, to=req.to, block=block,
                         reason=reason)
                return _Simulation(reason, 0, base_fee, 0, head, "")
            if isinstance(r, Exception):
                raise r
        gas = req.known_gas if gas_check[0] == "eth_call" and req.known_gas is not None \
            else hex_to_int(est, "eth_estimateGas")
        return _Simulation(None, gas, base_fee, hex_to_int(balance, "eth_getBalance"), head,
                           str(ret))

    async def _simulate_after(self, req: TxRequest, after: PendingTx) -> _Simulation | None:
        """[``after``, ours] in one simulated block on top of the head (``eth_simulateV1``),
        with the next base fee and our balance, in one batch. None once ``after`` is mined:
        ours is then simulated alone, like any request."""
        call: dict[str, Any] = {"from": self.address, "to": req.to,
                                "input": "0x" + req.data.hex(), "value": hex(req.value)}
        # Checked at a generous limit, which is then the least we send with: the hint is often
        # a model's figure, and a flash-loan callback needs 1/64 more at each call depth than
        # it uses. More gas never makes a call fail; too little does.
        checked_limit = (req.gas_limit * AFTER_GAS_HEADROOM_PERCENT // 100
                         if req.gas_limit is not None else 0)
        if checked_limit:
            call["gas"] = hex(checked_limit)
        results = await self._batch([
            ("eth_simulateV1", [{"blockStateCalls": [{"calls": [after.call(), call]}]}, "latest"]),
            ("eth_getBlockByNumber", ["pending", False]),
            ("eth_getBalance", [self.address, "latest"]),
            ("eth_getTransactionReceipt", [after.tx_hash]),
        ])
        simulated, pending, balance, receipt = results
        for r in (pending, balance, receipt):
            if isinstance(r, Exception):
                raise r
        if receipt is not None:
            return None
        if pending is None:
            raise RpcError("eth_getBlockByNumber(pending): no pending block")
        base_fee = hex_to_int(pending.get("baseFeePerGas", "0x0"), "baseFeePerGas")
        head = hex_to_int(pending["number"], "number") - 1
        reason = _pair_failure(simulated)
        if reason is not None:
            log.info("simulation refused", label=req.label, to=req.to, after=after.tx_hash,
                     reason=reason)
            return _Simulation(reason, 0, base_fee, 0, head, "")
        ours = simulated[0]["calls"][1]
        return _Simulation(None, hex_to_int(ours["gasUsed"], "gasUsed"), base_fee,
                           hex_to_int(balance, "eth_getBalance"), head, str(ours["returnData"]),
                           checked_limit)

    async def _after_pending(self, after: PendingTx) -> bool:
        """True while ``after`` waits in the mempool (not mined, and not dropped or replaced)."""
        receipt, tx = await self._batch([("eth_getTransactionReceipt", [after.tx_hash]),
                                         ("eth_getTransactionByHash", [after.tx_hash])])
        for r in (receipt, tx):
            if isinstance(r, Exception):
                raise r
        return receipt is None and tx is not None

    def _sign(self, to: str, data: bytes, value: int, nonce: int, gas_limit: int,
              fees: Fees) -> SignedTx:
        assert self.signer is not None  # guaranteed by __init__ outside dry run
        return self.signer.sign_transaction({
            "type": 2,
            "chainId": self.settings.chain_id,
            "nonce": nonce,
            "to": bytes.fromhex(to[2:]),
            "value": value,
            "data": data,
            "gas": gas_limit,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        })

    async def _submit(self, flight: _Flight, kind: str, signed: SignedTx, fees: Fees,
                      gas_limit: int, head: int) -> None:
        """Hand out ``signed``. A transport error is not a refusal: the node may hold it."""
        flight.lease.mark_sent()
        flight.signed[signed.tx_hash] = signed
        try:
            await self.submitter.submit(signed, head)
        except RpcResponseError as exc:
            if not _is_known(exc):
                flight.signed.pop(signed.tx_hash, None)
                raise
        except RpcError as exc:
            self.metrics.rpc_errors.labels("eth_sendRawTransaction").inc()
            log.warning("send outcome unknown; watching for it", label=flight.req.label,
                        tx_hash=signed.tx_hash, error=str(exc))
        self.metrics.txs_sent.labels(self.submitter.route).inc()
        if kind in ("replace", "cancel"):
            self.metrics.txs_replaced.inc()
        flight.attempts.append(Attempt(kind, signed.tx_hash, fees, gas_limit, head))
        flight.current, flight.current_fees, flight.sent_block = signed, fees, head
        if kind == "cancel":
            flight.cancel_hash = signed.tx_hash
        log.info("tx handed out", kind=kind, route=self.submitter.route, label=flight.req.label,
                 tx_hash=signed.tx_hash, nonce=flight.lease.nonce, gas_limit=gas_limit,
                 max_fee=fees.max_fee_per_gas, tip=fees.max_priority_fee_per_gas, head=head)

    # ---- watching ----------------------------------------------------------------------
    async def _next_head(self, deadline: float) -> tuple[int, str] | None:
        """Wait for a head that differs (number or hash) from the last one; None at deadline."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            self._new_head.clear()
            try:
                block = await self.rpc.call("eth_getBlockByNumber", ["latest", False],
                                            timeout=self.settings.rpc_timeout)
                head = (hex_to_int(block["number"], "number"), str(block["hash"]))
            except RpcError as exc:
                self.metrics.rpc_errors.labels("eth_getBlockByNumber").inc()
                log.warning("head poll failed", error=str(exc))
                head = self._last_head or (0, "")
            if head != self._last_head:
                self._last_head = head
                return head
            wait = min(self.settings.poll_interval, max(deadline - loop.time(), 0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_head.wait(), wait)
        return None

    async def _watch(self, flight: _Flight, still_wanted: StillWanted | None) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.receipt_timeout
        timed_out = False
        while True:
            head = await self._next_head(deadline)
            if head is None:
                if flight.receipt is not None or timed_out:
                    break
                # Out of time without a receipt: try to free the nonce once, then give it
                # ``replace_after_blocks`` more blocks' worth of polling.
                timed_out = True
                await self._cancel(flight, self._last_head[0] if self._last_head else 0,
                                   "no receipt within receipt_timeout")
                deadline = loop.time() + self.settings.poll_interval * (
                    self.settings.replace_after_blocks + 1)
                continue
            number = head[0]
            try:
                done = await self._on_block(flight, number, still_wanted)
            except RpcError as exc:
                self.metrics.rpc_errors.labels("watch").inc()
                log.warning("receipt check failed; retrying next block", error=str(exc),
                            label=flight.req.label)
                continue
            if done is not None:
                return done
        if flight.receipt is not None:
            return self._finish(flight, flight.receipt)
        return self._fail(flight, Status.DROPPED,
                          f"not mined within {self.settings.receipt_timeout:g}s; nonce "
                          f"{flight.lease.nonce} may still be pending")

    async def _check(self, flight: _Flight) -> tuple[dict[str, Any] | None, int]:
        """Receipts of every hash sent for this nonce and the mined nonce, in one batch."""
        hashes = list(flight.signed)
        results = await self._batch(
            [("eth_getTransactionReceipt", [h]) for h in hashes]
            + [("eth_getTransactionCount", [self.address, "latest"])]
        )
        mined_nonce = hex_to_int(results[-1], "eth_getTransactionCount")
        for r in results[:-1]:
            if isinstance(r, Exception):
                raise r
            if r is not None and r.get("blockHash"):
                return dict(r), mined_nonce
        return None, mined_nonce

    async def _on_block(self, flight: _Flight, head: int,
                        still_wanted: StillWanted | None) -> Outcome | None:
        receipt, mined_nonce = await self._check(flight)
        if receipt is not None:
            flight.receipt = receipt
            flight.lease.mark_used()
            included = hex_to_int(receipt["blockNumber"], "blockNumber")
            deep_enough = head - included + 1 >= self.settings.confirmations
            if deep_enough and await self._still_canonical(receipt):
                return self._finish(flight, receipt)
            return None

        if flight.receipt is not None:
            # We had a receipt and it is gone: the block was reorged out.
            flight.receipt = None
            flight.reorgs += 1
            log.warning("receipt dropped by a reorg; re-checking", label=flight.req.label,
                        tx_hash=flight.current.tx_hash if flight.current else None, head=head)
            if mined_nonce <= flight.lease.nonce:
                flight.lease.used = False
                return await self._after_reorg(flight, head)

        if mined_nonce > flight.lease.nonce:
            # Our nonce is used, yet none of our hashes has a receipt: a node lagging on
            # receipts, or another sender on this key. Look twice before calling it lost.
            flight.foreign_nonce_strikes += 1
            if flight.foreign_nonce_strikes >= 2:
                flight.lease.mark_used()
                return self._fail(flight, Status.DROPPED,
                                  f"nonce {flight.lease.nonce} was used by another transaction")
            return None

        if flight.req.after is not None and await self._after_pending(flight.req.after):
            # The tx we follow is not mined yet: at the head ours would revert, and a higher
            # tip would put ours before it. Wait; count the replacement blocks from its mining.
            flight.sent_block = head
            return None

        if still_wanted is not None and flight.cancel_hash is None:
            try:
                wanted = await still_wanted(flight.req, head)
            except Exception:
                # The caller's hook failing must not strand a transaction in flight: keep it,
                # the chain (simulation before any replacement) still guards it.
                log.exception("still_wanted hook failed; keeping the request",
                              label=flight.req.label)
                wanted = True
            if not wanted:
                await self._cancel(flight, head, "no longer wanted")
                if flight.abandoned:
                    return self._fail(flight, Status.CANCELLED,
                                      f"lost by the node and {flight.abandoned}", failure=False)
                return None

        assert flight.current is not None
        if self.submitter.resubmits and flight.cancel_hash is None:
            # A relay forgets bundles after their target block: re-check before each resubmit.
            sim = await self._simulate(flight.req, "latest")
            if sim.reason is not None:
                # It may have been included since _check: look once more before giving up.
                flight.receipt, _ = await self._check(flight)
                if flight.receipt is not None:
                    return None
                return self._fail(flight, Status.DROPPED, f"no longer valid: {sim.reason}",
                                  failure=False)
            await self._quiet(self.submitter.on_block(flight.current, head), "resubmit")

        if head - flight.sent_block >= self.settings.replace_after_blocks:
            await self._replace(flight, head)
        return None

    async def _still_canonical(self, receipt: dict[str, Any]) -> bool:
        block = await self.rpc.call("eth_getBlockByNumber", [receipt["blockNumber"], False],
                                    timeout=self.settings.rpc_timeout)
        return block is not None and str(block["hash"]).lower() == str(receipt["blockHash"]).lower()

    async def _after_reorg(self, flight: _Flight, head: int) -> Outcome | None:
        """Re-simulate; resend the same signed tx if still valid, else cancel it."""
        assert flight.current is not None and flight.current_fees is not None
        if flight.cancel_hash is not None:
            signed, kind = flight.signed[flight.cancel_hash], "resend"
        else:
            sim = await self._simulate(flight.req, "latest")
            if sim.reason is not None:
                # On a real node the reorged tx is back in the mempool and would now revert.
                await self._cancel(flight, head, f"after reorg: {sim.reason}")
                return None
            signed, kind = flight.current, "resend"
        try:
            await self._submit(flight, kind, signed, flight.current_fees, flight.gas_limit, head)
        except RpcResponseError as exc:
            log.warning("resend after reorg refused", error=exc.rpc_message,
                        label=flight.req.label)
        return None

    async def _replace(self, flight: _Flight, head: int) -> None:
        """Same nonce, fee cap and tip +≥10% (and at least today's price), if still worth it."""
        assert flight.current_fees is not None
        if flight.cancel_hash is not None:
            await self._cancel(flight, head, "cancel not mined yet")
            return
        sim = await self._simulate(flight.req, "latest")
        if sim.reason is not None:
            await self._cancel(flight, head, f"would now revert: {sim.reason}")
            return
        fees = replacement_fees(self.policy, flight.current_fees, sim.base_fee,
                                flight.req.expected_profit_native, flight.gas)
        if not self.policy.allows(fees):
            # We may not bid more. If the node has lost our transaction (evicted from its
            # mempool, a restart), hand the same signed bytes out again: same nonce, same
            # hash, nothing new is spent; otherwise it is merely waiting for its price.
            assert flight.current is not None
            known = await self.rpc.call("eth_getTransactionByHash", [flight.current.tx_hash],
                                        timeout=self.settings.rpc_timeout)
            if known is None:
                log.warning("our tx is unknown to the node and the caps allow no bump: "
                            "broadcasting it again", label=flight.req.label,
                            tx_hash=flight.current.tx_hash)
                try:
                    await self._submit(flight, "resend", flight.current, flight.current_fees,
                                       flight.gas_limit, head)
                except RpcResponseError as exc:
                    log.warning("rebroadcast refused", error=exc.rpc_message,
                                label=flight.req.label)
                    flight.sent_block = head
                return
            log.warning("replacement would exceed the fee caps; waiting", label=flight.req.label,
                        max_fee=fees.max_fee_per_gas, tip=fees.max_priority_fee_per_gas)
            flight.sent_block = head
            return
        if not is_profitable(flight.req.expected_profit_native, flight.gas, fees, sim.base_fee):
            log.warning("replacement would be unprofitable; waiting", label=flight.req.label)
            flight.sent_block = head
            return
        signed = self._sign(flight.req.to, flight.req.data, flight.req.value, flight.lease.nonce,
                            flight.gas_limit, fees)
        try:
            await self._submit(flight, "replace", signed, fees, flight.gas_limit, head)
        except RpcResponseError as exc:
            log.warning("replacement refused; keeping the previous tx", error=exc.rpc_message,
                        label=flight.req.label)
            flight.sent_block = head

    async def _cancel(self, flight: _Flight, head: int, why: str) -> None:
        """Take the nonce with a 0-value transfer to ourselves, fees bumped ≥10%."""
        if flight.current_fees is None:
            return
        fees = bump(flight.current_fees)
        if not self.policy.allows(fees):
            assert flight.current is not None
            known = await self.rpc.call("eth_getTransactionByHash", [flight.current.tx_hash],
                                        timeout=self.settings.rpc_timeout)
            if known is None:
                # The node lost our transaction: nothing will spend the nonce, so there is
                # nothing to cancel. Abandon it; the nonce is re-read before the next send.
                flight.abandoned = why
                return
            # A cancel is a 21,000-gas self-transfer: even 10% above the caps it costs a small
            # fraction of letting a ~500k-gas liquidation revert.
            log.warning("cancelling above the fee caps", label=flight.req.label, why=why,
                        max_fee=fees.max_fee_per_gas, tip=fees.max_priority_fee_per_gas)
        log.info("cancelling", label=flight.req.label, nonce=flight.lease.nonce, why=why)
        signed = self._sign(self.address, b"", 0, flight.lease.nonce, CANCEL_GAS, fees)
        try:
            await self._submit(flight, "cancel", signed, fees, CANCEL_GAS, head)
        except RpcResponseError as exc:
            log.warning("cancel refused", error=exc.rpc_message, label=flight.req.label)
            flight.sent_block = head

    # ---- endings -----------------------------------------------------------------------
    def _finish(self, flight: _Flight, receipt: dict[str, Any]) -> Outcome:
        loop = asyncio.get_running_loop()
        tx_hash = str(receipt["transactionHash"]).lower()
        gas_used = hex_to_int(receipt["gasUsed"], "gasUsed")
        price = hex_to_int(receipt["effectiveGasPrice"], "effectiveGasPrice")
        ok = hex_to_int(receipt["status"], "status") == 1
        self.guards.budget.record(gas_used * price, loop.time())
        self.metrics.gas_spent_eth.inc(wei_to_eth(gas_used * price))
        if tx_hash == flight.cancel_hash:
            status, reason = Status.CANCELLED, "cancelled"
            self.metrics.txs_dropped.inc()
        elif ok:
            status, reason = Status.MINED, ""
            self.metrics.txs_mined.inc()
            self.guards.breaker.record_success()
        else:
            status, reason = Status.REVERTED, "reverted on chain"
            self.metrics.txs_reverted.inc()
            self.guards.breaker.record_failure(f"{flight.req.label or 'tx'} reverted on chain")
        self.metrics.circuit_breaker_open.set(1 if self.guards.breaker.is_open else 0)
        outcome = Outcome(
            status, flight.req.label, reason, tx_hash=tx_hash, nonce=flight.lease.nonce,
            gas_used=gas_used, effective_gas_price=price,
            block_number=hex_to_int(receipt["blockNumber"], "blockNumber"),
            replacements=flight.replacements, reorgs=flight.reorgs,
            attempts=tuple(flight.attempts), simulated_gas=flight.gas)
        log.info("tx final", status=str(status), label=flight.req.label, tx_hash=tx_hash,
                 nonce=flight.lease.nonce, block=outcome.block_number, gas_used=gas_used,
                 effective_gas_price=price, replacements=outcome.replacements, reorgs=flight.reorgs)
        return outcome

    def _fail(self, flight: _Flight, status: Status, reason: str, *, failure: bool = True) -> Outcome:
        if failure:
            self.guards.breaker.record_failure(reason)
        self.metrics.txs_dropped.inc()
        self.metrics.circuit_breaker_open.set(1 if self.guards.breaker.is_open else 0)
        log.warning("tx not mined", status=str(status), label=flight.req.label, reason=reason,
                    nonce=flight.lease.nonce, hashes=[a.tx_hash for a in flight.attempts])
        return Outcome(status, flight.req.label, reason,
                       tx_hash=flight.attempts[-1].tx_hash if flight.attempts else None,
                       nonce=flight.lease.nonce, replacements=flight.replacements,
                       reorgs=flight.reorgs, attempts=tuple(flight.attempts),
                       simulated_gas=flight.gas)

    def _skip(self, req: TxRequest, code: str, reason: str, *, gas: int | None = None) -> Outcome:
        self.metrics.rejections.labels(code).inc()
        log.info("not sending", label=req.label, code=code, reason=reason)
        return Outcome(Status.SKIPPED, req.label, reason, simulated_gas=gas,
                       dry_run=self.settings.dry_run)

    # ---- io helpers --------------------------------------------------------------------
    async def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        try:
            return await self.rpc.batch(calls, timeout=self.settings.rpc_timeout,
                                        return_exceptions=True)
        except RpcError:
            self.metrics.rpc_errors.labels("batch").inc()
            raise

    async def _quiet(self, aw: Awaitable[None], what: str) -> None:
        """Await a best-effort write (a relay resubmission); log and count failures."""
        try:
            await aw
        except (RpcError, RpcResponseError) as exc:
            self.metrics.rpc_errors.labels(what).inc()
            log.warning(f"{what} failed", error=str(exc))
