"""An account as a liquidation of ours will leave it: what a follow-up liquidation, sent right
behind it in the same block, is planned on.

The balances are moved as the Pool moves them (debt burned, variable first; collateral and the
protocol's fee taken from the aTokens), at the indexes of the plan's timestamp. The figure is a
model: the follow-up is simulated on top of the first liquidation before it is sent.
"""

from __future__ import annotations

from dataclasses import replace

from keeper.domain.account import Market, UserAccount, user_debt
from keeper.domain.plan import Plan
from keeper.domain.wadray import ray_div


def account_after(account: UserAccount, market: Market, plan: Plan) -> UserAccount | None:
    """``account`` after ``plan`` is mined at ``plan.timestamp``; None when the model cannot
    say (the plan repays stable debt, or takes more than the account holds)."""
    now = plan.timestamp
    debt_reserve = market.reserve_of(plan.debt_asset)
    collateral_reserve = market.reserve_of(plan.collateral_asset)
    debt_position = account.position(plan.debt_asset)
    debt = user_debt(debt_reserve, debt_position, now, market.revision)
    if plan.debt_to_cover > debt.variable:
        return None  # stable debt repaid too: not modelled
    debt_index = debt_reserve.normalized_debt(now, market.revision)
    debt_scaled = max(debt_position.scaled_variable_debt
                      - ray_div(plan.debt_to_cover, debt_index), 0)
    if plan.debt_to_cover == debt.variable:
        debt_scaled = 0
    taken = plan.collateral_seized + plan.protocol_fee_collateral
    collateral_position = account.position(plan.collateral_asset)
    income = collateral_reserve.normalized_income(now)
    taken_scaled = ray_div(taken, income)
    if taken_scaled > collateral_position.scaled_a_token_balance:
        return None
    reserves = dict(account.reserves)
    reserves[plan.debt_asset] = replace(debt_position, scaled_variable_debt=debt_scaled)
    collateral_position = reserves.get(plan.collateral_asset, collateral_position)
    reserves[plan.collateral_asset] = replace(
        collateral_position,
        scaled_a_token_balance=collateral_position.scaled_a_token_balance - taken_scaled)
    return replace(account, reserves=reserves)
