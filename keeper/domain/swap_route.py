"""How seized collateral is sold: hops on named pools, grouped in legs, across venues.

The quoters (``keeper.domain.quote``) produce these, the planner puts them in a plan, and the
liquidator's calldata encoder (``keeper.protocols.aave_v3.liquidator``) turns them into the
contract's swap instructions. One vocabulary for all three, so a Uniswap V3 hop or a split across
venues needs no translation between layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Venue(IntEnum):
    """The kind of pool a hop trades in; the value is what the liquidator contract reads."""

    UNISWAP_V2 = 0
    UNISWAP_V3 = 1


@dataclass(frozen=True, slots=True)
class SwapHop:
    """Sell ``token_in`` for ``token_out`` in one pool.

    ``fee`` is the Uniswap V3 fee tier in hundredths of a basis point (500, 3000, 10000); a
    Uniswap V2 pair has a fixed 0.3% fee and ``fee`` is 0. Addresses are lower-case hex.
    """

    venue: Venue
    pool: str
    token_in: str
    token_out: str
    fee: int = 0


@dataclass(frozen=True, slots=True)
class SwapLeg:
    """A path of hops, each hop's output the next one's input.

    ``amount_in`` is what the leg sells of the first hop's ``token_in``; the last leg of a swap
    sells whatever is left (its ``amount_in`` is ignored by the contract and is the planner's
    expectation), so a split needs no exact knowledge of the amount seized.
    """

    hops: tuple[SwapHop, ...]
    amount_in: int = 0

    @property
    def token_in(self) -> str:
        return self.hops[0].token_in

    @property
    def token_out(self) -> str:
        return self.hops[-1].token_out


def describe(legs: tuple[SwapLeg, ...]) -> str:
    """A short label of a swap for reports: ``V3 0.05%``, ``V2>V3 0.3%`` (two hops), or a split
    ``V2 38% + V3 0.05% 62%`` (each leg's share of the amount sold)."""
    def hop(h: SwapHop) -> str:
        return "V2" if h.venue is Venue.UNISWAP_V2 else f"V3 {h.fee / 10_000:g}%"

    def path(leg: SwapLeg) -> str:
        return ">".join(hop(h) for h in leg.hops)

    if len(legs) == 1:
        return path(legs[0])
    total = sum(leg.amount_in for leg in legs) or 1
    return " + ".join(f"{path(leg)} {100 * leg.amount_in // total}%" for leg in legs)
