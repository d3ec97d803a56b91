"""The 3.3-3.6 liquidation rules on the real Aave v3.6 (devnet): dust, grace period, deficit.

Each test opens positions on a fresh v3.6 devnet, reads the chain as the keeper does (reserves,
scaled balances, prices, pair reserves, funding and the 3.1+ per-reserve limits), plans with
the v3.6 rules and sends the plan's calldata from our liquidator's owner at the planned
timestamp. What the plan says is checked against the chain.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keeper.chain.abi import Function
from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.origin_build import origin
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.account import Market, ReserveState, UserAccount, UserReserve
from keeper.domain.fees import FeePolicy
from keeper.domain.liquidation import AaveRules, PoolLimits, quote_liquidation_call
from keeper.domain.plan import GasPrice, Plan, Rejection, RejectionReason
from keeper.domain.quote import UniswapV2Quoter, needed_pairs
from keeper.domain.reserve_config import UserConfiguration, decode_reserve_configuration
from keeper.domain.wadray import UINT256_MAX
from keeper.errors import RpcResponseError
from keeper.exec.simulate import revert_reason
from keeper.obs.metrics import Metrics
from keeper.pipeline.gather import FundingSource, Venue, decode_limits, limits_calls, read_funding
from keeper.pipeline.planner import PlannerConfig, plan_liquidation
from keeper.pipeline.planning import LiquidationPlanner
from keeper.pipeline.scan import HealthScanner
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3.liquidator import (
    LiquidatorConfig,
    deploy_liquidator,
    encode_liquidate,
)
from keeper.protocols.aave_v3.reader import AaveV3Contracts
from keeper.protocols.uniswap_v2.pair import UNISWAP_V2_PAIR_INIT_CODE_HASH, load_pair_reserves
from tests.conftest import running_devnet

pytestmark = pytest.mark.integration

POOL = origin("PoolInstance").abi
CONFIGURATOR = Function("setReservePause", ("address", "bool", "uint40"), ())
SCALED = artifacts.aave("AToken").abi
ORACLE = artifacts.aave("AaveOracle").abi
GWEI = 10**9
WAD = 10**18
USD = 10**8
SEND_GAS = 3_000_000
V36 = AaveRules.V3_6
# The book reads a 3.6 market exactly from the revision-aware reader on (keeper.domain.revision).

@pytest.fixture
async def devnet36() -> AsyncIterator[Devnet]:
    async with running_devnet("3.6") as devnet:
        yield devnet


# ---- the chain as the keeper reads it (v3.6 has no stable debt and no eMode price source) ----


async def read_market(d: Devnet, timestamp: int) -> Market:
    m = d.m
    calls: list[Any] = [(m.pool, POOL["getReserveData"], (r.address,)) for r in m.reserves]
    calls.append((m.oracle, ORACLE["getAssetsPrices"], ([r.address for r in m.reserves],)))
    rows = await d.tx.call_many(calls)
    reserves: dict[int, ReserveState] = {}
    for info, (data,) in zip(m.reserves, rows, strict=False):
        (word,), liquidity_index, liquidity_rate, borrow_index, borrow_rate = data[:5]
        reserves[data[7]] = ReserveState(
            info.address, data[7], decode_reserve_configuration(word), liquidity_index,
            liquidity_rate, borrow_index, borrow_rate, data[6])
    (prices,) = rows[len(m.reserves)]
    return Market(reserves, {r.address: int(p) for r, p in zip(m.reserves, prices, strict=True)},
                  timestamp)


async def read_account(d: Devnet, user: str) -> UserAccount:
    m = d.m
    calls: list[Any] = [(m.pool, POOL["getUserConfiguration"], (user,)),
                        (m.pool, POOL["getUserEMode"], (user,))]
    for r in m.reserves:
        calls.append((r.a_token, SCALED["scaledBalanceOf"], (user,)))
        calls.append((r.variable_debt_token, SCALED["scaledBalanceOf"], (user,)))
    rows = await d.tx.call_many(calls)
    ((word,),), (emode,) = rows[0], rows[1]
    assert emode == 0, "these scenarios stay out of eMode"
    positions = {r.address: UserReserve(rows[2 + 2 * i][0], rows[3 + 2 * i][0])
                 for i, r in enumerate(m.reserves)}
    return UserAccount(UserConfiguration(word), emode, positions)


async def read_limits(d: Devnet) -> PoolLimits:
    assets = [r.address for r in d.m.reserves]
    return decode_limits(assets, await d.rpc.batch(limits_calls(d.m.pool, assets)))


async def head_ts(d: Devnet) -> int:
    return int((await d.rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"], 16)


async def mine_at(d: Devnet, ts: int) -> None:
    await d.rpc.call("evm_setNextBlockTimestamp", [ts])
    await d.rpc.call("evm_mine")


async def deploy(d: Devnet) -> str:
    return await deploy_liquidator(d.tx, LiquidatorConfig(
        addresses_provider=d.m.pool_addresses_provider, uniswap_v2_factory=d.m.uniswap_factory,
        owner=d.m.keeper))


async def plan_at(d: Devnet, user: str, liquidator: str, rules: AaveRules = V36,
                  ) -> tuple[Plan | Rejection, int]:
    """Mine a block at ``ts``, read everything there and plan a liquidation at ``ts``."""
    ts = await head_ts(d) + 12
    await mine_at(d, ts)
    weth = d.m.reserve("WETH").address
    tokens = [r.address for r in d.m.reserves]
    pairs = await load_pair_reserves(d.rpc, d.m.uniswap_factory,
                                     needed_pairs(tokens, tokens, hubs=[weth]))
    funding = await read_funding(d.rpc, FundingSource(
        d.m.pool, liquidator, {r.address: r.a_token for r in d.m.reserves}))
    base_fee = int((await d.rpc.call("eth_getBlockByNumber", ["latest", False]))["baseFeePerGas"], 16)
    config = PlannerConfig(liquidator=liquidator, native_asset=weth, rules=rules, owner=d.m.keeper)
    plan = plan_liquidation(user, await read_account(d, user), await read_market(d, ts),
                            UniswapV2Quoter(pairs, hubs=[weth]), GasPrice(base_fee, GWEI),
                            funding, config, await read_limits(d))
    return plan, ts


def call_of(d: Devnet, plan: Plan) -> dict[str, Any]:
    return {"from": d.m.keeper, "to": plan.liquidator, "data": "0x" + encode_liquidate(plan.params).hex(),
            "gas": hex(SEND_GAS)}


async def send_at(d: Devnet, plan: Plan, ts: int) -> dict[str, Any]:
    await d.rpc.call("evm_setNextBlockTimestamp", [ts])
    tx_hash = await d.rpc.call("eth_sendTransaction", [call_of(d, plan)])
    receipt: dict[str, Any] = await d.tx.wait_receipt(tx_hash)
    assert int(receipt["status"], 16) == 1, receipt
    block = await d.rpc.call("eth_getBlockByNumber", [receipt["blockNumber"], False])
    assert int(block["timestamp"], 16) == ts
    return receipt


async def open_position(d: Devnet, user: str, collateral_usd: dict[str, float], debt: str,
                        debt_usd: float) -> None:
    prices = await d.prices()

    def amount(sym: str, usd: float) -> int:
        return int(usd * USD * 10**d.m.reserve(sym).decimals) // prices[sym]

    lender = "0x" + "1e" * 20
    await d.fund([user, lender])
    txs = d.users.deposit_txs(lender, debt, amount(debt, 1_000_000))
    for sym, usd in collateral_usd.items():
        txs += d.users.deposit_txs(user, sym, amount(sym, usd))
    await d.send_many(txs)
    await d.send_many([d.users.tx_borrow(user, debt, amount(debt, debt_usd))])


async def drop_price(d: Devnet, symbol: str, factor: float) -> None:
    prices = await d.prices()
    await d.set_price(symbol, int(prices[symbol] * factor))
    await d.arbitrage([symbol])


# ---- dust -------------------------------------------------------------------------------------


async def test_a_50_percent_liquidation_that_would_leave_dust_is_sized_to_the_rule(
        devnet36: Devnet) -> None:
    d, user = devnet36, "0x" + "d5" * 20
    # $4,000 of WETH against $2,500 of USDC and $600 of DAI; WETH -7% → HF ≈ 0.99. On USDC the
    # close factor is 50% of the *total* debt ($1,550), which would leave $950 of USDC debt:
    # MustNotLeaveDust. The plan repays at most what leaves $1,000 of it.
    await open_position(d, user, {"WETH": 4_000}, "USDC", 2_500)
    dai = d.m.reserve("DAI")
    await d.send_many(d.users.deposit_txs("0x" + "1e" * 20, "DAI", 10**6 * WAD))
    await d.send_many([d.users.tx_borrow(user, "DAI", 600 * WAD)])
    await drop_price(d, "WETH", 0.93)
    (data,) = await d.account_data([user])
    assert 0.95 * WAD < data.health_factor < WAD
    weth, usdc = d.m.reserve("WETH"), d.m.reserve("USDC")
    # The Pool refuses the 50% cap, by name.
    raw = POOL["liquidationCall"].encode_hex(weth.address, usdc.address, user, UINT256_MAX, False)
    with pytest.raises(RpcResponseError) as err:
        await d.rpc.call("eth_call", [{"from": d.m.keeper, "to": d.m.pool, "data": raw}, "latest"])
    assert "MustNotLeaveDust" in revert_reason(err.value)

    liquidator = await deploy(d)
    plan, ts = await plan_at(d, user, liquidator)
    assert isinstance(plan, Plan), plan
    assert (plan.collateral_asset, plan.debt_asset) == (weth.address, usdc.address)
    usdc_debt_before = await d.balance_of(usdc.variable_debt_token, user)
    owner_before = await d.balance_of("USDC", d.m.keeper)
    receipt = await send_at(d, plan, ts)
    usdc_left = await d.balance_of(usdc.variable_debt_token, user)
    print(f"\ndust rule: repaid {plan.debt_to_cover / 1e6:.6f} of {usdc_debt_before / 1e6:.6f} "
          f"USDC (50% of the total would be ~1550), USDC debt left {usdc_left / 1e6:.6f}, "
          f"gas {int(receipt['gasUsed'], 16)}")
    assert await d.balance_of("USDC", d.m.keeper) - owner_before == plan.gross_profit > 0
    assert usdc_left >= 1_000 * 10**6
    # At the edge, within a cent: the rule, not the close factor, set the size.
    assert usdc_left < 1_000 * 10**6 + 10**4
    assert await d.balance_of(dai.variable_debt_token, user) >= 600 * WAD


# ---- grace period -----------------------------------------------------------------------------


async def test_a_position_under_a_grace_period_is_sent_in_the_first_block_after_it(
        devnet36: Devnet) -> None:
    d, user = devnet36, "0x" + "9a" * 20
    await open_position(d, user, {"WETH": 10_000}, "USDC", 7_900)
    # An admin unpauses WETH with a 10-minute liquidation grace period; then WETH falls.
    await d.tx.transact(d.m.pool_configurator, CONFIGURATOR, d.m.reserve("WETH").address, False,
                        600)
    (until,) = await d.tx.call(d.m.pool, POOL["getLiquidationGracePeriod"],
                               d.m.reserve("WETH").address)
    await drop_price(d, "WETH", 0.9)
    (data,) = await d.account_data([user])
    assert data.health_factor < WAD
    liquidator = await deploy(d)
    metrics = Metrics()
    weth = d.m.reserve("WETH").address
    venue = Venue(pool=d.m.pool, liquidator=liquidator, uniswap_v2_factory=d.m.uniswap_factory,
                  pair_init_code_hash=UNISWAP_V2_PAIR_INIT_CODE_HASH, hubs=(weth,),
                  a_tokens={r.address: r.a_token for r in d.m.reserves})
    planner = LiquidationPlanner(
        d.rpc, venue, PlannerConfig(liquidator=liquidator, native_asset=weth, rules=V36,
                                    owner=d.m.keeper),
        FeePolicy(0, 2 * GWEI, 500 * GWEI), metrics, block_time=1)

    async def plan_next() -> Plan | Rejection:
        ts = await head_ts(d)
        return await planner.plan(user, await read_account(d, user), await read_market(d, ts + 1))

    # The last block of the period: the next one is stamped ``until``, still inside it.
    await mine_at(d, until - 1)
    waiting = await plan_next()
    assert isinstance(waiting, Rejection) and waiting.reason is RejectionReason.GRACE_PERIOD
    assert waiting.not_before == until + 1
    assert 'keeper_rejections_total{reason="grace_period"} 1.0' in metrics.render().decode()
    # The chain agrees: at ``until`` the liquidation reverts.
    full = quote_liquidation_call(await read_account(d, user), await read_market(d, until),
                                  weth, d.m.reserve("USDC").address, UINT256_MAX, rules=V36)
    assert full.debt_to_cover_actual > 0
    raw = POOL["liquidationCall"].encode_hex(weth, d.m.reserve("USDC").address, user, UINT256_MAX,
                                             False)
    with pytest.raises(RpcResponseError) as err:
        await d.rpc.call("eth_call", [{"from": d.m.keeper, "to": d.m.pool, "data": raw},
                                      "latest", {}, {"time": hex(until)}])
    assert "LiquidationGraceSentinelCheckFailed" in revert_reason(err.value)

    # A block at ``until``: the next is the first after the period, and the plan is made.
    await mine_at(d, until)
    plan = await plan_next()
    assert isinstance(plan, Plan), plan
    assert plan.timestamp == until + 1
    await send_at(d, plan, until + 1)


# ---- deficit ----------------------------------------------------------------------------------


async def liquidate_all_collateral(d: Devnet, user: str) -> tuple[Plan, int]:
    """A WETH/USDC position under water liquidated whole; the plan and the deficit it left."""
    await open_position(d, user, {"WETH": 10_000}, "USDC", 7_900)
    await drop_price(d, "WETH", 0.7)  # $7,000 of WETH against $7,900 of USDC: under water
    liquidator = await deploy(d)
    plan, ts = await plan_at(d, user, liquidator)
    assert isinstance(plan, Plan), plan
    receipt = await send_at(d, plan, ts)
    deficit_topic = POOL.event("DeficitCreated").topic0
    created = [lg for lg in receipt["logs"] if lg["topics"][0] == deficit_topic]
    assert len(created) == 1
    (deficit,) = await d.tx.call(d.m.pool, POOL["getReserveDeficit"], d.m.reserve("USDC").address)
    assert deficit > 0
    return plan, deficit


async def test_seizing_all_collateral_creates_a_deficit_and_leaves_nothing_to_liquidate(
        devnet36: Devnet) -> None:
    d, user = devnet36, "0x" + "de" * 20
    plan, deficit = await liquidate_all_collateral(d, user)
    # The account has nothing left: no debt, no collateral, health factor "infinite"; the
    # planner finds nothing to do.
    (after,) = await d.account_data([user])
    assert after.total_debt_base == 0 and after.total_collateral_base == 0
    assert after.health_factor == UINT256_MAX
    again, _ = await plan_at(d, user, plan.liquidator)
    assert isinstance(again, Rejection) and again.reason is RejectionReason.HEALTHY
    print(f"\ndeficit: repaid {plan.debt_to_cover / 1e6:.6f} USDC for all the WETH; "
          f"{deficit / 1e6:.6f} USDC burned into the reserve deficit")


async def test_after_a_deficit_the_book_has_no_liquidatable_account_for_the_user(
        devnet36: Devnet) -> None:
    d, user = devnet36, "0x" + "df" * 20
    await liquidate_all_collateral(d, user)
    m = d.m
    sync = BookSync(d.rpc, AaveV3Contracts(m.pool, m.oracle, m.pool_configurator,
                                           m.pool_addresses_provider),
                    SyncConfig(start_block=m.deploy_block, follow_depth=0, progress=False,
                               checkpoint_every=0.0))
    await sync.catch_up()
    scanner = await asyncio.to_thread(HealthScanner, sync.book)
    found = await scanner.scan(d.rpc, m.pool, multicall=m.multicall3)
    assert user not in {c.user for c in found}
    bad_debt = getattr(scanner, "bad_debt", None)  # the revision-aware scanner's bad-debt set
    assert bad_debt is not None and user not in {c.user for c in bad_debt}
    # The burned debt is gone from the book too.
    assert all(p.scaled_variable_debt == 0 for p in sync.book.account(user).reserves.values())


# ---- the demo's population: plan = chain ------------------------------------------------------


async def test_every_plan_for_the_demo_population_passes_on_chain(devnet36: Devnet) -> None:
    """``make demo``'s market after its crash (seed 1, 200 borrowers, WETH -28%, WBTC -15% over
    5 blocks): every account the planner finds worth liquidating is planned at a size the
    Pool takes. Issue 9: plans that seized all of a collateral repaid exactly the debt that
    bought it; sent as ``debtToCover``, that amount bought a few wei less, the dust rule then
    applied and the Pool refused (MustNotLeaveDust)."""
    d = devnet36
    population = plan_population(1, 200, d.m, await d.prices())
    await seed_population(d, population)
    await crash(d, {"WETH": 0.72, "WBTC": 0.85}, blocks=5)
    users = [p.address for p in population]
    under = [u for u, a in zip(users, await d.account_data(users), strict=True)
             if a.health_factor < WAD]
    assert len(under) >= 20
    liquidator = await deploy(d)

    # The keeper's own book (it knows the eMode categories the population uses), read at the
    # head and projected to the next block's timestamp: the plans are exact for it.
    m = d.m
    sync = BookSync(d.rpc, AaveV3Contracts(m.pool, m.oracle, m.pool_configurator,
                                           m.pool_addresses_provider),
                    SyncConfig(start_block=m.deploy_block, follow_depth=0, progress=False,
                               checkpoint_every=0.0))
    await sync.catch_up()
    ts = await head_ts(d) + 1
    market = dataclasses.replace(sync.book.market(), timestamp=ts)
    weth = d.m.reserve("WETH").address
    tokens = [r.address for r in d.m.reserves]
    pairs = await load_pair_reserves(d.rpc, d.m.uniswap_factory,
                                     needed_pairs(tokens, tokens, hubs=[weth]))
    funding = await read_funding(d.rpc, FundingSource(
        d.m.pool, liquidator, {r.address: r.a_token for r in d.m.reserves}))
    limits = await read_limits(d)
    config = PlannerConfig(liquidator=liquidator, native_asset=weth, rules=V36, owner=d.m.keeper)
    refused: dict[str, str] = {}
    plans: list[Plan] = []
    for u in under:
        plan = plan_liquidation(u, sync.book.account(u), market,
                                UniswapV2Quoter(pairs, hubs=[weth]), GasPrice(GWEI, GWEI),
                                funding, config, limits)
        if not isinstance(plan, Plan):
            assert plan.reason is not RejectionReason.DUST, plan
            continue
        plans.append(plan)
        try:
            await d.rpc.call("eth_call", [call_of(d, plan), "latest", {}, {"time": hex(ts)}])
        except RpcResponseError as exc:
            refused[u] = revert_reason(exc)
    print(f"\ndemo population: {len(under)} under water, {len(plans)} planned, "
          f"{len(refused)} refused by the chain")
    assert not refused, refused
    assert len(plans) >= 20
