"""What a scan finds: liquidatable accounts, and the order to liquidate them in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from keeper.domain.account import AccountData
from keeper.domain.liquidation import close_factor
from keeper.domain.wadray import WAD, percent_mul
from keeper.pipeline.scan.prefilter import FloatFigures


@dataclass(frozen=True, slots=True)
class LiquidatableAccount:
    """A liquidatable account, values in the oracle's base currency, HF a wad.

    ``confirmed_on_chain`` is True when ``Pool.getUserAccountData`` at ``block`` said HF < 1
    (the values are then the chain's); False when only the book says so: its exact math, or,
    before the chain is asked, the float figures of an account far enough under the line
    (``estimated``). Every send is simulated first.
    """

    user: str
    health_factor: int
    total_collateral_base: int
    total_debt_base: int
    confirmed_on_chain: bool
    block: int

    @classmethod
    def of(cls, user: str, data: AccountData, *, confirmed: bool, block: int) -> LiquidatableAccount:
        return cls(
            user=user,
            health_factor=data.health_factor,
            total_collateral_base=data.total_collateral_base,
            total_debt_base=data.total_debt_base,
            confirmed_on_chain=confirmed,
            block=block,
        )

    @classmethod
    def estimated(cls, figures: FloatFigures, *, block: int) -> LiquidatableAccount:
        """From the prefilter's float figures (to rank by, until the exact math or the chain
        replaces them; the plan is made on the exact math)."""
        return cls(
            user=figures.user,
            health_factor=int(figures.health_factor * WAD),
            total_collateral_base=int(figures.collateral_base),
            total_debt_base=int(figures.debt_base),
            confirmed_on_chain=False,
            block=block,
        )

    @property
    def max_repay_base(self) -> int:
        """Debt that one liquidation may repay (close factor), capped by the collateral."""
        repay = percent_mul(self.total_debt_base, close_factor(self.health_factor))
        return min(repay, self.total_collateral_base)


def rank(accounts: Iterable[LiquidatableAccount]) -> list[LiquidatableAccount]:
    """Most debt a liquidation could repay first (the bonus is paid on it); then lowest HF."""
    return sorted(accounts, key=lambda c: (-c.max_repay_base, c.health_factor, c.user))
