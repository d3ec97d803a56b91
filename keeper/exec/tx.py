"""The executor's value types: what to send, what to follow, each send, and how it ended.

Frozen dataclasses only; the state machine that produces them is ``keeper.exec.sender``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from keeper.chain.types import hex_to_int
from keeper.domain.fees import Fees


class Status(StrEnum):
    MINED = "mined"  # included with status 1
    REVERTED = "reverted"  # included with status 0 (gas paid)
    CANCELLED = "cancelled"  # our 0-value self-transfer took the nonce instead
    DROPPED = "dropped"  # sent, but never included (lost nonce, timeout, rejected)
    SKIPPED = "skipped"  # never sent (simulation, profit, guards, dry run)


@dataclass(frozen=True, slots=True)
class PendingTx:
    """A transaction in the mempool that ours must follow in the same block."""

    tx_hash: str
    sender: str
    to: str
    data: bytes
    value: int
    gas: int
    fees: Fees

    @classmethod
    def from_rpc(cls, tx: dict[str, Any]) -> PendingTx:
        """From an ``eth_getTransactionByHash`` answer (EIP-1559 or legacy)."""
        if tx.get("maxFeePerGas") is not None:
            fees = Fees(hex_to_int(tx["maxFeePerGas"], "maxFeePerGas"),
                        hex_to_int(tx["maxPriorityFeePerGas"], "maxPriorityFeePerGas"))
        else:
            # A legacy gas price is both the cap and the tip.
            price = hex_to_int(tx["gasPrice"], "gasPrice")
            fees = Fees(price, price)
        data = str(tx.get("input") or tx.get("data") or "0x")
        return cls(tx_hash=str(tx["hash"]).lower(), sender=str(tx["from"]).lower(),
                   to=str(tx["to"]).lower(), data=bytes.fromhex(data[2:]),
                   value=hex_to_int(tx.get("value", "0x0"), "value"),
                   gas=hex_to_int(tx["gas"], "gas"), fees=fees)

    def call(self) -> dict[str, Any]:
        """As an ``eth_simulateV1`` call (no fee fields: the simulation does not charge them)."""
        return {"from": self.sender, "to": self.to, "input": "0x" + self.data.hex(),
                "value": hex(self.value), "gas": hex(self.gas)}


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
class SendAttempt:
    """One signed transaction handed out for the request's nonce."""

    kind: str  # "send" | "replace" | "resend" | "cancel"
    tx_hash: str
    fees: Fees
    gas_limit: int
    block: int  # head when it was handed out


@dataclass(frozen=True, slots=True)
class TxOutcome:
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
    attempts: tuple[SendAttempt, ...] = ()
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
