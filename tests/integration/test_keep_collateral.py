"""FlashLiquidator keeping the collateral (no legs, own balance) against the real Aave V3 on the
devnet: the owner receives exactly the collateral the Pool seizes, the contract pays exactly
the debt repaid, and the collateral floor reverts a liquidation that pays less."""

from __future__ import annotations

import pytest

from keeper.devnet.driver import Devnet
from keeper.domain.plan import LiquidationParams, LiquidatorParamsError
from keeper.protocols.aave_v3.liquidator import collateral_kept, encode_liquidate
from tests.integration.test_flash_liquidator import (
    ERC20,
    GAS,
    LIQ,
    addr,
    allowance,
    next_timestamp,
    quote_at,
    revert_name,
    send_raw,
    weth_usdc_borrower,
)

OWN = 20_000 * 10**6


async def _kept_params(devnet: Devnet, user: str, min_collateral: int | None = None
                       ) -> tuple[LiquidationParams, int, int]:
    """The keep order for the next block: (params, debt repaid, collateral seized)."""
    ts = await next_timestamp(devnet)
    quote = await quote_at(devnet, user, "WETH", "USDC", ts)
    seized = quote.collateral_to_liquidator
    params = LiquidationParams(addr(devnet, "WETH"), addr(devnet, "USDC"), user,
                               quote.debt_to_cover_actual, (),
                               seized if min_collateral is None else min_collateral,
                               flash_loan=False, keep_collateral=True)
    return params, quote.debt_to_cover_actual, seized


async def test_keeping_the_collateral_sends_it_to_the_owner_unsold(devnet: Devnet) -> None:
    s = await weth_usdc_borrower(devnet)
    await devnet.tx.transact(addr(devnet, "USDC"), ERC20["mint(address,uint256)"],
                             s.liquidator, OWN)
    params, repaid, seized = await _kept_params(devnet, s.user)
    pair = devnet.m.pair("USDC", "WETH")
    pair_weth = await devnet.balance_of("WETH", pair)
    owner_weth = await devnet.balance_of("WETH", s.owner)
    owner_usdc = await devnet.balance_of("USDC", s.owner)
    receipt = await devnet.tx.send(s.liquidator, encode_liquidate(params), sender=s.owner,
                                   gas=GAS)
    assert await devnet.balance_of("WETH", s.owner) - owner_weth == seized > 0
    assert await devnet.balance_of("USDC", s.owner) == owner_usdc  # no profit in the debt asset
    assert await devnet.balance_of("USDC", s.liquidator) == OWN - repaid
    assert await devnet.balance_of("WETH", s.liquidator) == 0
    assert await devnet.balance_of("WETH", pair) == pair_weth  # nothing sold
    assert await allowance(devnet, "USDC", s.liquidator, devnet.m.pool) == 0
    assert collateral_kept(receipt, s.liquidator, s.user) == (repaid, seized)


async def test_less_collateral_than_the_floor_reverts(devnet: Devnet) -> None:
    s = await weth_usdc_borrower(devnet)
    await devnet.tx.transact(addr(devnet, "USDC"), ERC20["mint(address,uint256)"],
                             s.liquidator, OWN)
    before_block = await devnet.rpc.call("eth_blockNumber")
    greedy, _, seized = await _kept_params(devnet, s.user)
    greedy = LiquidationParams(greedy.collateral_asset, greedy.debt_asset, greedy.user,
                               greedy.debt_to_cover, (), seized + 1, flash_loan=False,
                               keep_collateral=True)
    receipt = await send_raw(devnet, s.liquidator, encode_liquidate(greedy), s.owner)
    assert int(receipt["status"], 16) == 0
    reason = await revert_name(devnet, s.liquidator, encode_liquidate(greedy), s.owner,
                               before_block)
    assert reason.startswith("InsufficientProfit(")
    assert await devnet.balance_of("USDC", s.liquidator) == OWN


async def test_keeping_needs_our_own_balance(devnet: Devnet) -> None:
    s = await weth_usdc_borrower(devnet)
    weth, usdc = addr(devnet, "WETH"), addr(devnet, "USDC")
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(weth, usdc, s.user, 10**6, (), 1, flash_loan=True, keep_collateral=True)
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(weth, usdc, s.user, 10**6, (weth, usdc), 1, flash_loan=False,
                          keep_collateral=True)
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(usdc, usdc, s.user, 10**6, (), 1, flash_loan=False,
                          keep_collateral=True)
    # The contract refuses a flash loan with no legs on its own (nothing would repay it).
    bad = LIQ["liquidate"].encode((weth, usdc, s.user, 10**6, [], 1, 1, "0x" + "00" * 20, 0, 0))
    assert await revert_name(devnet, s.liquidator, bad, s.owner) == "BadSwapPath()"
