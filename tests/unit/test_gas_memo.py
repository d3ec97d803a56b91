"""The remembered gas of a liquidation shape: given only to a plan whose gross profit pays twice
that gas, per shape (contract, pair, funding, route), bounded, and forgotten on demand."""

from __future__ import annotations

from dataclasses import replace

from keeper.domain.plan import Plan
from keeper.domain.quote import UniswapV2Quoter
from keeper.exec import gas_memo
from keeper.exec.gas_memo import GasMemo, shape
from tests.unit.test_account import USDC, WETH
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


def test_each_shape_has_its_own_figure() -> None:
    memo, p = GasMemo(), priced(plan(), 10**30)
    memo.learn(p, 500_000)
    for other in (replace(p, use_flash_loan=not p.use_flash_loan),
                  replace(p, swap_path=(p.collateral_asset, WETH, USDC)),
                  replace(p, debt_asset=WETH),
                  replace(p, liquidator="0x" + "99" * 20)):
        assert shape(other) != shape(p)
        assert memo.usable(other) is None
    # Another account of the same shape, of another size: the same figure.
    assert memo.usable(replace(p, user="0x" + "12" * 20, debt_to_cover=1)) == 500_000


def test_forgotten_bounded_and_no_figure_from_nothing() -> None:
    memo, p = GasMemo(), priced(plan(), 10**30)
    memo.learn(p, 0)  # a receipt without gas says nothing
    assert memo.usable(p) is None
    memo.learn(p, 400_000)
    memo.forget(p)
    assert memo.usable(p) is None and len(memo) == 0
    for i in range(gas_memo._KEPT + 10):
        memo.learn(replace(p, liquidator=f"0x{i:040x}"), 400_000)
    assert len(memo) == gas_memo._KEPT
    assert memo.usable(replace(p, liquidator=f"0x{0:040x}")) is None  # the oldest went
    assert memo.usable(replace(p, liquidator=f"0x{gas_memo._KEPT + 9:040x}")) == 400_000
