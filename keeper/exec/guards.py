"""What stops the executor from sending: spend budget, circuit breaker, kill switch.

Plain state objects with no IO and no clock of their own: the caller passes ``now`` (seconds,
e.g. ``loop.time()``), which keeps them deterministic under test. When a guard refuses, the
executor skips the transaction and says why; scanning and planning go on, so the keeper keeps
reporting what it would have done.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


class SpendBudget:
    """Gas spent (wei) within a rolling window, by default one hour."""

    def __init__(self, limit_wei: int, window: float = 3600.0) -> None:
        if limit_wei < 0 or window <= 0:
            raise ValueError("budget limit must be ≥ 0 and window > 0")
        self.limit_wei = limit_wei
        self.window = window
        self._spends: deque[tuple[float, int]] = deque()
        self._total = 0

    def _expire(self, now: float) -> None:
        while self._spends and self._spends[0][0] <= now - self.window:
            _, wei = self._spends.popleft()
            self._total -= wei

    def record(self, cost_wei: int, now: float) -> None:
        """Count gas actually paid (mined or reverted: a revert costs gas too)."""
        if cost_wei < 0:
            raise ValueError("cost must be non-negative")
        self._expire(now)
        self._spends.append((now, cost_wei))
        self._total += cost_wei

    def spent(self, now: float) -> int:
        """Wei spent within the window ending at ``now``."""
        self._expire(now)
        return self._total

    def remaining(self, now: float) -> int:
        return max(self.limit_wei - self.spent(now), 0)

    def allows(self, cost_wei: int, now: float) -> bool:
        """True when spending ``cost_wei`` more keeps the window within the limit."""
        return self.spent(now) + cost_wei <= self.limit_wei


class CircuitBreaker:
    """Opens after ``max_consecutive`` failures in a row (reverts on chain, rejected sends,
    lost transactions, unexpected errors at a task boundary); any success closes the count
    again. A transient node error is never a failure: callers never record one.

    Without ``cooldown`` it stays open until ``reset()``: repeated failures mean something is
    wrong that a human should look at. With ``cooldown``, ``close_if_quiet(now)`` closes it
    once ``cooldown`` seconds passed without a failure, half-open: the next failure opens it
    again at once, a success closes the count.

    A simulation that reverts is *not* a failure: nothing was sent, and losing a race to
    another liquidator is the normal case.
    """

    def __init__(self, max_consecutive: int, cooldown: float | None = None) -> None:
        if max_consecutive <= 0:
            raise ValueError("max_consecutive must be positive")
        if cooldown is not None and cooldown <= 0:
            raise ValueError("cooldown must be positive")
        self.max_consecutive = max_consecutive
        self.cooldown = cooldown
        self.consecutive = 0
        self.last_reason = ""
        self.last_failure_at: float | None = None
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def record_success(self) -> None:
        if not self._open:
            self.consecutive = 0

    def record_failure(self, reason: str, now: float | None = None) -> None:
        self.consecutive += 1
        self.last_reason = reason
        self.last_failure_at = now
        if self.consecutive >= self.max_consecutive:
            self._open = True

    def close_if_quiet(self, now: float) -> bool:
        """Close an open breaker after ``cooldown`` quiet seconds; True when it closed now."""
        if not self._open or self.cooldown is None:
            return False
        if self.last_failure_at is not None and now - self.last_failure_at < self.cooldown:
            return False
        self._open = False
        self.consecutive = self.max_consecutive - 1  # half-open: one more failure reopens
        return True

    def reset(self) -> None:
        """Close the breaker (an operator decision)."""
        self._open = False
        self.consecutive = 0
        self.last_reason = ""
        self.last_failure_at = None


@dataclass(slots=True)
class KillSwitch:
    """Halts sending at once. Starts from ``executor.kill_switch``; can be engaged at run time."""

    engaged: bool = False
    reason: str = ""

    def engage(self, reason: str) -> None:
        self.engaged = True
        self.reason = reason

    def release(self) -> None:
        self.engaged = False
        self.reason = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a guard (or the fee admission) refused: ``code`` is a short metric label,
    ``message`` the detail."""

    code: str  # "kill_switch" | "circuit_breaker" | "gas_budget"; admission: "fee_cap" ...
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class Guards:
    """The three guards together; ``refusal`` answers "may we send this?"."""

    budget: SpendBudget
    breaker: CircuitBreaker
    kill: KillSwitch = field(default_factory=KillSwitch)

    @classmethod
    def from_config(
        cls, gas_budget_per_hour_wei: int, max_consecutive_failures: int, kill_switch: bool
    ) -> Guards:
        return cls(
            budget=SpendBudget(gas_budget_per_hour_wei),
            breaker=CircuitBreaker(max_consecutive_failures),
            kill=KillSwitch(kill_switch, "executor.kill_switch" if kill_switch else ""),
        )

    def _stops(self) -> list[Refusal]:
        out = []
        if self.kill.engaged:
            out.append(Refusal("kill_switch",
                               f"kill switch engaged ({self.kill.reason or 'no reason given'})"))
        if self.breaker.is_open:
            out.append(Refusal("circuit_breaker",
                               f"circuit breaker open after {self.breaker.consecutive} consecutive "
                               f"failures (last: {self.breaker.last_reason})"))
        return out

    def _over_budget(self, now: float) -> Refusal:
        return Refusal("gas_budget",
                       f"gas budget exhausted: {self.budget.spent(now)} wei spent in the "
                       f"last {self.budget.window:g}s, limit {self.budget.limit_wei}")

    def halts(self, now: float) -> list[Refusal]:
        """What halts every send right now, whatever it costs (for readiness and metrics)."""
        out = self._stops()
        if self.budget.remaining(now) == 0:
            out.append(self._over_budget(now))
        return out

    def refusal(self, cost_wei: int, now: float) -> Refusal | None:
        """Why sending a transaction expected to cost ``cost_wei`` is refused, or None."""
        stops = self._stops()
        if stops:
            return stops[0]
        if not self.budget.allows(cost_wei, now):
            return self._over_budget(now)
        return None
