"""Our FlashLiquidator contract (contracts/liquidator) seen from the keeper: deploy it, encode a
``liquidate`` call, decode its reverts, and predict to the wei what a call pays the owner.

The contract repays a user's debt (with a flash loan of the debt asset from the Aave Pool or a
Uniswap V3 pool, or from its own balance), sells all the collateral it seizes along one or more
legs of Uniswap V2 and V3 hops, repays the loan plus its fee and sends the owner the rest of the
debt asset; below ``min_profit`` it reverts.

The encoder and the predictor are pure. ``predict_outcome`` follows the contract's arithmetic
on top of a ``LiquidationQuote`` (keeper.domain.liquidation: what Pool.liquidationCall repays
and seizes) and a ``LegQuoter`` (what each leg of the swap returns): ``leg_quoter`` builds one
from the pairs' reserves (keeper.domain.amm: Uniswap V2's getAmountOut) and an injected
``HopQuoter`` for Uniswap V3 hops (the exact V3 swap math lives in the pure core). The call's
arguments (``LiquidationParams``, checked by the contract's own rules) are a value type of the
pure core, keeper.domain.plan, since the planner builds them and the executor carries them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_abi import decode as abi_decode
from eth_utils import keccak

from keeper.chain.abi import Abi, Event, canonical_type, hexstr_to_bytes
from keeper.contracts import artifacts
from keeper.domain.amm import PairReserves, get_amount_out, get_reserves
from keeper.domain.liquidation import LiquidationQuote
from keeper.domain.plan import (
    FlashSource,
    LiquidationParams,
    LiquidatorParamsError,
    check_address,
)
from keeper.domain.swap_route import SwapHop, SwapLeg, Venue
from keeper.domain.wadray import percent_mul
from keeper.protocols.aave_v3.order_abi import encode_order, encode_orders
from keeper.protocols.uniswap_v2.pair import UNISWAP_V2_PAIR_INIT_CODE_HASH

CONTRACT_NAME = "FlashLiquidator"
UNISWAP_V3_POOL_INIT_CODE_HASH = bytes.fromhex(
    "e34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54")
"""keccak256 of UniswapV3Pool's creation code (npm @uniswap/v3-core 1.0.1; periphery's
POOL_INIT_CODE_HASH)."""
ZERO_ADDRESS = "0x" + "00" * 20


@functools.cache
def _abi() -> Abi:
    return artifacts.ours(CONTRACT_NAME).abi


# ---- deployment --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiquidatorConfig:
    """Constructor arguments: where the market and the DEX are, and who owns the contract."""

    addresses_provider: str
    """The market's PoolAddressesProvider; the contract resolves the Pool from it once."""
    uniswap_v2_factory: str
    owner: str
    """The keeper's account: the only caller of ``liquidate`` and the payee of its profit."""
    pair_init_code_hash: bytes = UNISWAP_V2_PAIR_INIT_CODE_HASH
    uniswap_v3_factory: str = ZERO_ADDRESS
    """The Uniswap V3 factory whose pools V3 hops and V3 flash loans use; zero: no V3."""
    pool_init_code_hash: bytes = UNISWAP_V3_POOL_INIT_CODE_HASH

    def __post_init__(self) -> None:
        for name in ("addresses_provider", "uniswap_v2_factory", "owner"):
            check_address(getattr(self, name), name)
            if int(getattr(self, name), 16) == 0:
                raise LiquidatorParamsError(f"{name} is the zero address")
        check_address(self.uniswap_v3_factory, "uniswap_v3_factory")
        if len(self.pair_init_code_hash) != 32 or len(self.pool_init_code_hash) != 32:
            raise LiquidatorParamsError("init-code hashes must be 32 bytes")


def deploy_data(config: LiquidatorConfig) -> bytes:
    """The creation transaction's data: bytecode and constructor arguments.

    For a real network the executor signs a contract creation with this data; on the devnet
    ``deploy_liquidator`` sends it from an unlocked account.
    """
    return artifacts.ours(CONTRACT_NAME).deploy_data(
        config.addresses_provider,
        config.uniswap_v2_factory,
        config.pair_init_code_hash,
        config.uniswap_v3_factory,
        config.pool_init_code_hash,
        config.owner,
    )


class ContractDeployer(Protocol):
    """Something that sends a contract creation and returns the new address (devnet TxSender)."""

    async def deploy(self, data: bytes, *, what: str = "") -> str: ...


async def deploy_liquidator(deployer: ContractDeployer, config: LiquidatorConfig) -> str:
    """Deploy a FlashLiquidator and return its address (lower-case).

    The deploying account need not be the owner: ownership is a constructor argument.
    """
    return (await deployer.deploy(deploy_data(config), what=CONTRACT_NAME)).lower()


# ---- the liquidate call ------------------------------------------------------------------------


def encode_liquidate(params: LiquidationParams) -> bytes:
    """Calldata of ``liquidate(Order)``: the order's fields in the contract's order.

    Hops name no pool: the contract derives each pair's and pool's address from its canonical
    factories, so a hop is ``(venue, tokenOut, fee)`` and a leg ``(amountIn, hops)``.
    """
    order, function = _order(params), _abi()["liquidate"]
    return encode_order(function.selector, order) or function.encode(order)


def encode_liquidate_batch(orders: Sequence[LiquidationParams]) -> bytes:
    """Calldata of ``liquidateBatch(Order[])``: orders that keep their collateral, each run in
    its own frame (one that fails is undone alone, ``OrderFailed``)."""
    for params in orders:
        if not params.keep_collateral:
            raise LiquidatorParamsError("a batch holds only orders that keep their collateral")
    many, function = [_order(p) for p in orders], _abi()["liquidateBatch"]
    return encode_orders(function.selector, many) or function.encode(many)


def _order(params: LiquidationParams) -> tuple[Any, ...]:
    fp = params.flash_pool
    return (
        params.collateral_asset,
        params.debt_asset,
        params.user,
        params.debt_to_cover,
        [(leg.amount_in, [(int(h.venue), h.token_out, h.fee) for h in leg.hops])
         for leg in contract_legs(params)],
        params.min_profit,
        int(params.flash_source),
        fp.pair_token if fp is not None else ZERO_ADDRESS,
        fp.fee if fp is not None else 0,
        params.max_block,
    )


def contract_legs(params: LiquidationParams) -> tuple[SwapLeg, ...]:
    """The legs the contract runs: ``swap_legs``, or ``swap_path`` as one leg of V2 hops (whose
    ``pool`` is left empty: the contract derives it)."""
    if params.swap_legs or not params.swap_path:
        return params.swap_legs
    hops = tuple(SwapHop(Venue.UNISWAP_V2, "", a.lower(), b.lower())
                 for a, b in zip(params.swap_path, params.swap_path[1:], strict=False))
    return (SwapLeg(hops),)


@functools.cache
def _errors() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    out: dict[bytes, tuple[str, tuple[str, ...]]] = {}
    for item in artifacts.ours(CONTRACT_NAME).abi_json:
        if item.get("type") == "error":
            types = tuple(canonical_type(p) for p in item.get("inputs", []))
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            out[selector] = (str(item["name"]), types)
    return out


PROFIT_FLOOR_ERROR = "InsufficientProfit"
"""The contract's refusal of a trade that pays less than its ``minProfit``: the chain moved
under the plan (pools, prices, a rival's pending trade), not a fault of the account's."""


def refused_by_profit_floor(reason: str) -> bool:
    """Whether a simulation's revert ``reason`` (as ``decode_revert`` names it) is the floor."""
    return f"{PROFIT_FLOOR_ERROR}(" in reason


# Why a liquidation of an account that is no longer there to take reverts: healthy again, its
# collateral or debt taken by another liquidation first (Aave 3.0-3.3 codes 45-47, 3.4+ names).
_TAKEN_FIRST = ("reverted: 45", "reverted: 46", "reverted: 47", "HealthFactorNotBelowThreshold",
                "CollateralCannotBeLiquidated", "SpecifiedCurrencyNotBorrowedByUser")


def lost_the_race(reason: str) -> bool:
    """Whether a mined liquidation's revert ``reason`` says the account was taken or healed
    before it (or that it paid less than its floor once others had traded first)."""
    return reason.rstrip().endswith(_TAKEN_FIRST[:3]) or any(
        name in reason for name in (*_TAKEN_FIRST[3:], f"{PROFIT_FLOOR_ERROR}("))


def decode_revert(data: bytes | str) -> str | None:
    """Name a FlashLiquidator custom error from revert data, e.g. ``InsufficientProfit(12, 50)``.

    Returns None for data that is not one of the contract's errors (a revert from the Pool or a
    token passes through as that contract's own reason).
    """
    raw = hexstr_to_bytes(data) if isinstance(data, str) else data
    found = _errors().get(raw[:4])
    if found is None:
        return None
    name, types = found
    try:
        args: Sequence[Any] = abi_decode(list(types), raw[4:]) if types else ()
    except Exception:  # malformed data behind a matching selector: name it without args
        return name
    return f"{name}({', '.join(str(a) for a in args)})"


# ---- what a call pays ---------------------------------------------------------------------------


class HopQuoter(Protocol):
    """The exact output of one hop selling ``amount_in``, on the pool's state before the call.

    For Uniswap V3 this is the pure core's V3 swap math (or, in tests, the pool itself).
    """

    def __call__(self, hop: SwapHop, amount_in: int) -> int: ...


class LegQuoter(Protocol):
    """The amounts along ``leg`` selling ``amount_in``: ``(amount_in, after hop 1, ..., out)``."""

    def __call__(self, leg: SwapLeg, amount_in: int) -> tuple[int, ...]: ...


def leg_quoter(pair_reserves: PairReserves, v3_hop: HopQuoter | None = None) -> LegQuoter:
    """A LegQuoter pricing V2 hops on ``pair_reserves`` (``(token0, token1) → reserves``,
    lower-case) with the contract's getAmountOut, and V3 hops with ``v3_hop``.

    Hops are quoted on the state before the call: exact because LiquidationParams refuses a
    pool used twice. A V3 hop without ``v3_hop`` raises LiquidatorParamsError.
    """

    def quote(leg: SwapLeg, amount_in: int) -> tuple[int, ...]:
        amounts = [amount_in]
        for hop in leg.hops:
            if hop.venue == Venue.UNISWAP_V2:
                r_in, r_out = get_reserves(pair_reserves, hop.token_in.lower(),
                                           hop.token_out.lower())
                amounts.append(get_amount_out(amounts[-1], r_in, r_out))
            elif v3_hop is None:
                raise LiquidatorParamsError("a Uniswap V3 hop needs a V3 hop quoter")
            else:
                amounts.append(v3_hop(hop, amounts[-1]))
        return tuple(amounts)

    return quote


@dataclass(frozen=True, slots=True)
class LiquidationOutcome:
    """What one ``liquidate`` call does, in the assets' own units."""

    debt_repaid: int
    """Debt the Pool takes from the contract (≤ debt_to_cover)."""
    collateral_seized: int
    """Collateral the contract receives (the protocol fee already taken out)."""
    swap_amounts: tuple[int, ...]
    """One leg: the amount after each hop, first = collateral sold; a split: ``(seized, total
    out)``; ``(seized,)`` when there is no swap."""
    flash_premium: int
    """The flash lender's fee: Aave's premium or the V3 pool's fee (0 on own balance)."""
    profit: int
    """Debt asset paid to the owner; negative means the call would revert (a loss)."""
    leg_amounts: tuple[tuple[int, ...], ...] = ()
    """Per leg, the amounts along it (as ``LegQuoter`` returns them)."""

    @property
    def debt_received(self) -> int:
        """Debt asset the collateral turned into."""
        return self.swap_amounts[-1]

    def pays(self, min_profit: int) -> bool:
        """Whether the contract's profit check passes for ``min_profit``."""
        return self.profit >= 0 and self.profit >= min_profit


def flash_premium(amount: int, premium_total_bps: int) -> int:
    """FlashLoanLogic's premium: ``amount.percentMul(FLASHLOAN_PREMIUM_TOTAL)`` (half up)."""
    return percent_mul(amount, premium_total_bps)


def predict_outcome(
    params: LiquidationParams,
    quote: LiquidationQuote,
    pair_reserves: PairReserves,
    *,
    flash_premium_total: int,
    quote_leg: LegQuoter | None = None,
) -> LiquidationOutcome:
    """Predict the contract's profit for ``params`` from the Pool's quote and the AMM state.

    ``quote`` must be the domain's quote for the same collateral, debt, user and debt to cover
    at the block timestamp the call will be mined in; ``pair_reserves`` the reserves of every
    V2 pair the swap uses (``(token0, token1) → getReserves()``, addresses lower-case) before
    the call; ``flash_premium_total`` the Pool's FLASHLOAN_PREMIUM_TOTAL in basis points.
    ``quote_leg`` prices each leg; by default ``leg_quoter(pair_reserves)`` (V2 hops only):
    pass ``leg_quoter(pair_reserves, v3_hop)`` when a leg has a V3 hop.

    The contract's profit is the increase of its debt-asset balance: the swap output, less the
    debt repaid, less the flash fee on the whole flash amount (an unused part of the flash loan
    is returned unchanged). Every leg but the last sells its ``amount_in``; the last sells the
    rest of the collateral seized (a split larger than the seizure reverts: profit -1).
    """
    seized = quote.collateral_to_liquidator
    repaid = quote.debt_to_cover_actual
    source = params.flash_source
    if source == FlashSource.AAVE_POOL:
        premium = flash_premium(params.debt_to_cover, flash_premium_total)
    elif source == FlashSource.UNISWAP_V3_POOL and params.flash_pool is not None:
        premium = params.flash_pool.premium(params.debt_to_cover)
    else:
        premium = 0
    legs = contract_legs(params)
    if params.same_asset or not legs:
        return LiquidationOutcome(repaid, seized, (seized,), premium, seized - repaid - premium)
    split = sum(leg.amount_in for leg in legs[:-1])
    if split >= seized:  # SplitExceedsSeized: the call reverts
        return LiquidationOutcome(repaid, seized, (seized, 0), premium, -1)
    quoter = quote_leg or leg_quoter(pair_reserves)
    leg_amounts = tuple(quoter(leg, leg.amount_in if i < len(legs) - 1 else seized - split)
                        for i, leg in enumerate(legs))
    received = sum(a[-1] for a in leg_amounts)
    amounts = leg_amounts[0] if len(legs) == 1 else (seized, received)
    return LiquidationOutcome(repaid, seized, amounts, premium, received - repaid - premium,
                              leg_amounts)


def collateral_kept(receipt: Any, liquidator: str, user: str) -> tuple[int, int] | None:
    """(debt repaid, collateral seized) of our contract's ``CollateralKept`` event for ``user``
    in a receipt (a liquidation that kept the collateral), or None when it has none."""
    event = _abi().event("CollateralKept")
    for fields in _events(receipt, liquidator, event):
        if str(fields["user"]).lower() == user.lower():
            return int(fields["debtRepaid"]), int(fields["collateralSeized"])
    return None


def _events(receipt: Any, liquidator: str, event: Event) -> list[dict[str, Any]]:
    logs = receipt.get("logs") if isinstance(receipt, dict) else None
    return [event.decode(lg["topics"], lg["data"]) for lg in logs or ()
            if isinstance(lg, dict) and str(lg.get("address", "")).lower() == liquidator.lower()
            and (lg.get("topics") or [None])[0] == event.topic0]


def liquidated_profit(receipt: Any, liquidator: str, user: str) -> int | None:
    """The profit (debt-asset units) our contract's ``Liquidated`` event reports for ``user`` in
    a transaction receipt, or None when the receipt has no such event. Each transaction's own:
    the owner's balance change over a block would count every liquidation of ours in it."""
    for fields in _events(receipt, liquidator, _abi().event("Liquidated")):
        if str(fields["user"]).lower() == user.lower():
            return int(fields["profit"])
    return None


def batch_results(receipt: Any, liquidator: str) -> list[tuple[str, dict[str, Any] | bytes]]:
    """What each order of a ``liquidateBatch`` did, in the batch's order: (user, the receipt's
    log of its ``CollateralKept``) for one that succeeded, (user, its revert data) for one that
    failed and was undone (``OrderFailed``; ``keeper.exec.simulate.reason_of`` words it)."""
    kept, failed = _abi().event("CollateralKept"), _abi().event("OrderFailed")
    out: list[tuple[str, dict[str, Any] | bytes]] = []
    logs = receipt.get("logs") if isinstance(receipt, dict) else None
    for lg in logs or ():
        if not isinstance(lg, dict) or str(lg.get("address", "")).lower() != liquidator.lower():
            continue
        topic = (lg.get("topics") or [None])[0]
        if topic == kept.topic0:
            out.append((str(kept.decode(lg["topics"], lg["data"])["user"]).lower(), lg))
        elif topic == failed.topic0:
            fields = failed.decode(lg["topics"], lg["data"])
            out.append((str(fields["user"]).lower(), bytes(fields["reason"])))
    return out
