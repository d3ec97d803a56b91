"""FlashLiquidator.liquidateBatch against the real Aave V3 on the devnet: several accounts
liquidated in one transaction, each order in its own frame, so one that fails (the account is
healthy, or taken first) is undone alone and the others stand; a batch that liquidates nothing
reverts, and a malformed one is refused whole."""

from __future__ import annotations

from eth_abi import decode as abi_decode

from keeper.devnet.driver import Devnet
from keeper.domain.plan import LiquidationParams
from keeper.exec.simulate import reason_of
from keeper.protocols.aave_v3.liquidator import (
    batch_results,
    collateral_kept,
    encode_liquidate,
    encode_liquidate_batch,
)
from tests.integration.test_flash_liquidator import (
    ERC20,
    LIQ,
    addr,
    deploy,
    next_timestamp,
    provide_liquidity,
    quote_at,
    revert_name,
    send_raw,
)

OWN = 100_000 * 10**6
SICK = ("0x" + "d1" * 20, "0x" + "d2" * 20)
HEALTHY = "0x" + "d3" * 20


async def _world(devnet: Devnet) -> str:
    """Two accounts under water (10 WETH, 15,000 USDC borrowed, WETH at $1,800) and one
    healthy (5,000 USDC borrowed); our liquidator, funded in USDC."""
    await devnet.fund([*SICK, HEALTHY])
    await provide_liquidity(devnet)
    txs = []
    for user, debt in ((SICK[0], 15_000), (SICK[1], 15_000), (HEALTHY, 5_000)):
        txs += [*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                devnet.users.tx_borrow(user, "USDC", debt * 10**6)]
    await devnet.send_many(txs)
    await devnet.set_price("WETH", 1800 * 10**8)
    await devnet.arbitrage(["WETH"])
    liquidator = await deploy(devnet)
    await devnet.tx.transact(addr(devnet, "USDC"), ERC20["mint(address,uint256)"], liquidator, OWN)
    return liquidator


def _order(devnet: Devnet, user: str, debt: int, floor: int) -> LiquidationParams:
    return LiquidationParams(addr(devnet, "WETH"), addr(devnet, "USDC"), user, debt, (), floor,
                             flash_loan=False, keep_collateral=True)


async def test_a_batch_liquidates_each_account_and_undoes_only_the_one_that_fails(
        devnet: Devnet) -> None:
    liquidator = await _world(devnet)
    owner = devnet.m.keeper
    ts = await next_timestamp(devnet)
    quotes = [await quote_at(devnet, u, "WETH", "USDC", ts) for u in SICK]
    orders = [_order(devnet, SICK[0], quotes[0].debt_to_cover_actual,
                     quotes[0].collateral_to_liquidator),
              _order(devnet, HEALTHY, 1_000 * 10**6, 1),
              _order(devnet, SICK[1], quotes[1].debt_to_cover_actual,
                     quotes[1].collateral_to_liquidator)]
    owner_weth = await devnet.balance_of("WETH", owner)
    receipt = await send_raw(devnet, liquidator, encode_liquidate_batch(orders), owner)
    assert int(receipt["status"], 16) == 1
    for user, quote in zip(SICK, quotes, strict=True):
        assert collateral_kept(receipt, liquidator, user) == (
            quote.debt_to_cover_actual, quote.collateral_to_liquidator)
    assert collateral_kept(receipt, liquidator, HEALTHY) is None
    results = batch_results(receipt, liquidator)
    assert [user for user, _ in results] == [SICK[0], HEALTHY, SICK[1]]
    assert [isinstance(r, dict) for _, r in results] == [True, False, True]
    failed = results[1][1]
    assert isinstance(failed, bytes)
    # Aave 3.0's HEALTH_FACTOR_NOT_BELOW_THRESHOLD, as the simulation would name it.
    assert reason_of("0x" + failed.hex(), "execution reverted") == "reverted: 45"
    seized = sum(q.collateral_to_liquidator for q in quotes)
    assert await devnet.balance_of("WETH", owner) - owner_weth == seized
    repaid = sum(q.debt_to_cover_actual for q in quotes)
    assert await devnet.balance_of("USDC", liquidator) == OWN - repaid
    assert await devnet.balance_of("WETH", liquidator) == 0


async def test_a_batch_that_liquidates_nothing_reverts(devnet: Devnet) -> None:
    liquidator = await _world(devnet)
    owner = devnet.m.keeper
    await next_timestamp(devnet)
    greedy = _order(devnet, SICK[0], 1_000 * 10**6, 10**30)  # a floor nothing meets
    data = encode_liquidate_batch([greedy, _order(devnet, HEALTHY, 1_000 * 10**6, 1)])
    assert await revert_name(devnet, liquidator, data, owner) == "NothingLiquidated()"
    receipt = await send_raw(devnet, liquidator, data, owner)
    assert int(receipt["status"], 16) == 0
    assert await devnet.balance_of("USDC", liquidator) == OWN


async def test_a_malformed_batch_is_refused_whole_and_orders_run_only_inside_one(
        devnet: Devnet) -> None:
    liquidator = await _world(devnet)
    owner = devnet.m.keeper
    weth, usdc = addr(devnet, "WETH"), addr(devnet, "USDC")
    kept = _order(devnet, SICK[0], 1_000 * 10**6, 1)
    zero = "0x" + "00" * 20
    sale = (weth, usdc, SICK[1], 10**6, [(0, [(0, usdc, 0)])], 1, 0, zero, 0, 0)
    mixed = LIQ["liquidateBatch"].encode([tuple(_tuple(kept)), sale])
    assert await revert_name(devnet, liquidator, mixed, owner) == "BadSwapPath()"
    # Only the contract itself, inside a batch, runs an order of one; only the owner batches.
    one = LIQ["keepOrder"].encode(_tuple(kept))
    assert await revert_name(devnet, liquidator, one, owner) == "NotSelf()"
    assert await revert_name(devnet, liquidator, encode_liquidate_batch([kept]),
                             "0x" + "d4" * 20) == "NotOwner()"


def _tuple(params: LiquidationParams) -> tuple[object, ...]:
    """The order as the contract's tuple (what ``encode_liquidate`` puts after the selector)."""
    (order,) = abi_decode([LIQ["liquidate"].inputs[0]], encode_liquidate(params)[4:])
    return tuple(order)
