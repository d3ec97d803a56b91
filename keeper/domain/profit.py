"""The profit of one liquidation, and the ``debtToCover`` that maximises it. Pure: no IO.

A liquidation through our liquidator contract, for a chosen (collateral, debt) pair and size:

1. it repays ``debt_to_cover`` of the user's debt (borrowed in a flash loan, or from the
   contract's own balance) and receives ``collateral_seized`` (``quote_liquidation_call``);
2. it sells all the seized collateral for the debt asset (``swap``; nothing when both are the
   same asset);
3. it repays the flash loan plus its premium, ``percentMul(debt_to_cover, premiumTotal)``, as
   FlashLoanLogic.executeFlashLoanSimple charges it.

``gross_profit = swap_amount_out - debt_to_cover - flash_premium`` is exactly the rise of the
contract's debt-asset balance, which is what the contract measures and pays to its owner; the
gas, paid in the native coin, is valued in the debt asset and subtracted for ``net_profit``.

The optimiser searches the integer ``debt_to_cover``. Swap slippage makes the profit concave
in the size, so the best size can lie below the maximum the protocol allows; the search is a
golden-section search on exact integer evaluations, then a scan of the last few points and
the ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from keeper.domain.account import Market, UserAccount, calculate_user_account_data
from keeper.domain.amm import SwapRevert
from keeper.domain.liquidation import (
    NO_LIMITS,
    AaveRules,
    LiquidationQuote,
    LiquidationRevert,
    PoolLimits,
    quote_liquidation_call,
)
from keeper.domain.size_search import (
    LARGE_SIZE_REVERTS,
    Sizes,
    last_feasible,
    most_profitable,
    refuses_large,
    search_space,
)
from keeper.domain.unimodal import maximise_unimodal
from keeper.domain.wadray import UINT256_MAX, ArithmeticRevert, asset_unit, percent_mul

SwapOut = Callable[[int], int]
"""The debt asset received for an exact amount of collateral sold; raises SwapRevert."""

NATIVE_DECIMALS = 18

@dataclass(frozen=True, slots=True)
class Outcome:
    """One liquidation evaluated exactly, in the debt asset's units unless named otherwise."""

    debt_to_cover: int
    """The debt the Pool takes (and the flash loan's amount): the quote's actual amount."""
    collateral_seized: int
    """Collateral received by the liquidator (the protocol's fee already taken out)."""
    protocol_fee_collateral: int
    swap_amount_out: int
    """The debt asset bought with all of ``collateral_seized`` (equal to it for one asset)."""
    flash_premium: int
    gas_cost: int
    quote: LiquidationQuote
    headroom: int = 0
    """Asked for above ``debt_to_cover`` (see ``_with_headroom``); the Pool takes no more."""

    @property
    def debt_to_send(self) -> int:
        """The ``debtToCover`` argument (and the flash loan's amount)."""
        return self.debt_to_cover + self.headroom

    @property
    def gross_profit(self) -> int:
        """What the liquidator contract keeps (and sends its owner), before gas."""
        return self.swap_amount_out - self.debt_to_cover - self.flash_premium

    @property
    def net_profit(self) -> int:
        """Gross profit less the gas, both in the debt asset."""
        return self.gross_profit - self.gas_cost


class PairQuotes:
    """``quote_liquidation_call`` for one (account, market, collateral, debt, rules, limits),
    memoised.

    The planner tries several routes and fundings per pair; the liquidation itself does not
    depend on either, so they share these quotes (reverts are remembered too).
    """

    def __init__(
        self,
        account: UserAccount,
        market: Market,
        collateral_asset: str,
        debt_asset: str,
        rules: AaveRules = AaveRules.V3_0,
        limits: PoolLimits = NO_LIMITS,
    ) -> None:
        self.account = account
        self.market = market
        self.collateral_asset = collateral_asset
        self.debt_asset = debt_asset
        self.rules = rules
        self.limits = limits
        # The account's data does not depend on the size: compute it once for every quote.
        self.account_data = calculate_user_account_data(account, market)
        self._memo: dict[int, LiquidationQuote | LiquidationRevert | ArithmeticRevert] = {}

    def __call__(self, debt_to_cover: int) -> LiquidationQuote:
        """The quote for ``debt_to_cover``; raises as ``quote_liquidation_call`` does."""
        found = self._memo.get(debt_to_cover)
        if found is None:
            try:
                found = quote_liquidation_call(
                    self.account,
                    self.market,
                    self.collateral_asset,
                    self.debt_asset,
                    debt_to_cover,
                    rules=self.rules,
                    account_data=self.account_data,
                    limits=self.limits,
                )
            except (LiquidationRevert, ArithmeticRevert) as exc:
                found = exc
            self._memo[debt_to_cover] = found
        if isinstance(found, Exception):
            raise found
        return found


def flash_loan_premium(amount: int, premium_total_bps: int) -> int:
    """The premium flashLoanSimple charges: ``amount.percentMul(FLASHLOAN_PREMIUM_TOTAL)``."""
    return percent_mul(amount, premium_total_bps)


def native_to_asset(
    amount_native: int,
    *,
    native_price: int,
    asset_price: int,
    asset_decimals: int,
    native_decimals: int = NATIVE_DECIMALS,
) -> int:
    """Value an amount of the native coin (wei) in an asset's units, rounded UP.

    Both prices are oracle prices in the same base currency. Rounding up keeps a cost estimate
    on the safe side.
    """
    if asset_price <= 0:
        raise ArithmeticRevert("asset price is zero")
    numerator = amount_native * native_price * asset_unit(asset_decimals)
    denominator = asset_price * asset_unit(native_decimals)
    return -(-numerator // denominator)


def asset_to_base(amount: int, *, price: int, decimals: int) -> int:
    """An amount of an asset in the oracle's base currency (USD, 8 decimals), rounded toward 0."""
    value: int = amount * price
    unit = asset_unit(decimals)
    return value // unit if value >= 0 else -(-value // unit)


def evaluate_liquidation(
    account: UserAccount,
    market: Market,
    collateral_asset: str,
    debt_asset: str,
    debt_to_cover: int,
    *,
    swap: SwapOut | None,
    flash_premium_bps: int,
    gas_cost: int,
    rules: AaveRules = AaveRules.V3_0,
    quotes: PairQuotes | None = None,
) -> Outcome:
    """Evaluate the liquidation of ``debt_to_cover`` exactly.

    ``swap`` sells collateral for the debt asset (None when they are the same asset);
    ``flash_premium_bps`` is 0 when the contract pays from its own balance; ``quotes``, if
    given, must be for the same account, market, pair and rules. Raises LiquidationRevert,
    SwapRevert or ArithmeticRevert where the transaction would revert.
    """
    if quotes is None:
        quotes = PairQuotes(account, market, collateral_asset, debt_asset, rules)
    quote = quotes(debt_to_cover)
    seized = quote.collateral_to_liquidator
    if swap is None:
        amount_out = seized
    else:
        if seized == 0:
            # FlashLiquidator.NoCollateralSeized
            raise SwapRevert("no collateral seized to sell")
        amount_out = swap(seized)
        if amount_out <= 0:
            # A pool pays at least one unit or its swap reverts (INSUFFICIENT_OUTPUT_AMOUNT).
            raise SwapRevert("swap pays nothing")
    actual = quote.debt_to_cover_actual
    return Outcome(
        debt_to_cover=actual,
        collateral_seized=seized,
        protocol_fee_collateral=quote.protocol_fee_collateral,
        swap_amount_out=amount_out,
        flash_premium=flash_loan_premium(actual, flash_premium_bps),
        gas_cost=gas_cost,
        quote=quote,
    )


def optimise_liquidation(
    account: UserAccount,
    market: Market,
    collateral_asset: str,
    debt_asset: str,
    *,
    swap: SwapOut | None,
    flash_premium_bps: int,
    gas_cost: int,
    rules: AaveRules = AaveRules.V3_0,
    max_debt_to_cover: int = UINT256_MAX,
    quotes: PairQuotes | None = None,
    limits: PoolLimits = NO_LIMITS,
) -> Outcome:
    """The liquidation of this pair with the largest gross (hence net) profit.

    ``max_debt_to_cover`` caps the size (the contract's own balance, or the Pool's liquidity
    for a flash loan). Raises LiquidationRevert when the pair cannot be liquidated at all
    (healthy account, paused reserve, ...), or the last revert met when no size is executable.
    The returned outcome may have a negative profit: deciding is the caller's job.
    """
    if max_debt_to_cover <= 0:
        raise LiquidationRevert("INVALID_AMOUNT", "nothing available to repay with")
    if quotes is None:
        quotes = PairQuotes(account, market, collateral_asset, debt_asset, rules, limits)

    def outcome(debt_to_cover: int) -> Outcome:
        return evaluate_liquidation(
            account,
            market,
            collateral_asset,
            debt_asset,
            debt_to_cover,
            swap=swap,
            flash_premium_bps=flash_premium_bps,
            gas_cost=gas_cost,
            rules=rules,
            quotes=quotes,
        )

    # The largest size the protocol takes; pair-level reverts (HF, paused, not borrowed)
    # surface here. A cap below the full size may leave dust under v3.3: that is a size revert.
    full = full_quote(quotes)
    top = min(full.debt_to_cover_actual, max_debt_to_cover)
    if top <= 0:
        raise LiquidationRevert("INVALID_AMOUNT", "no debt can be covered")

    to_debt, x_top = search_space(full, market, collateral_asset, debt_asset, top)
    sizes = Sizes(outcome, to_debt)

    # v3.3 leaves no dust: sizes that leave less than MIN_LEFTOVER_BASE are refused, except
    # the full size. The refused sizes form a band just below the top; search below it. A
    # short virtual balance (3.1+) refuses every size from some point on, the top included.
    x_hi = x_top
    if x_top > 1 and sizes.at(x_top - 1) is None and refuses_large(sizes.errors[-1]):
        x_hi = last_feasible(sizes.at, 1, x_top - 1)
    # Below a band of sizes the Pool refuses (dust), the edge is searched, not taken: there the
    # model and the chain were a wei apart (test_liquidation_v36, the 50% dust rule).
    best = maximise_unimodal(sizes.profit, 1, x_hi, rising_top=x_hi == x_top)
    # The top itself, exactly (the search variable may not map onto it): the whole debt or
    # the whole collateral, which v3.3 allows even where the sizes below it leave dust.
    at_top = sizes.at_debt(top)
    chosen = most_profitable([sizes.at(best[0]) if best else None, at_top], sizes.errors)
    near_tie = chosen.gross_profit - percent_mul(max(chosen.gross_profit, 0), HEADROOM_BPS)
    if at_top is not None and at_top.gross_profit >= near_tie \
            and at_top.quote.repays_whole_debt:
        # Repaying the whole debt wins a near tie too: a size a few units smaller, as
        # profitable by the rounding (the collateral it buys rounds to the same), leaves those
        # units, and the interest of the seconds to its block, as a debt a rival clears at a
        # loss (test_the_whole_debt_wins_a_near_tie_so_no_dust_is_left: 223 USDC units).
        chosen = at_top
    whole = _whole_collateral(sizes, full, top, flash_premium_bps, max_debt_to_cover)
    if whole is not None and whole.gross_profit >= near_tie:
        # It wins a near tie (0.01%): a size a few wei smaller, as profitable by the
        # rounding at the plan's second, leaves dust at the next (a rate-based price moves
        # every second, the collateral accrues) and ends up earning less.
        return whole
    return _with_headroom(chosen, quotes, flash_premium_bps, max_debt_to_cover)


HEADROOM_BPS = 1
"""What a liquidation that clears a side asks for above the debt it repays (0.01%)."""


def _whole_collateral(sizes: Sizes, full: LiquidationQuote, top: int, flash_premium_bps: int,
                      cap: int) -> Outcome | None:
    """The liquidation that takes all of a collateral the Pool caps the repayment by, asked
    with headroom: asked exactly, the debt that buys all of it (rounded down) buys a few wei
    less, which stay behind (3.0-3.2; 3.3+ refuses it as dust), and an account keeps them
    liquidatable for nothing (a rival paid gas for 22 such leftovers after our liquidations in
    the 1,000-borrower crash). Asked a little more, the Pool takes the same debt and the whole
    collateral. None when the collateral does not cap it, or the cap leaves no room. Capped
    is the Pool's own test: after the fee's trim the two shares may sum to a wei less than the
    balance (read that way, 31 of the 36 leftovers of a 10,000-borrower race were missed)."""
    if not full.takes_whole_collateral:
        return None
    asked = min(top + max(percent_mul(top, HEADROOM_BPS), 1), cap)
    o = sizes.at_debt(asked) if asked > top else None
    if o is None or o.debt_to_cover != top:
        return None
    return replace(o, headroom=asked - top, flash_premium=flash_loan_premium(asked, flash_premium_bps))


def _with_headroom(o: Outcome, quotes: PairQuotes, flash_premium_bps: int, cap: int) -> Outcome:
    """Ask a little more than the plan repays when the Pool caps the repayment anyway.

    A plan that repays the whole debt, or the debt that buys all of a collateral, sits on the
    edge of the dust rule: asked exactly, it turns into a partial liquidation leaving a few wei
    (MustNotLeaveDust) when the debt has accrued one more second of interest, the collateral
    balance grew, or its price rose a unit (a rate-based feed moves every second) by the block
    that includes it; before 3.3, that second's interest stays behind as a debt of a few wei
    that keeps the account liquidatable for nothing. Asked with headroom, the Pool caps it to
    the same liquidation. The
    headroom is kept only where the quote of the larger amount is that same liquidation; a
    flash loan borrows the headroom too, and pays its premium on it.
    """
    q = o.quote
    # All of a collateral before 3.3 is ``_whole_collateral``'s, which weighs the premium on
    # the headroom; from 3.3 on an exact size may be refused as dust, so it is always asked.
    clears = q.repays_whole_debt or (
        quotes.rules.has_v33_close_factor and q.takes_whole_collateral)
    asked = min(o.debt_to_cover + max(percent_mul(o.debt_to_cover, HEADROOM_BPS), 1), cap)
    if not clears or asked <= o.debt_to_cover:
        return o  # no dust rule, or a partial liquidation the rule already leaves room for
    try:
        quote = quotes(asked)
    except (LiquidationRevert, ArithmeticRevert):
        return o
    if (quote.debt_to_cover_actual, quote.collateral_to_liquidator) != \
            (o.debt_to_cover, o.collateral_seized):
        return o
    premium = flash_loan_premium(asked, flash_premium_bps)
    return replace(o, headroom=asked - o.debt_to_cover, flash_premium=premium)


def full_quote(quotes: PairQuotes) -> LiquidationQuote:
    # The largest liquidation, even when it would leave dust (the close factor's cap short of
    # clearing a side) or the reserve's virtual balance cannot pay it out: its size bounds the
    # search, which then stays below the sizes refused.
    try:
        return quotes(UINT256_MAX)
    except LiquidationRevert as exc:
        if exc.reason not in LARGE_SIZE_REVERTS or exc.quote is None:
            raise
        return exc.quote
