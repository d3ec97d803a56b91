"""FlashLiquidator with the tokens an Aave market would not list but a contract must survive:
fee-on-transfer collateral, a debt token whose transfer returns nothing (USDT-style), a token
that re-enters; and every custom error of the contract triggered by some test.

A mock lending pool (tests/contract_fixtures/sol) stands in for Aave here: it takes the debt
asked and pays a set amount of collateral; the swap runs on a real Uniswap V2 pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.domain.amm import get_amount_out
from keeper.domain.plan import LiquidationParams
from keeper.domain.swap_route import SwapHop, SwapLeg, Venue
from keeper.errors import ExecutionReverted
from keeper.protocols.aave_v3.liquidator import (
    LiquidatorConfig,
    decode_revert,
    deploy_data,
    deploy_liquidator,
    encode_liquidate,
)
from keeper.protocols.uniswap_v2.pair import pair_address
from tests.contract_fixtures.build import test_contract
from tests.integration.test_flash_liquidator import GAS, LIQ, LIQ_EVENT, _log_of, revert_name

TOKEN = test_contract("TestToken").abi
MOCK = test_contract("MockLendingPool").abi
V2_FACTORY = artifacts.uniswap("UniswapV2Factory").abi
PAIR = artifacts.uniswap("UniswapV2Pair").abi
USER = "0x" + "b5" * 20
ZERO = "0x" + "00" * 20


@dataclass(frozen=True)
class MockMarket:
    liquidator: str
    pool: str
    fot: str
    """18 decimals, 1% of every transfer burned."""
    usdt: str
    """6 decimals, transfer/transferFrom/approve return nothing."""
    pair: str


async def token(devnet: Devnet, symbol: str, decimals: int, fee_bps: int, returns_bool: bool) -> str:
    return await devnet.tx.deploy(test_contract("TestToken").deploy_data(
        symbol, decimals, fee_bps, returns_bool), what=symbol)


async def mock_market(devnet: Devnet) -> MockMarket:
    tx = devnet.tx
    pool = await tx.deploy(test_contract("MockLendingPool").deploy_data(), what="MockLendingPool")
    fot = await token(devnet, "FOT", 18, 100, True)
    usdt = await token(devnet, "USDTX", 6, 0, False)
    await tx.transact(devnet.m.uniswap_factory, V2_FACTORY["createPair"], fot, usdt)
    pair = pair_address(devnet.m.uniswap_factory, fot, usdt)
    # 1,000 FOT against 2,000,000 USDTX: a FOT is worth 2,000.
    await tx.transact(fot, TOKEN["mint"], pair, 1_000 * 10**18)
    await tx.transact(usdt, TOKEN["mint"], pair, 2_000_000 * 10**6)
    await tx.transact(pair, PAIR["mint"], devnet.m.deployer)
    liquidator = await deploy_liquidator(devnet.tx, LiquidatorConfig(
        addresses_provider=pool, uniswap_v2_factory=devnet.m.uniswap_factory,
        owner=devnet.m.keeper))
    return MockMarket(liquidator, pool, fot, usdt, pair)


async def balance(devnet: Devnet, tok: str, who: str) -> int:
    (b,) = await devnet.tx.call(tok, TOKEN["balanceOf"], who)
    return int(b)


def fot_order(mm: MockMarket, debt: int, min_profit: int = 0) -> LiquidationParams:
    hop = SwapHop(Venue.UNISWAP_V2, mm.pair, mm.fot, mm.usdt)
    return LiquidationParams(mm.fot, mm.usdt, USER, debt, (), min_profit, False,
                             (SwapLeg((hop,)),))


async def test_fee_on_transfer_collateral_and_a_debt_token_that_returns_nothing(
    devnet: Devnet,
) -> None:
    mm = await mock_market(devnet)
    tx, owner = devnet.tx, devnet.m.keeper
    debt, seize = 1_000 * 10**6, 10**18  # repay 1,000 for 1 FOT (≈ 2,000)
    await tx.transact(mm.usdt, TOKEN["mint"], mm.liquidator, 5_000 * 10**6)
    await tx.transact(mm.fot, TOKEN["mint"], mm.pool, seize)
    await tx.transact(mm.pool, MOCK["setSeize"], seize)
    # The fee is taken twice: from the pool to us, and from us to the pair.
    received = seize - seize // 100
    into_pair = received - received // 100
    r0, r1, _ = await tx.call(mm.pair, PAIR["getReserves"])
    r_fot, r_usdt = (r0, r1) if mm.fot < mm.usdt else (r1, r0)
    profit = get_amount_out(into_pair, r_fot, r_usdt) - debt
    before = await balance(devnet, mm.usdt, owner)
    receipt = await tx.send(mm.liquidator, encode_liquidate(fot_order(mm, debt, profit)),
                            sender=owner, gas=GAS)
    assert await balance(devnet, mm.usdt, owner) - before == profit
    event = LIQ_EVENT.decode(*_log_of(receipt, mm.liquidator))
    assert event["collateralSeized"] == received and event["debtRepaid"] == debt
    assert event["flashSource"] == 0
    assert await balance(devnet, mm.fot, mm.liquidator) == 0
    assert await balance(devnet, mm.usdt, mm.liquidator) == 5_000 * 10**6
    (left,) = await tx.call(mm.usdt, TOKEN["allowance"], mm.liquidator, mm.pool)
    assert left == 0


async def test_nothing_seized_reverts(devnet: Devnet) -> None:
    mm = await mock_market(devnet)
    await devnet.tx.transact(mm.usdt, TOKEN["mint"], mm.liquidator, 5_000 * 10**6)
    data = encode_liquidate(fot_order(mm, 1_000 * 10**6))
    assert await revert_name(devnet, mm.liquidator, data, devnet.m.keeper) == "NoCollateralSeized()"


async def test_failed_token_calls_are_named(devnet: Devnet) -> None:
    mm = await mock_market(devnet)
    owner, eoa = devnet.m.keeper, "0x" + "e0" * 20
    # No code at the token's address: a call "succeeds" with nothing; it must not pass.
    assert await revert_name(devnet, mm.liquidator, LIQ["rescue"].encode(eoa, owner, 1), owner) == (
        f"TokenCallFailed({eoa}, {bytes.fromhex('a9059cbb')!r})")
    # The token reverts (more than held), USDT-style (no return value) included.
    for tok in (mm.usdt, mm.fot):
        reason = await revert_name(devnet, mm.liquidator, LIQ["rescue"].encode(tok, owner, 1), owner)
        assert reason.startswith("TokenCallFailed(") and tok in reason.lower()


async def test_zero_addresses_are_refused(devnet: Devnet) -> None:
    mm = await mock_market(devnet)
    owner = devnet.m.keeper
    assert await revert_name(devnet, mm.liquidator, LIQ["rescue"].encode(mm.usdt, ZERO, 1),
                             owner) == "ZeroAddress()"
    assert await revert_name(devnet, mm.liquidator, LIQ["rescueEther"].encode(ZERO, 1),
                             owner) == "ZeroAddress()"
    # The constructor: the owner checked in Python first, so build the creation code by hand.
    code = artifacts.ours("FlashLiquidator").deploy_data(
        mm.pool, devnet.m.uniswap_factory, b"\0" * 32, ZERO, b"\0" * 32, ZERO)
    with pytest.raises(ExecutionReverted) as info:
        await devnet.rpc.call("eth_call", [{"from": owner, "data": "0x" + code.hex()}, "latest"])
    assert isinstance(info.value.data, str) and decode_revert(info.value.data) == "ZeroAddress()"
    # A provider that resolves no Pool.
    code = deploy_data(LiquidatorConfig(mm.fot, devnet.m.uniswap_factory, owner))
    with pytest.raises(ExecutionReverted):  # the token has no getPool(): no error data to name
        await devnet.rpc.call("eth_call", [{"from": owner, "data": "0x" + code.hex()}, "latest"])


async def test_ether_that_cannot_be_delivered(devnet: Devnet) -> None:
    mm = await mock_market(devnet)
    await devnet.rpc.call("anvil_setBalance", [mm.liquidator, hex(10**18)])
    # The liquidator itself accepts no ether.
    data = LIQ["rescueEther"].encode(mm.liquidator, 10**18)
    assert await revert_name(devnet, mm.liquidator, data, devnet.m.keeper) == "EtherTransferFailed()"
    await devnet.tx.send(mm.liquidator, LIQ["rescueEther"].encode(devnet.m.keeper, 10**18),
                         sender=devnet.m.keeper)


async def test_reentrancy_is_refused(devnet: Devnet) -> None:
    mm = await mock_market(devnet)
    evil_abi = test_contract("ReentrantToken").abi
    evil = await devnet.tx.deploy(test_contract("ReentrantToken").deploy_data())
    # The owner hands the contract to a token that re-enters rescue from its transfer.
    await devnet.tx.transact(mm.liquidator, LIQ["transferOwnership"], evil, sender=devnet.m.keeper)
    reason = await revert_name(devnet, evil, evil_abi["attack"].encode(mm.liquidator),
                               devnet.m.keeper)
    assert reason == "Reentrancy()"


def test_every_custom_error_is_triggered_by_a_test() -> None:
    """Each error of the ABI is the expected revert of some assertion in these test files."""
    here = Path(__file__).parent
    text = "".join(p.read_text() for p in here.glob("test_*liquidator*.py"))
    errors = {item["name"] for item in artifacts.ours("FlashLiquidator").abi_json
              if item.get("type") == "error"}
    missing = {e for e in errors if not re.search(rf'"{e}\(', text)
               and not re.search(rf'f"{e}\(', text)}
    assert not missing, missing
