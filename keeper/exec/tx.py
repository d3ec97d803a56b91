"""The executor's value types: what to send, what to follow, each send, and how it ended.

Frozen dataclasses only; the state machine that produces them is ``keeper.exec.sender``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from keeper.chain.types import PendingTx
from keeper.domain.fees import Fees
from keeper.exec.order import Turn


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
    flagged_at: float | None = None
    """When the scanner first flagged the account (event-loop time): flag→send histogram."""
    block_seen_at: float | None = None
    """When the block that made the account liquidatable arrived: block→send histogram."""
    known_gas: int | None = None
    """Gas the transaction uses, when the caller already traced it exactly. The simulation
    then checks the call at ``gas_limit`` (catching an out-of-gas) instead of running
    ``eth_estimateGas``, whose binary search costs ~10 executions on the hot path."""
    after: PendingTx | None = None
    """A pending transaction ours must follow (a backrun): simulated as the pair [after, ours]
    with ``eth_simulateV1`` while ``after`` is not mined."""
    exact_fees: Fees | None = None
    """Bid exactly these on the first send instead of the policy's share of the profit."""
    turn: Turn | None = field(default=None, compare=False)
    """Its place among sends planned together: the nonce is claimed in that order."""
    shares: frozenset[str] | None = None
    """What on chain its outcome depends on that another send of ours may change (the pools
    it trades in, an isolated collateral's total debt); None: anything. After waiting its turn it is simulated again only if one
    handed out meanwhile shares something with it (a resimulation on the pending state was
    37 ms p50 a send on the 1,000-borrower crash, one after the other)."""


@dataclass(frozen=True, slots=True)
class SendAttempt:
    """One signed transaction handed out for the request's nonce."""

    kind: str  # "send" | "replace" | "resend" | "cancel"
    tx_hash: str
    fees: Fees
    gas_limit: int
    block: int  # head when it was handed out


SIMULATION_REVERTED = "simulation_reverted"
"""The skip code of a request its simulation refused: the chain's state is not what the plan
was made on (a rival was first, or the book is wrong about the account)."""


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
    rolled_back: bool = False  # given up because a rollback went below its nonce: plan again
    fenced: bool = False  # the send gate refused (another replica holds the sender lease):
    # nothing was sent and the account is not at fault, so it does not back off
    head: int | None = None  # the node's head the simulation ran on (a skip after it)
    code: str = ""  # a skip's code (the rejection metric's label): why it was never sent

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
