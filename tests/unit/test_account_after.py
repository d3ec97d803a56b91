"""``account_after``: the account a liquidation leaves, as a follow-up is planned on it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from keeper.domain.account import calculate_user_account_data
from keeper.domain.account_after import account_after
from keeper.domain.liquidation import quote_liquidation_call
from keeper.domain.plan import Plan
from keeper.domain.wadray import UINT256_MAX, WAD
from tests.unit.test_account import T0, USDC, WETH, account, market, usd


def _plan(debt_to_cover: int, seized: int, fee: int) -> Plan:
    return cast(Plan, SimpleNamespace(user="0xu", collateral_asset=WETH, debt_asset=USDC,
                                      debt_to_cover=debt_to_cover, collateral_seized=seized,
                                      protocol_fee_collateral=fee, timestamp=T0))


def test_the_close_factors_half_leaves_the_other_half_and_the_collateral_left() -> None:
    user = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})  # HF 0.99 at $1800
    m = market({WETH: usd(1800)})
    quote = quote_liquidation_call(user, m, WETH, USDC, UINT256_MAX)
    after = account_after(user, m, _plan(quote.debt_to_cover_actual,
                                         quote.collateral_to_liquidator,
                                         quote.protocol_fee_collateral))
    assert after is not None
    assert after.position(USDC).scaled_variable_debt == 7_500 * 10**6
    # 10 WETH less 4.354166.. to the liquidator and 0.020833.. to the protocol.
    assert after.position(WETH).scaled_a_token_balance == 10 * 10**18 - 4_374_999_999_999_999_999
    # 5.625 WETH at $1800 x 82.5% over $7,500: HF 1.11, healthy: no follow-up.
    hf = calculate_user_account_data(after, m).health_factor
    assert WAD < hf < 112 * 10**16 and after.configuration == user.configuration


def test_what_the_model_cannot_say_is_none() -> None:
    user = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})
    m = market({WETH: usd(1800)})
    assert account_after(user, m, _plan(15_001 * 10**6, 10**18, 0)) is None  # more than owed
    assert account_after(user, m, _plan(10**6, 11 * 10**18, 0)) is None  # more than held
    cleared = account_after(user, m, _plan(15_000 * 10**6, 10**18, 0))
    assert cleared is not None and cleared.position(USDC).scaled_variable_debt == 0
