"""A scaled-balance token's stored balance after its ``Mint``/``Burn`` events, per revision.

Up to 3.4 the tokens scale the amount with ``rayDiv`` (half up) and the events carry
``value = amount ± balanceIncrease``: the scaled change is ``rayDiv(amount, index)``.

From 3.5 the Pool passes the scaled amount itself (aToken mint ``rayDivFloor``, burn and
transfer ``rayDivCeil``; debt mint ``rayDivCeil``, burn ``rayDivFloor``) and the events carry
*balance* differences: ``Mint.value - balanceIncrease`` (or ``-(Burn.value + balanceIncrease)``)
is ``balance(scaled_after, index) - balance(scaled_before, index)``, with the token's own
rounding (aToken ``rayMulFloor``, debt ``rayMulCeil``). Since an index is never below one ray,
``balance(·, index)`` is strictly increasing in the scaled amount and the scaled balance after the
event is the one scaled amount whose balance is that figure: ``scaled_after`` finds it.
"""

from __future__ import annotations

from keeper.domain.account import a_token_balance_of, debt_balance_of
from keeper.domain.revision import AaveRevision
from keeper.domain.wadray import RAY, ArithmeticRevert, ray_div


def scaled_after(
    scaled_before: int, balance_change: int, index: int, *, debt: bool, revision: AaveRevision
) -> int:
    """The stored scaled balance after a ``Mint`` or ``Burn`` of ``scaled_before``.

    ``balance_change`` is ``Mint.value - balanceIncrease`` or ``-(Burn.value +
    balanceIncrease)``; ``debt`` says a variable debt token (else an aToken). Raises
    ArithmeticRevert where no scaled balance fits (the book missed an event).
    """
    if not revision.has_directed_rounding:
        delta = ray_div(abs(balance_change), index)
        after = scaled_before + (delta if balance_change >= 0 else -delta)
    else:
        if index < RAY:
            raise ArithmeticRevert(f"index {index} below one ray")
        balance_of = debt_balance_of if debt else a_token_balance_of
        target = balance_of(scaled_before, index, revision) + balance_change
        if target < 0:
            raise ArithmeticRevert(f"balance after the event would be {target}")
        # aToken (floor): the least n with floor(n*i/R) >= target; debt (ceil): the greatest
        # n with ceil(n*i/R) <= target. Unique either way because i >= R.
        after = target * RAY // index if debt else -(-(target * RAY) // index)
        if balance_of(after, index, revision) != target:
            raise ArithmeticRevert(f"no scaled balance has balance {target} at index {index}")
    if after < 0:
        raise ArithmeticRevert(f"scaled balance would be {after}")
    return after
