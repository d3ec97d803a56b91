"""What the planner decides and the executor carries out: a ``Plan`` (unsent) or a ``Rejection``.

These value types are shared by the pipeline (which builds them) and exec (which sends them);
they live in the pure core because both may import it and neither may import the other.
``LiquidationParams`` are the arguments of one ``FlashLiquidator.liquidate`` call, checked
by the same rules the contract applies (keeper.protocols.aave_v3.liquidator encodes them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise

from keeper.domain.liquidation import AaveRules
from keeper.domain.swap_route import SwapLeg, Venue
from keeper.domain.wadray import UINT256_MAX
from keeper.errors import KeeperError


class LiquidatorParamsError(KeeperError, ValueError):
    """Arguments the contract would reject (or that cannot be encoded)."""


def _is_address(value: str) -> bool:
    if not (isinstance(value, str) and value.startswith("0x") and len(value) == 42):
        return False
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


def check_address(value: str, what: str) -> str:
    """``value`` lower-cased, or LiquidatorParamsError naming ``what`` if it is no 0x-address."""
    if not _is_address(value):
        raise LiquidatorParamsError(f"{what} is not a 0x-address: {value!r}")
    return value.lower()


def _check_uint(value: int, what: str) -> None:
    if not 0 <= value <= UINT256_MAX:
        raise LiquidatorParamsError(f"{what} out of uint256 range: {value}")


V3_FEE_DENOMINATOR = 1_000_000
"""Uniswap V3 fees are in hundredths of a basis point: ``fee / 1e6`` of the amount."""


class FlashSource(IntEnum):
    """Where the debt asset a liquidation repays comes from; the value is the contract's enum."""

    OWN_BALANCE = 0
    AAVE_POOL = 1
    UNISWAP_V3_POOL = 2


@dataclass(frozen=True, slots=True)
class V3FlashPool:
    """A Uniswap V3 pool of the debt asset and ``pair_token`` (fee tier ``fee``) that lends the
    debt asset for one transaction (``pool.flash``), at ``fee`` instead of Aave's premium.

    The contract derives the pool's address from the canonical factory; ``pool`` is the
    planner's record of it and is not sent.
    """

    pool: str
    pair_token: str
    fee: int

    def premium(self, amount: int) -> int:
        """UniswapV3Pool.flash's fee: ``mulDivRoundingUp(amount, fee, 1e6)``."""
        return -(-amount * self.fee // V3_FEE_DENOMINATOR)


def _pool_key(venue: Venue, a: str, b: str, fee: int) -> tuple[int, str, str, int]:
    low, high = sorted((a.lower(), b.lower()))
    return int(venue), low, high, fee


@dataclass(frozen=True, slots=True)
class LiquidationParams:
    """One ``FlashLiquidator.liquidate`` call.

    ``debt_to_cover`` is repaid as asked when the Pool allows it; with a flash loan it is also
    the amount borrowed and the fee is charged on all of it, so pass the exact amount the
    liquidation will repay (``LiquidationQuote.debt_to_cover_actual``), never UINT256_MAX.

    How the collateral is sold: ``swap_legs`` (each leg a path of V2/V3 hops from the collateral
    to the debt asset; every leg but the last sells its ``amount_in``, the last sells what is
    left) or, when ``swap_legs`` is empty, ``swap_path``: one leg over Uniswap V2 pairs. Both
    are empty when collateral and debt are the same asset.

    Where the debt asset comes from: ``flash_loan=False`` spends the contract's own balance
    (cheaper; the contract must hold ``debt_to_cover``); ``flash_loan=True`` borrows it from
    the Aave Pool (``flashLoanSimple``), or from ``flash_pool`` when that is set.
    ``keep_collateral``: nothing is sold, the collateral goes to the owner (own balance only,
    no path); ``min_profit`` is then the least collateral the owner must receive.
    ``max_block`` (0 = none): the call reverts (``Expired``) if mined after that block.
    """

    collateral_asset: str
    debt_asset: str
    user: str
    debt_to_cover: int
    swap_path: tuple[str, ...] = ()
    min_profit: int = 0
    flash_loan: bool = True
    swap_legs: tuple[SwapLeg, ...] = ()
    flash_pool: V3FlashPool | None = None
    max_block: int = 0
    keep_collateral: bool = False

    def __post_init__(self) -> None:
        collateral = check_address(self.collateral_asset, "collateral_asset")
        debt = check_address(self.debt_asset, "debt_asset")
        check_address(self.user, "user")
        path = [check_address(t, "swap_path token") for t in self.swap_path]
        _check_uint(self.debt_to_cover, "debt_to_cover")
        _check_uint(self.min_profit, "min_profit")
        _check_uint(self.max_block, "max_block")
        if self.debt_to_cover == 0:
            raise LiquidatorParamsError("debt_to_cover is zero")
        used = self._check_flash_pool(debt)
        # The same rules as FlashLiquidator._checkOrder, so a bad route fails here, not on chain.
        if path and self.swap_legs:
            raise LiquidatorParamsError("give swap_legs or swap_path, not both")
        if collateral == debt:
            if path or self.swap_legs or self.keep_collateral:
                raise LiquidatorParamsError("same-asset liquidation takes no swap")
            return
        if self.keep_collateral:
            if path or self.swap_legs:
                raise LiquidatorParamsError("a liquidation that keeps the collateral sells none")
            if self.flash_loan:
                raise LiquidatorParamsError("keeping the collateral needs our own balance "
                                            "(flash_loan=False): nothing repays a loan")
            return
        if self.swap_legs:
            _check_legs(self.swap_legs, collateral, debt, used)
            return
        if len(path) < 2 or path[0] != collateral or path[-1] != debt:
            raise LiquidatorParamsError("swap_path must run from collateral_asset to debt_asset")
        if any(a == b for a, b in pairwise(path)):
            raise LiquidatorParamsError("swap_path repeats a token in adjacent hops")

    def _check_flash_pool(self, debt: str) -> set[tuple[int, str, str, int]]:
        """Check ``flash_pool``; the pools no swap may use (a V3 pool is locked while it lends)."""
        fp = self.flash_pool
        if fp is None:
            return set()
        check_address(fp.pool, "flash_pool.pool")
        pair_token = check_address(fp.pair_token, "flash_pool.pair_token")
        if not self.flash_loan:
            raise LiquidatorParamsError("flash_pool needs flash_loan=True")
        if pair_token == debt or int(pair_token, 16) == 0:
            raise LiquidatorParamsError("flash_pool.pair_token must be another token")
        if not 0 < fp.fee < V3_FEE_DENOMINATOR:
            raise LiquidatorParamsError(f"flash_pool.fee out of range: {fp.fee}")
        return {_pool_key(Venue.UNISWAP_V3, debt, pair_token, fp.fee)}

    @property
    def same_asset(self) -> bool:
        return self.collateral_asset.lower() == self.debt_asset.lower()

    @property
    def flash_source(self) -> FlashSource:
        if not self.flash_loan:
            return FlashSource.OWN_BALANCE
        return FlashSource.AAVE_POOL if self.flash_pool is None else FlashSource.UNISWAP_V3_POOL


def _check_legs(
    legs: tuple[SwapLeg, ...], collateral: str, debt: str, used: set[tuple[int, str, str, int]]
) -> None:
    """Each leg runs from the collateral to the debt asset; no pool is used twice (so every hop
    is quoted on the state before the swap, and a lending V3 pool is never swapped in)."""
    for i, leg in enumerate(legs):
        if not leg.hops:
            raise LiquidatorParamsError(f"swap leg {i} has no hops")
        if i < len(legs) - 1 and leg.amount_in <= 0:
            raise LiquidatorParamsError(f"swap leg {i} sells nothing (only the last leg may)")
        _check_uint(leg.amount_in, "leg amount_in")
        token = collateral
        for hop in leg.hops:
            token_in = check_address(hop.token_in, "hop token_in")
            token_out = check_address(hop.token_out, "hop token_out")
            check_address(hop.pool, "hop pool")
            if token_in != token:
                raise LiquidatorParamsError(f"swap leg {i} is not a path from the collateral")
            if token_out == token_in:
                raise LiquidatorParamsError(f"swap leg {i} swaps a token for itself")
            if hop.venue == Venue.UNISWAP_V2 and hop.fee != 0:
                raise LiquidatorParamsError("a Uniswap V2 hop has no fee tier (fee must be 0)")
            if hop.venue == Venue.UNISWAP_V3 and not 0 < hop.fee < V3_FEE_DENOMINATOR:
                raise LiquidatorParamsError(f"Uniswap V3 fee tier out of range: {hop.fee}")
            key = _pool_key(hop.venue, token_in, token_out, hop.fee)
            if key in used:
                raise LiquidatorParamsError(f"pool {hop.pool} is used twice")
            used.add(key)
            token = token_out
        if token != debt:
            raise LiquidatorParamsError(f"swap leg {i} does not end at the debt asset")


@dataclass(frozen=True, slots=True)
class GasPrice:
    """What one unit of gas is expected to cost: the next block's base fee plus our tip (wei)."""

    base_fee: int
    priority_fee: int

    @property
    def per_gas(self) -> int:
        return self.base_fee + self.priority_fee


class RejectionReason(enum.Enum):
    """Why an account gets no plan.

    Frozen reserves are no reason: Aave V3 liquidates positions in frozen reserves (freezing
    stops new supply and borrow only), so the planner plans them like any other.
    """

    HEALTHY = "healthy"
    """Health factor at or above 1: liquidationCall would revert."""
    NO_POSITION = "no_position"
    """No collateral that can be seized, or no debt."""
    PAUSED_RESERVE = "paused_reserve"
    INACTIVE_RESERVE = "inactive_reserve"
    NO_ROUTE = "no_route"
    """No pool (or only pools too thin to pay anything) to sell the collateral for the debt."""
    NO_FUNDS = "no_funds"
    """Flash loans of the debt asset are off or dry, and the contract holds none of it."""
    DUST = "dust"
    """Every size would seize nothing or leave dust (v3.3)."""
    UNPROFITABLE = "unprofitable"
    """Executable, but the best net profit is below the configured minimum."""
    MISSING_DATA = "missing_data"
    """The market snapshot lacks a reserve, price or eMode category the account needs."""
    WOULD_REVERT = "would_revert"
    """Some other revert (arithmetic) on every candidate."""
    STANDBY = "standby"
    """Not planned: this replica of a keeper network does not hold the sender lease (due
    again on the next block, so that it acts at once when it takes the lease over)."""
    GRACE_PERIOD = "grace_period"
    """3.1+: a liquidation grace period runs on an asset of every pair worth liquidating; the
    plan waits for the first block after it (``Rejection.not_before``)."""
    BAD_DEBT = "bad_debt"
    """3.3+: debt and no collateral: only the protocol's deficit handling can clear it."""
    SELF_LIQUIDATION = "self_liquidation"
    """3.4+: the user is our liquidator contract or its owner (SelfLiquidation)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """No plan for ``user``, and why. ``detail`` says which pairs failed how."""

    user: str
    reason: RejectionReason
    detail: str = ""
    best_net_profit_usd: int | None = None
    """For UNPROFITABLE: the best net profit found (USD, 8 decimals), usually negative."""
    not_before: int | None = None
    """For GRACE_PERIOD: the first block timestamp at which the liquidation can pass."""


@dataclass(frozen=True, slots=True)
class Plan:
    """An unsent liquidation: what to send, and what it should pay.

    Amounts are in the asset's own units: debt-side amounts (``debt_to_cover``, profits, fees,
    ``gas_cost``) in the debt asset, ``collateral_seized`` in the collateral. ``*_usd`` values
    are in the oracle's base currency (USD, 8 decimals). ``gross_profit`` is exactly what the
    contract should pay its owner; ``net_profit`` subtracts the gas, paid in the native coin.
    """

    user: str
    collateral_asset: str
    debt_asset: str
    debt_to_cover: int
    collateral_seized: int
    protocol_fee_collateral: int
    swap_path: tuple[str, ...]
    swap_amount_out: int
    min_amount_out: int
    use_flash_loan: bool
    flash_premium: int
    gross_profit: int
    min_profit: int
    gas_estimate: int
    gas_price: int
    gas_cost: int
    net_profit: int
    gross_profit_usd: int
    net_profit_usd: int
    health_factor: int
    timestamp: int
    """The block timestamp the plan was computed for (interest accrues with time)."""
    rules: AaveRules
    liquidator: str
    params: LiquidationParams
    """The ``liquidate(...)`` order for ``liquidator``, to be sent by its owner (encoded when
    sent alone; a batch encodes its orders together)."""
