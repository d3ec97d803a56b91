"""Spend budget over a rolling hour, circuit breaker, kill switch."""

from __future__ import annotations

import pytest

from keeper.exec.guards import CircuitBreaker, Guards, KillSwitch, SpendBudget


def test_budget_rolls_over_the_window() -> None:
    budget = SpendBudget(limit_wei=100, window=3600)
    budget.record(60, now=0)
    assert budget.spent(10) == 60
    assert budget.allows(40, now=10)
    assert not budget.allows(41, now=10)
    budget.record(40, now=1000)
    assert budget.remaining(1000) == 0
    # the first spend leaves the window exactly one hour later
    assert budget.spent(3599.9) == 100
    assert budget.spent(3600) == 40
    assert budget.spent(4600) == 0
    with pytest.raises(ValueError):
        budget.record(-1, 0)
    with pytest.raises(ValueError):
        SpendBudget(limit_wei=1, window=0)


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(max_consecutive=3)
    breaker.record_failure("a")
    breaker.record_failure("b")
    breaker.record_success()
    assert breaker.consecutive == 0 and not breaker.is_open
    for reason in ("x", "y", "z"):
        breaker.record_failure(reason)
    assert breaker.is_open and breaker.last_reason == "z"
    breaker.record_success()  # a late success does not close an open breaker
    assert breaker.is_open
    breaker.reset()
    assert not breaker.is_open and breaker.consecutive == 0
    with pytest.raises(ValueError):
        CircuitBreaker(0)


def test_kill_switch() -> None:
    kill = KillSwitch()
    assert not kill.engaged
    kill.engage("operator")
    assert kill.engaged and kill.reason == "operator"
    kill.release()
    assert not kill.engaged


def test_guards_refusal_order_and_codes() -> None:
    guards = Guards.from_config(gas_budget_per_hour_wei=1000, max_consecutive_failures=1,
                                kill_switch=False)
    assert guards.refusal(1000, now=0) is None
    over = guards.refusal(1001, now=0)
    assert over is not None and over.code == "gas_budget"
    guards.breaker.record_failure("reverted")
    open_ = guards.refusal(0, now=0)
    assert open_ is not None and open_.code == "circuit_breaker" and "reverted" in str(open_)
    guards.kill.engage("maintenance")
    killed = guards.refusal(0, now=0)
    assert killed is not None and killed.code == "kill_switch"
    from_config = Guards.from_config(1, 1, kill_switch=True)
    refusal = from_config.refusal(0, 0)
    assert refusal is not None and "executor.kill_switch" in refusal.message


def test_a_breaker_with_a_cooldown_closes_half_open_after_a_quiet_period() -> None:
    breaker = CircuitBreaker(2, cooldown=60)
    breaker.record_failure("a", now=0)
    breaker.record_failure("b", now=10)
    assert breaker.is_open
    assert not breaker.close_if_quiet(69)  # 59 s since the last failure
    assert breaker.close_if_quiet(70) and not breaker.is_open
    breaker.record_failure("c", now=71)  # half-open: one more failure opens it again
    assert breaker.is_open
    assert breaker.close_if_quiet(131)
    breaker.record_success()
    breaker.record_failure("d", now=132)
    assert not breaker.is_open and breaker.consecutive == 1
    # Without a cooldown only reset() closes it.
    manual = CircuitBreaker(1)
    manual.record_failure("x", now=0)
    assert not manual.close_if_quiet(1e9) and manual.is_open


def test_halts_say_what_stops_every_send() -> None:
    guards = Guards.from_config(100, 1, kill_switch=False)
    assert guards.halts(0) == []
    guards.budget.record(100, now=0)
    guards.breaker.record_failure("reverted", now=0)
    guards.kill.engage("operator")
    assert [h.code for h in guards.halts(1)] == ["kill_switch", "circuit_breaker", "gas_budget"]
    assert "operator" in guards.halts(1)[0].message
    refusal = guards.refusal(1, 1)
    assert refusal is not None and refusal.code == "kill_switch"
