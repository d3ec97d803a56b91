"""The planner against the real Aave V3 and Uniswap V2 on the devnet: plan, send, compare.

Each test opens a position, makes it liquidatable, then reads the chain as the keeper would
(reserves, user balances, oracle prices, pair reserves, the Pool's flash-loan premium), plans
the liquidation for the timestamp of the next block, deploys our FlashLiquidator and sends
the plan's calldata from its owner at exactly that timestamp. The owner must receive the
plan's expected profit to the wei, the Pool must report the planned debt repaid and collateral
seized, and the gas model must cover the gas used.

Reads and the liquidation happen at the same block timestamp: a block is mined at ``ts`` first
(so that every ``eth_call``, including the rate-based wstETH price, sees ``ts``), then the
liquidation is mined at ``ts`` again (anvil accepts an equal timestamp).
"""

from __future__ import annotations

from typing import Any

import pytest

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.domain.account import EModeCategory, Market, ReserveState, UserAccount, UserReserve
from keeper.domain.amm import get_amount_out, sort_tokens
from keeper.domain.liquidation import AaveRules
from keeper.domain.plan import GasPrice, Plan, Rejection, RejectionReason
from keeper.domain.quote import UniswapV2Quoter, needed_pairs
from keeper.domain.reserve_config import UserConfiguration, decode_reserve_configuration
from keeper.pipeline.gather import FundingSource, read_funding
from keeper.pipeline.planner import PlannerConfig, plan_liquidation
from keeper.protocols.aave_v3.liquidator import (
    LiquidatorConfig,
    deploy_liquidator,
    encode_liquidate,
)
from keeper.protocols.uniswap_v2.pair import load_pair_reserves

pytestmark = pytest.mark.integration

POOL = artifacts.aave("Pool").abi
ORACLE = artifacts.aave("AaveOracle").abi
SCALED = artifacts.aave("AToken").abi
STABLE = artifacts.aave("StableDebtToken").abi
ERC20 = artifacts.aave("MintableERC20").abi
PAIR = artifacts.uniswap("UniswapV2Pair").abi
LIQUIDATION_CALL_TOPIC = POOL.event("LiquidationCall").topic0
GWEI = 10**9
SEND_GAS = 3_000_000


# ---- the chain as the keeper reads it ------------------------------------------------------------


async def read_market(devnet: Devnet, timestamp: int) -> Market:
    """Reserves (Pool.getReserveData), oracle prices and eMode categories, in one batch."""
    m = devnet.m
    calls: list[Any] = [(m.pool, POOL["getReserveData"], (r.address,)) for r in m.reserves]
    calls.append((m.oracle, ORACLE["getAssetsPrices"], ([r.address for r in m.reserves],)))
    calls += [(m.pool, POOL["getEModeCategoryData"], (e.id,)) for e in m.emodes]
    rows = await devnet.tx.call_many(calls)
    reserves: dict[int, ReserveState] = {}
    for info, (data,) in zip(m.reserves, rows, strict=False):
        # ReserveData: configuration, liquidityIndex, currentLiquidityRate, variableBorrowIndex,
        # currentVariableBorrowRate, currentStableBorrowRate, lastUpdateTimestamp, id, ...
        (word,), liquidity_index, liquidity_rate, borrow_index, borrow_rate = data[:5]
        last_update, reserve_id = data[6], data[7]
        reserves[reserve_id] = ReserveState(
            asset=info.address,
            id=reserve_id,
            configuration=decode_reserve_configuration(word),
            liquidity_index=liquidity_index,
            current_liquidity_rate=liquidity_rate,
            variable_borrow_index=borrow_index,
            current_variable_borrow_rate=borrow_rate,
            last_update_timestamp=last_update,
        )
    (prices,) = rows[len(m.reserves)]
    categories: dict[int, EModeCategory] = {}
    for emode, (category,) in zip(m.emodes, rows[len(m.reserves) + 1 :], strict=True):
        ltv, threshold, bonus, source, label = category
        categories[emode.id] = EModeCategory(ltv, threshold, bonus, str(source).lower(), label)
    return Market(
        reserves=reserves,
        prices={r.address: int(p) for r, p in zip(m.reserves, prices, strict=True)},
        timestamp=timestamp,
        emode_categories=categories,
    )


async def read_account(devnet: Devnet, user: str) -> UserAccount:
    """Configuration bits, eMode and scaled balances (Pool.getUserConfiguration, ...)."""
    m = devnet.m
    calls: list[Any] = [
        (m.pool, POOL["getUserConfiguration"], (user,)),
        (m.pool, POOL["getUserEMode"], (user,)),
    ]
    for r in m.reserves:
        calls.append((r.a_token, SCALED["scaledBalanceOf"], (user,)))
        calls.append((r.variable_debt_token, SCALED["scaledBalanceOf"], (user,)))
        calls.append((r.stable_debt_token, STABLE["principalBalanceOf"], (user,)))
    rows = await devnet.tx.call_many(calls)
    ((config_word,),), (emode,) = rows[0], rows[1]
    positions: dict[str, UserReserve] = {}
    for i, r in enumerate(m.reserves):
        (scaled_supply,), (scaled_debt,), (stable,) = rows[2 + 3 * i : 5 + 3 * i]
        assert stable == 0, "these scenarios borrow at the variable rate only"
        positions[r.address] = UserReserve(
            scaled_a_token_balance=scaled_supply, scaled_variable_debt=scaled_debt
        )
    return UserAccount(UserConfiguration(config_word), emode, positions)


# ---- scenario helpers -------------------------------------------------------------------------------


def addr(devnet: Devnet, symbol: str) -> str:
    return devnet.m.reserve(symbol).address


async def provide_liquidity(devnet: Devnet, amounts: dict[str, int]) -> None:
    """A lender supplies what the borrowers will borrow."""
    lender = "0x" + "1e" * 20
    await devnet.fund([lender])
    txs = []
    for symbol, amount in amounts.items():
        txs += devnet.users.deposit_txs(lender, symbol, amount)
    await devnet.send_many(txs)


async def mine_at(devnet: Devnet, timestamp: int) -> None:
    await devnet.rpc.call("evm_setNextBlockTimestamp", [timestamp])
    await devnet.rpc.call("evm_mine")


async def latest_block(devnet: Devnet) -> dict[str, Any]:
    block: dict[str, Any] = await devnet.rpc.call("eth_getBlockByNumber", ["latest", False])
    return block


async def plan_now(devnet: Devnet, user: str, liquidator: str,
                   rules: AaveRules = AaveRules.V3_0) -> tuple[Plan | Rejection, int]:
    """Mine a block at ``ts``, read everything at it and plan for a liquidation at ``ts``."""
    ts = int((await latest_block(devnet))["timestamp"], 16) + 12
    await mine_at(devnet, ts)
    m = devnet.m
    weth = addr(devnet, "WETH")
    tokens = [r.address for r in m.reserves]
    market = await read_market(devnet, ts)
    account = await read_account(devnet, user)
    pairs = await load_pair_reserves(
        devnet.rpc, m.uniswap_factory, needed_pairs(tokens, tokens, hubs=[weth])
    )
    funding = await read_funding(
        devnet.rpc,
        FundingSource(pool=m.pool, liquidator=liquidator,
                      a_tokens={r.address: r.a_token for r in m.reserves}),
    )
    base_fee = int((await latest_block(devnet))["baseFeePerGas"], 16)
    config = PlannerConfig(liquidator=liquidator, native_asset=weth, rules=rules)
    plan = plan_liquidation(
        user, account, market, UniswapV2Quoter(pairs, hubs=[weth]),
        GasPrice(base_fee=base_fee, priority_fee=GWEI), funding, config,
    )
    return plan, ts


async def execute(devnet: Devnet, plan: Plan, ts: int) -> dict[str, Any]:
    """Send the plan's calldata from the owner, mined at ``ts``; return the receipt."""
    await devnet.rpc.call("evm_setNextBlockTimestamp", [ts])
    tx_hash = await devnet.rpc.call("eth_sendTransaction", [{
        "from": devnet.m.keeper, "to": plan.liquidator, "data": "0x" + encode_liquidate(plan.params).hex(),
        "gas": hex(SEND_GAS),
    }])
    receipt = await devnet.tx.wait_receipt(tx_hash)
    assert int(receipt["status"], 16) == 1, receipt
    block = await devnet.rpc.call("eth_getBlockByNumber", [receipt["blockNumber"], False])
    assert int(block["timestamp"], 16) == ts
    return receipt


async def deploy(devnet: Devnet) -> str:
    return await deploy_liquidator(devnet.tx, LiquidatorConfig(
        addresses_provider=devnet.m.pool_addresses_provider,
        uniswap_v2_factory=devnet.m.uniswap_factory,
        owner=devnet.m.keeper,
    ))


async def check_plan_executes_to_the_wei(
    devnet: Devnet, user: str, collateral: str, debt: str
) -> Plan:
    liquidator = await deploy(devnet)
    plan, ts = await plan_now(devnet, user, liquidator)
    assert isinstance(plan, Plan), plan
    assert (plan.collateral_asset, plan.debt_asset) == (addr(devnet, collateral), addr(devnet, debt))
    owner = devnet.m.keeper
    before = await devnet.balance_of(debt, owner)
    receipt = await execute(devnet, plan, ts)
    after = await devnet.balance_of(debt, owner)
    # The realised profit is the planned one, to the wei (gas is paid in ETH, apart).
    assert after - before == plan.gross_profit > 0
    # The Pool repaid and seized exactly what was planned.
    (event,) = [lg for lg in receipt["logs"] if lg["topics"][0] == LIQUIDATION_CALL_TOPIC]
    fields = POOL.event("LiquidationCall").decode(event["topics"], event["data"])
    assert fields["debtToCover"] == plan.debt_to_cover
    assert fields["liquidatedCollateralAmount"] == plan.collateral_seized
    # Nothing is left in the contract: the whole seizure was sold, the profit paid out.
    assert await devnet.balance_of(collateral, plan.liquidator) == 0
    assert await devnet.balance_of(debt, plan.liquidator) == 0
    # The gas model covers the real thing, without being wildly pessimistic.
    gas_used = int(receipt["gasUsed"], 16)
    assert plan.gas_estimate * 6 // 10 <= gas_used <= plan.gas_estimate, (gas_used, plan)
    return plan


# ---- scenarios -----------------------------------------------------------------------------------


async def test_weth_usdc(devnet: Devnet) -> None:
    """10 WETH supplied, 15,000 USDC borrowed; WETH $2,000 -> $1,800 (HF 1.10 -> 0.99)."""
    user = "0x" + "a1" * 20
    await provide_liquidity(devnet, {"USDC": 100_000 * 10**6})
    await devnet.fund([user])
    await devnet.send_many([*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                            devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)])
    await devnet.set_price("WETH", 1_800 * 10**8)
    await devnet.arbitrage(["WETH"])
    plan = await check_plan_executes_to_the_wei(devnet, user, "WETH", "USDC")
    # The close factor (50%) is the limit in $20M pools; interest makes the debt a bit more.
    assert 7_500 * 10**6 - 100 <= plan.debt_to_cover <= 7_501 * 10**6
    assert plan.use_flash_loan


async def _wbtc_dai_under_water(devnet: Devnet, user: str) -> None:
    """1 WBTC against 28,000 DAI (8 vs 18 decimals); WBTC $40,000 -> $37,000 (HF 0.99)."""
    await provide_liquidity(devnet, {"DAI": 100_000 * 10**18})
    await devnet.fund([user])
    await devnet.send_many([*devnet.users.deposit_txs(user, "WBTC", 10**8),
                            devnet.users.tx_borrow(user, "DAI", 28_000 * 10**18)])
    await devnet.set_price("WBTC", 37_000 * 10**8)
    await devnet.arbitrage(["WBTC"])


async def test_wbtc_dai(devnet: Devnet) -> None:
    """1 WBTC against 28,000 DAI (8 vs 18 decimals); WBTC $40,000 -> $37,000 (HF 0.99)."""
    user = "0x" + "a2" * 20
    await _wbtc_dai_under_water(devnet, user)
    await check_plan_executes_to_the_wei(devnet, user, "WBTC", "DAI")


async def test_wsteth_weth_in_emode(devnet: Devnet) -> None:
    """eMode 2: 10 wstETH against 10.3 WETH (HF 1.03); 60 days of 28% WETH interest -> HF < 1."""
    user = "0x" + "a3" * 20
    # A small WETH supply so that utilisation (86%) and the borrow rate are high.
    await provide_liquidity(devnet, {"WETH": 12 * 10**18})
    await devnet.fund([user])
    await devnet.send_many([devnet.users.tx_set_emode(user, 2),
                            *devnet.users.deposit_txs(user, "wstETH", 10 * 10**18),
                            devnet.users.tx_borrow(user, "WETH", 10_300_000_000_000_000_000)])
    await devnet.increase_time(60 * 86_400)
    await devnet.arbitrage(["wstETH"])
    (data,) = await devnet.account_data([user])
    assert data.health_factor < 10**18
    plan = await check_plan_executes_to_the_wei(devnet, user, "wstETH", "WETH")
    assert plan.swap_path == (addr(devnet, "wstETH"), addr(devnet, "WETH"))


async def test_link_usdc_isolated(devnet: Devnet) -> None:
    """Isolation mode: 2,000 LINK against 15,000 USDC; LINK $15 -> $11.40 (HF 0.988)."""
    user = "0x" + "a4" * 20
    await provide_liquidity(devnet, {"USDC": 100_000 * 10**6})
    await devnet.fund([user])
    await devnet.send_many([*devnet.users.deposit_txs(user, "LINK", 2_000 * 10**18),
                            devnet.users.tx_use_as_collateral(user, "LINK", True),
                            devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)])
    await devnet.set_price("LINK", 1_140_000_000)
    await devnet.arbitrage(["LINK"])
    await check_plan_executes_to_the_wei(devnet, user, "LINK", "USDC")


async def test_two_hops_when_the_direct_pool_is_off_price(devnet: Devnet) -> None:
    """WBTC/DAI again, but someone dumped WBTC into the direct pool: sell through WETH."""
    user = "0x" + "a6" * 20
    await _wbtc_dai_under_water(devnet, user)
    await dump_into_pair(devnet, "WBTC", "DAI", share=10)
    plan = await check_plan_executes_to_the_wei(devnet, user, "WBTC", "DAI")
    assert plan.swap_path == (addr(devnet, "WBTC"), addr(devnet, "WETH"), addr(devnet, "DAI"))


async def test_own_balance_without_a_flash_loan(devnet: Devnet) -> None:
    """The liquidator already holds USDC: it repays from its balance and pays no premium."""
    user = "0x" + "a7" * 20
    await provide_liquidity(devnet, {"USDC": 100_000 * 10**6})
    await devnet.fund([user])
    await devnet.send_many([*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                            devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)])
    await devnet.set_price("WETH", 1_800 * 10**8)
    await devnet.arbitrage(["WETH"])
    liquidator = await deploy(devnet)
    held = 20_000 * 10**6
    await devnet.tx.transact(addr(devnet, "USDC"), ERC20["mint(address,uint256)"], liquidator, held)
    plan, ts = await plan_now(devnet, user, liquidator)
    assert isinstance(plan, Plan) and not plan.use_flash_loan and plan.flash_premium == 0
    before = await devnet.balance_of("USDC", devnet.m.keeper)
    receipt = await execute(devnet, plan, ts)
    assert await devnet.balance_of("USDC", devnet.m.keeper) - before == plan.gross_profit
    # The contract's own funds are back where they were: only the profit left.
    assert await devnet.balance_of("USDC", liquidator) == held
    gas_used = int(receipt["gasUsed"], 16)
    assert plan.gas_estimate * 6 // 10 <= gas_used <= plan.gas_estimate


async def dump_into_pair(devnet: Devnet, sell: str, buy: str, share: int) -> None:
    """Sell ``1/share`` of the pair's ``sell`` reserve into it: its price there drops."""
    pair = devnet.m.pair(sell, buy)
    reserve_sell, reserve_buy = await devnet.pair_reserves(sell, buy)
    amount_in = reserve_sell // share
    out = get_amount_out(amount_in, reserve_sell, reserve_buy)
    await devnet.tx.transact(addr(devnet, sell), ERC20["mint(address,uint256)"], pair, amount_in)
    token0, _ = sort_tokens(addr(devnet, sell), addr(devnet, buy))
    amounts = (0, out) if token0 == addr(devnet, sell) else (out, 0)
    await devnet.tx.transact(pair, PAIR["swap"], *amounts, devnet.m.deployer, b"")


async def test_healthy_account_is_rejected(devnet: Devnet) -> None:
    user = "0x" + "a5" * 20
    await provide_liquidity(devnet, {"USDC": 100_000 * 10**6})
    await devnet.fund([user])
    await devnet.send_many([*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                            devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)])
    plan, _ = await plan_now(devnet, user, await deploy(devnet))
    assert isinstance(plan, Rejection) and plan.reason is RejectionReason.HEALTHY
