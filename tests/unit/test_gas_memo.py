"""The remembered gas of a liquidation shape: given only to a plan whose gross profit pays twice
that gas, per shape (contract, pair, funding, route), bounded, and forgotten on demand."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keeper.domain.plan import Plan
from keeper.domain.quote import UniswapV2Quoter
from keeper.domain.swap_route import SwapHop, SwapLeg, Venue
from keeper.exec import gas_memo
from keeper.exec.executor import LiquidationExecutor, Prepared
from keeper.exec.gas_memo import GasMemo, shape
from keeper.exec.order import SendOrder, Turn
from keeper.exec.tx import Status, TxOutcome, TxRequest
from keeper.obs.metrics import Metrics
from tests.unit.test_planner import DEEP_WETH_USDC, devnet_user_plan, reserves


def plan() -> Plan:
    made = devnet_user_plan(UniswapV2Quoter(reserves(DEEP_WETH_USDC)))
    assert isinstance(made, Plan) and made.gas_cost > 0
    return made


def priced(p: Plan, gross: int) -> Plan:
    """``p`` with gross profit ``gross`` (debt units), its modelled gas cost unchanged."""
    return replace(p, gross_profit=gross, net_profit=gross - p.gas_cost)


def test_only_a_plan_whose_profit_pays_twice_the_remembered_gas_goes_without_a_trace() -> None:
    memo, p = GasMemo(), plan()
    assert memo.usable(p) is None  # never traced: trace it
    memo.learn(p, p.gas_estimate)
    # Twice the modelled gas cost, exactly: usable; a unit less: trace it.
    assert memo.usable(priced(p, 2 * p.gas_cost)) == p.gas_estimate
    assert memo.usable(priced(p, 2 * p.gas_cost - 1)) is None
    # A remembered figure above the model's raises the bar in proportion.
    memo.learn(p, p.gas_estimate * 3 // 2)
    assert memo.usable(priced(p, 2 * p.gas_cost)) is None
    assert memo.usable(priced(p, 3 * p.gas_cost)) == p.gas_estimate * 3 // 2


def test_the_figure_is_the_most_of_the_last_eight() -> None:
    memo, p = GasMemo(), priced(plan(), 10**30)
    memo.learn(p, 520_000)
    for _ in range(7):
        memo.learn(p, 440_000)
    assert memo.usable(p) == 520_000  # a lower figure after a higher one keeps the higher
    memo.learn(p, 440_000)  # the 520k is now nine figures back
    assert memo.usable(p) == 440_000


OTHER = "0x" + "66" * 20


def with_params(p: Plan, **changes: Any) -> Plan:
    return replace(p, params=replace(p.params, **changes))


def test_each_shape_has_its_own_figure() -> None:
    memo, p = GasMemo(), priced(plan(), 10**30)
    memo.learn(p, 500_000)
    v3_leg = SwapLeg((SwapHop(Venue.UNISWAP_V3, "0x" + "77" * 20, p.params.collateral_asset,
                              p.params.debt_asset, 3000),))
    for other in (with_params(p, flash_loan=not p.params.flash_loan),
                  with_params(p, swap_path=(p.params.collateral_asset, "0x" + "55" * 20,
                                           p.params.debt_asset)),
                  with_params(p, swap_path=(), swap_legs=(v3_leg,)),
                  with_params(p, swap_path=(), keep_collateral=True, flash_loan=False),
                  with_params(p, debt_asset=OTHER, swap_path=(p.params.collateral_asset, OTHER)),
                  replace(p, liquidator="0x" + "99" * 20)):
        assert shape(other) != shape(p)
        assert memo.usable(other) is None
    # Another account of the same shape, of another size: the same figure.
    other_user = with_params(p, user="0x" + "12" * 20, debt_to_cover=1, min_profit=3)
    assert memo.usable(other_user) == 500_000
    # A kept order and a V3 leg have no swap path alike: not one shape.
    kept, v3 = with_params(p, swap_path=(), keep_collateral=True, flash_loan=False), \
        with_params(p, swap_path=(), swap_legs=(v3_leg,))
    assert shape(kept) != shape(v3)


def test_bounded_and_no_figure_from_nothing() -> None:
    memo, p = GasMemo(), priced(plan(), 10**30)
    memo.learn(p, 0)  # a receipt without gas says nothing
    assert memo.usable(p) is None
    for i in range(gas_memo._KEPT + 10):
        memo.learn(replace(p, liquidator=f"0x{i:040x}"), 400_000)
    assert len(memo) == gas_memo._KEPT
    assert memo.usable(replace(p, liquidator=f"0x{0:040x}")) is None  # the oldest went
    assert memo.usable(replace(p, liquidator=f"0x{gas_memo._KEPT + 9:040x}")) == 400_000


class _Sender:
    """Refuses every request in its simulation, as the chain does."""

    def __init__(self, reason: str) -> None:
        self.reason, self.requests = reason, []  # type: ignore[var-annotated]

    async def execute(self, req: TxRequest, still_wanted: Any = None) -> TxOutcome:
        self.requests.append(req)
        return TxOutcome(Status.SKIPPED, req.label, f"simulation: {self.reason}", head=100)


def executor(sender: _Sender, traced: int) -> LiquidationExecutor:
    ex = LiquidationExecutor(None, sender, Metrics(), owner="0x" + "aa" * 20,  # type: ignore[arg-type]
                             native_asset="0x" + "bb" * 20)

    async def predict_gas(*_: Any, **__: Any) -> tuple[int, bool]:
        return traced, True

    ex.predict_gas = predict_gas  # type: ignore[method-assign]
    return ex


def remembered(p: Plan, gas: int, turn: Turn | None = None) -> Prepared:
    req = TxRequest(to=p.liquidator, data=b"\x01", expected_profit_native=1, label="l",
                    gas_limit=gas * 130 // 100, known_gas=gas, turn=turn)
    return Prepared(p.user, p, req, gas, None, remembered_gas=True)  # type: ignore[arg-type]


async def test_a_refusal_at_a_figure_that_covers_the_call_is_not_tried_again() -> None:
    sender, p = _Sender("reverted: InsufficientProfit(1, 2)"), priced(plan(), 10**30)
    ex = executor(sender, traced=480_000)
    done = await ex.send(remembered(p, 520_000))
    assert len(sender.requests) == 1 and done.outcome is not None
    assert done.outcome.status is Status.SKIPPED and done.predicted_gas == 480_000
    assert ex.gas_memo.usable(p) == 480_000  # the trace is now a figure of its shape


async def test_a_refusal_at_a_figure_short_of_the_call_is_tried_at_the_traced_one() -> None:
    sender, p = _Sender("execution reverted"), priced(plan(), 10**30)
    ex = executor(sender, traced=580_000)
    order = SendOrder()
    first = order.turn()
    later = [order.turn() for _ in range(3)]  # planned after it; they may send meanwhile
    await ex.send(remembered(p, 60_000, first))
    assert [r.known_gas for r in sender.requests] == [60_000, 580_000]
    assert sender.requests[1].gas_limit == 580_000 * 130 // 100
    # The retry waits behind every send planned so far, not in its first place.
    retry = sender.requests[1].turn
    assert retry is not None and retry.ticket > max(t.ticket for t in later)
