"""Our FlashLiquidator contract (contracts/liquidator) seen from the keeper: deploy it, encode a
``liquidate`` call, decode its reverts, and predict to the wei what a call pays the owner.

The contract repays a user's debt (with a flash loan of the debt asset, or from its own
balance), sells all the collateral it seizes along a Uniswap V2 path, repays the loan plus the
Pool's premium and sends the owner the rest of the debt asset; below ``min_profit`` it reverts.

The encoder and the predictor are pure. ``predict_outcome`` follows the contract's arithmetic
on top of a ``LiquidationQuote`` (keeper.domain.liquidation: what Pool.liquidationCall repays
and seizes) and the pairs' reserves (keeper.domain.amm: Uniswap V2's getAmountOut). The call's
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

from keeper.chain.abi import Abi, canonical_type, hexstr_to_bytes
from keeper.contracts import artifacts
from keeper.domain.amm import PairReserves, get_amounts_out
from keeper.domain.liquidation import LiquidationQuote
from keeper.domain.plan import LiquidationParams, LiquidatorParamsError, check_address
from keeper.domain.wadray import percent_mul
from keeper.protocols.uniswap_v2.pair import UNISWAP_V2_PAIR_INIT_CODE_HASH

CONTRACT_NAME = "FlashLiquidator"


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

    def __post_init__(self) -> None:
        for name in ("addresses_provider", "uniswap_v2_factory", "owner"):
            check_address(getattr(self, name), name)
            if int(getattr(self, name), 16) == 0:
                raise LiquidatorParamsError(f"{name} is the zero address")
        if len(self.pair_init_code_hash) != 32:
            raise LiquidatorParamsError("pair_init_code_hash must be 32 bytes")


def deploy_data(config: LiquidatorConfig) -> bytes:
    """The creation transaction's data: bytecode and constructor arguments.

    For a real network the executor signs a contract creation with this data; on the devnet
    ``deploy_liquidator`` sends it from an unlocked account.
    """
    return artifacts.ours(CONTRACT_NAME).deploy_data(
        config.addresses_provider,
        config.uniswap_v2_factory,
        config.pair_init_code_hash,
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
    """Calldata of ``liquidate(collateral, debt, user, debtToCover, swapPath, minProfit,
    flashLoan)``."""
    return _abi()["liquidate"].encode(
        params.collateral_asset,
        params.debt_asset,
        params.user,
        params.debt_to_cover,
        list(params.swap_path),
        params.min_profit,
        params.flash_loan,
    )


@functools.cache
def _errors() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    out: dict[bytes, tuple[str, tuple[str, ...]]] = {}
    for item in artifacts.ours(CONTRACT_NAME).abi_json:
        if item.get("type") == "error":
            types = tuple(canonical_type(p) for p in item.get("inputs", []))
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            out[selector] = (str(item["name"]), types)
    return out


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


@dataclass(frozen=True, slots=True)
class LiquidationOutcome:
    """What one ``liquidate`` call does, in the assets' own units."""

    debt_repaid: int
    """Debt the Pool takes from the contract (≤ debt_to_cover)."""
    collateral_seized: int
    """Collateral the contract receives (the protocol fee already taken out)."""
    swap_amounts: tuple[int, ...]
    """Amount after each hop, first = collateral sold; ``(seized,)`` when there is no swap."""
    flash_premium: int
    """The Pool's flash-loan premium (0 when the contract's own balance is used)."""
    profit: int
    """Debt asset paid to the owner; negative means the call would revert (a loss)."""

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
) -> LiquidationOutcome:
    """Predict the contract's profit for ``params`` from the Pool's quote and the AMM state.

    ``quote`` must be the domain's quote for the same collateral, debt, user and debt to cover
    at the block timestamp the call will be mined in; ``pair_reserves`` the reserves of every
    pair on the path (``(token0, token1) → getReserves()``, addresses lower-case) before the
    call; ``flash_premium_total`` the Pool's FLASHLOAN_PREMIUM_TOTAL in basis points.

    The contract's profit is the increase of its debt-asset balance: the swap output, less the
    debt repaid, less the premium on the whole flash amount (an unused part of the flash loan
    is returned unchanged).
    """
    seized = quote.collateral_to_liquidator
    repaid = quote.debt_to_cover_actual
    if params.same_asset:
        amounts: tuple[int, ...] = (seized,)
    else:
        path = [t.lower() for t in params.swap_path]
        amounts = tuple(get_amounts_out(seized, path, pair_reserves))
    premium = flash_premium(params.debt_to_cover, flash_premium_total) if params.flash_loan else 0
    return LiquidationOutcome(
        debt_repaid=repaid,
        collateral_seized=seized,
        swap_amounts=amounts,
        flash_premium=premium,
        profit=amounts[-1] - repaid - premium,
    )
