"""FlashLiquidator through Uniswap V3 pools (and V2 + V3 splits, and V3 flash loans) on a real
Aave market on the devnet, predicted to the wei; the V3 callbacks against spoofing; a pool
moved between planning and mining.

V3 hops are quoted by the pools themselves (a swap reverted in its callback, in an eth_call on
the state before the liquidation) and fed to ``predict_outcome`` as its injected V3 hop quoter.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import eth_abi
import pytest

from keeper.devnet.driver import Devnet
from keeper.domain.amm import sort_tokens
from keeper.domain.plan import LiquidationParams, LiquidatorParamsError, V3FlashPool
from keeper.domain.swap_route import SwapHop, SwapLeg, Venue
from keeper.protocols.aave_v3.liquidator import (
    LiquidationOutcome,
    LiquidatorConfig,
    deploy_liquidator,
    encode_liquidate,
    leg_quoter,
    predict_outcome,
)
from keeper.protocols.uniswap_v2.pair import pair_address
from tests.contract_fixtures.build import test_contract
from tests.contract_fixtures.uniswap_v3 import UniswapV3, deploy_uniswap_v3, raw_price
from tests.integration.test_flash_liquidator import (
    ERC20,
    GAS,
    LIQ,
    LIQ_EVENT,
    PAIR,
    Setup,
    _log_of,
    addr,
    allowance,
    balances,
    flash_premium_total,
    next_timestamp,
    provide_liquidity,
    quote_at,
    read_account,
    revert_name,
    send_raw,
)

ZERO = "0x" + "00" * 20
SYMBOLS = ("WETH", "USDC", "DAI")


@dataclass(frozen=True)
class V3Setup:
    s: Setup
    v3: UniswapV3
    weth: str
    usdc: str
    dai: str

    def v2(self, a: str, b: str) -> SwapHop:
        return SwapHop(Venue.UNISWAP_V2, pair_address(self.v3.devnet.m.uniswap_factory, a, b),
                       a, b)


async def borrowers(devnet: Devnet, users: list[str]) -> None:
    """Each user: 10 WETH supplied, 15,000 USDC borrowed (HF 1.10); WETH to $1,800 (HF 0.99)."""
    await devnet.fund(users)
    await provide_liquidity(devnet)
    txs = []
    for user in users:
        txs += [*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)]
    await devnet.send_many(txs)
    await devnet.set_price("WETH", 1800 * 10**8)
    await devnet.arbitrage(["WETH"])


async def v3_market(devnet: Devnet, more_users: list[str] | None = None) -> V3Setup:
    """The WETH/USDC borrower (HF 0.99), V3 pools priced at the oracle beside the V2 pairs, and
    a liquidator that knows the V3 factory; ``more_users`` borrow alike before the price move."""
    user = "0x" + "b0" * 20
    await borrowers(devnet, [user, *(more_users or [])])
    v3 = await deploy_uniswap_v3(devnet)
    prices = await devnet.prices()
    dec = {sym: devnet.m.reserve(sym).decimals for sym in SYMBOLS}
    weth, usdc, dai = (addr(devnet, sym) for sym in SYMBOLS)

    def price(a: str, b: str) -> float:
        return raw_price(prices, dec, a, b)

    await v3.create_pool(weth, usdc, 500, price("WETH", "USDC"), 10**17)
    await v3.create_pool(weth, usdc, 3000, price("WETH", "USDC"), 5 * 10**16)
    await v3.create_pool(weth, dai, 3000, price("WETH", "DAI"), 5 * 10**22)
    await v3.create_pool(dai, usdc, 500, price("DAI", "USDC"), 10**18)
    await v3.create_pool(dai, usdc, 100, price("DAI", "USDC"), 10**18)  # the flash lender
    liquidator = await deploy_liquidator(devnet.tx, LiquidatorConfig(
        addresses_provider=devnet.m.pool_addresses_provider,
        uniswap_v2_factory=devnet.m.uniswap_factory, owner=devnet.m.keeper,
        uniswap_v3_factory=v3.factory))
    return V3Setup(Setup(liquidator, devnet.m.keeper, user), v3, weth, usdc, dai)


async def read_v2(devnet: Devnet, legs: tuple[SwapLeg, ...]) -> dict[tuple[str, str], tuple[int, int]]:
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for leg in legs:
        for hop in leg.hops:
            if hop.venue == Venue.UNISWAP_V2:
                r0, r1, _ = await devnet.tx.call(hop.pool, PAIR["getReserves"])
                out[sort_tokens(hop.token_in, hop.token_out)] = (int(r0), int(r1))
    return out


async def predict(devnet: Devnet, m: V3Setup, params: LiquidationParams, quote: Any
                  ) -> LiquidationOutcome:
    """predict_outcome with V3 hops quoted by their pools: a hop not yet quoted is asked of
    its pool and the prediction run again (a hop's input depends on the hops before it)."""
    reserves = await read_v2(devnet, params.swap_legs)
    known: dict[tuple[SwapHop, int], int] = {}
    premium_bps = await flash_premium_total(devnet)
    while True:
        try:
            return predict_outcome(params, quote, reserves, flash_premium_total=premium_bps,
                                   quote_leg=leg_quoter(reserves, lambda h, a: known[(h, a)]))
        except KeyError as miss:
            hop, amount = miss.args[0]
            known[(hop, amount)] = await m.v3.quote(hop, amount)


Route = Callable[[V3Setup, int], tuple[SwapLeg, ...]]


async def plan_route(devnet: Devnet, m: V3Setup, route: Route, *, flash_pool: V3FlashPool | None = None,
                     flash_loan: bool = True, min_profit: int | None = None, max_block: int = 0,
                     ) -> tuple[LiquidationParams, LiquidationOutcome]:
    """Fix the next block's timestamp, and predict the liquidation along ``route`` mined in it."""
    ts = await next_timestamp(devnet)
    quote = await quote_at(devnet, m.s.user, "WETH", "USDC", ts)
    legs = route(m, quote.collateral_to_liquidator)
    params = LiquidationParams(m.weth, m.usdc, m.s.user, quote.debt_to_cover_actual,
                               flash_loan=flash_loan, swap_legs=legs, flash_pool=flash_pool,
                               max_block=max_block)
    outcome = await predict(devnet, m, params, quote)
    mp = outcome.profit if min_profit is None else min_profit
    return LiquidationParams(m.weth, m.usdc, m.s.user, quote.debt_to_cover_actual, (), mp,
                             flash_loan, legs, flash_pool, max_block), outcome


def v3_one_hop(m: V3Setup, seized: int) -> tuple[SwapLeg, ...]:
    return (SwapLeg((m.v3.hop(m.weth, m.usdc, 500),)),)


ROUTES: dict[str, Route] = {
    "v3-one-hop": v3_one_hop,
    "v3-two-hops": lambda m, _: (SwapLeg((m.v3.hop(m.weth, m.dai, 3000),
                                          m.v3.hop(m.dai, m.usdc, 500))),),
    "v2-then-v3": lambda m, _: (SwapLeg((m.v2(m.weth, m.dai), m.v3.hop(m.dai, m.usdc, 500))),),
    "v3-then-v2": lambda m, _: (SwapLeg((m.v3.hop(m.weth, m.dai, 3000), m.v2(m.dai, m.usdc))),),
    "v2+v3-split": lambda m, seized: (SwapLeg((m.v2(m.weth, m.usdc),), seized * 4 // 10),
                                      SwapLeg((m.v3.hop(m.weth, m.usdc, 500),))),
    "three-way-split": lambda m, seized: (
        SwapLeg((m.v2(m.weth, m.usdc),), seized // 3),
        SwapLeg((m.v3.hop(m.weth, m.usdc, 3000),), seized // 4),
        SwapLeg((m.v3.hop(m.weth, m.dai, 3000), m.v2(m.dai, m.usdc))),
    ),
}


async def assert_clean(devnet: Devnet, m: V3Setup) -> None:
    """Nothing of the liquidation stays in the contract: no tokens, no allowance."""
    for sym in SYMBOLS:
        assert await devnet.balance_of(sym, m.s.liquidator) == 0
    assert await allowance(devnet, "USDC", m.s.liquidator, devnet.m.pool) == 0


@pytest.mark.parametrize("route", list(ROUTES))
async def test_v3_routes_pay_the_predicted_profit(devnet: Devnet, route: str) -> None:
    m = await v3_market(devnet)
    params, outcome = await plan_route(devnet, m, ROUTES[route])
    assert outcome.profit > 0
    owner_before = await devnet.balance_of("USDC", m.s.owner)
    receipt = await devnet.tx.send(m.s.liquidator, encode_liquidate(params), sender=m.s.owner,
                                   gas=GAS)
    assert await devnet.balance_of("USDC", m.s.owner) - owner_before == outcome.profit
    event = LIQ_EVENT.decode(*_log_of(receipt, m.s.liquidator))
    assert event["debtRepaid"] == outcome.debt_repaid
    assert event["collateralSeized"] == outcome.collateral_seized
    assert event["profit"] == outcome.profit and event["flashSource"] == 1
    await assert_clean(devnet, m)
    if len(params.swap_legs) > 1:  # every leg sold something
        assert len(outcome.leg_amounts) == len(params.swap_legs)
        assert all(a[-1] > 0 for a in outcome.leg_amounts)


def split_via_dai(tenths: int) -> Route:
    """``tenths``/10 of the seizure on V3 WETH/USDC 0.3%, the rest via DAI (V2, then V3)."""
    def route(m: V3Setup, seized: int) -> tuple[SwapLeg, ...]:
        return (SwapLeg((m.v3.hop(m.weth, m.usdc, 3000),), seized * tenths // 10),
                SwapLeg((m.v2(m.weth, m.dai), m.v3.hop(m.dai, m.usdc, 500))))
    return route


async def test_random_routes_and_lenders_pay_the_predicted_profit(devnet: Devnet) -> None:
    """Several borrowers liquidated one after another on the same pools (each moved by the
    last), with random splits, routes and flash sources: every profit to the wei."""
    users = [f"0x{i:02x}" + "c0" * 19 for i in range(1, 7)]
    m = await v3_market(devnet, users)
    rng = random.Random(14)
    names = [n for n in ROUTES if n != "v3-one-hop"]
    for user in users:
        mu = dataclasses.replace(m, s=dataclasses.replace(m.s, user=user))
        fraction = rng.randint(1, 9)
        route = rng.choice([ROUTES[rng.choice(names)], split_via_dai(fraction)])
        lender = rng.choice([None, V3FlashPool(m.v3.pool(m.dai, m.usdc, 100), m.dai, 100)])
        params, outcome = await plan_route(devnet, mu, route, flash_pool=lender)
        before = await devnet.balance_of("USDC", m.s.owner)
        await devnet.tx.send(m.s.liquidator, encode_liquidate(params), sender=m.s.owner, gas=GAS)
        assert await devnet.balance_of("USDC", m.s.owner) - before == outcome.profit > 0
    await assert_clean(devnet, m)


async def test_v3_pool_quote_crosses_ticks(devnet: Devnet) -> None:
    # The narrow position ends ~1% from the price: a large sale leaves it (crosses its ticks).
    m = await v3_market(devnet)
    hop = m.v3.hop(m.weth, m.usdc, 500)
    small, large = await m.v3.quote(hop, 10**18), await m.v3.quote(hop, 400 * 10**18)
    assert large < 400 * small * 99 // 100


async def test_v3_flash_loan_pays_the_pools_fee(devnet: Devnet) -> None:
    m = await v3_market(devnet)
    lender = V3FlashPool(m.v3.pool(m.dai, m.usdc, 100), m.dai, 100)
    params, outcome = await plan_route(devnet, m, v3_one_hop, flash_pool=lender)
    # 0.01% rounded up, against Aave's 0.05%.
    assert outcome.flash_premium == -(-params.debt_to_cover // 10_000)
    pool_usdc = await devnet.balance_of("USDC", lender.pool)
    owner_before = await devnet.balance_of("USDC", m.s.owner)
    receipt = await devnet.tx.send(m.s.liquidator, encode_liquidate(params), sender=m.s.owner,
                                   gas=GAS)
    assert await devnet.balance_of("USDC", m.s.owner) - owner_before == outcome.profit
    assert await devnet.balance_of("USDC", lender.pool) - pool_usdc == outcome.flash_premium
    event = LIQ_EVENT.decode(*_log_of(receipt, m.s.liquidator))
    assert event["flashSource"] == 2 and event["debtRepaid"] == outcome.debt_repaid
    await assert_clean(devnet, m)


async def test_a_v3_pool_cannot_lend_and_swap_in_one_call() -> None:
    weth, usdc, dai = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
    pool = "0x" + "44" * 20
    hop = SwapHop(Venue.UNISWAP_V3, pool, weth, usdc, 500)
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(weth, usdc, dai, 1, swap_legs=(SwapLeg((hop,)),),
                          flash_pool=V3FlashPool(pool, weth, 500))


FLASH = {"aave": (True, None), "v3-pool": (True, "v3"), "own-balance": (False, None)}


@pytest.mark.parametrize("source", list(FLASH))
async def test_pool_moved_between_planning_and_mining(devnet: Devnet, source: str) -> None:
    m = await v3_market(devnet)
    flash_loan, lender_kind = FLASH[source]
    lender = V3FlashPool(m.v3.pool(m.dai, m.usdc, 100), m.dai, 100) if lender_kind else None
    if not flash_loan:
        await devnet.tx.transact(m.usdc, ERC20["mint(address,uint256)"], m.s.liquidator,
                                 20_000 * 10**6)
    params, outcome = await plan_route(devnet, m, v3_one_hop, flash_pool=lender,
                                       flash_loan=flash_loan)
    assert outcome.profit > 0
    # Someone sells WETH into the pool after the plan: a little, then a lot.
    swap = test_contract("V3Minter").abi["swap"]
    pool = m.v3.pool(m.weth, m.usdc, 500)
    weth_is_0 = m.weth < m.usdc
    holders = [m.s.owner, m.s.liquidator, pool]
    user_before = await read_account(devnet, m.s.user)
    await devnet.tx.transact(m.v3.minter, swap, pool, weth_is_0, 10**17)
    before = await balances(devnet, holders, list(SYMBOLS))
    reason = await revert_name(devnet, m.s.liquidator, encode_liquidate(params), m.s.owner)
    assert reason.startswith("InsufficientProfit(")
    receipt = await send_raw(devnet, m.s.liquidator, encode_liquidate(params), m.s.owner)
    assert int(receipt["status"], 16) == 0
    await devnet.tx.transact(m.v3.minter, swap, pool, weth_is_0, 2_000 * 10**18)
    anything = dataclasses.replace(params, min_profit=0)
    # A shortfall, in every mode: Loss, not the lender's or the token's message.
    reason = await revert_name(devnet, m.s.liquidator, encode_liquidate(anything), m.s.owner)
    assert reason.startswith("Loss(")
    receipt = await send_raw(devnet, m.s.liquidator, encode_liquidate(anything), m.s.owner)
    assert int(receipt["status"], 16) == 0
    # No funds lost: only the pool's own trades moved balances, the user is untouched.
    after = await balances(devnet, holders, list(SYMBOLS))
    for key in before:
        if not key.endswith(pool):
            assert after[key] == before[key], key
    assert await read_account(devnet, m.s.user) == user_before


async def test_expired_order_reverts(devnet: Devnet) -> None:
    m = await v3_market(devnet)
    block = int(await devnet.rpc.call("eth_blockNumber"), 16)
    params, _ = await plan_route(devnet, m, v3_one_hop, max_block=block)
    # Mined in block + 1: too late.
    receipt = await send_raw(devnet, m.s.liquidator, encode_liquidate(params), m.s.owner)
    assert int(receipt["status"], 16) == 0 and int(receipt["blockNumber"], 16) == block + 1
    assert await revert_name(devnet, m.s.liquidator, encode_liquidate(params), m.s.owner) in (
        f"Expired({block + 1}, {block})", f"Expired({block + 2}, {block})")
    block += 1
    ok, outcome = await plan_route(devnet, m, v3_one_hop, max_block=block + 1)
    before = await devnet.balance_of("USDC", m.s.owner)
    await devnet.tx.send(m.s.liquidator, encode_liquidate(ok), sender=m.s.owner, gas=GAS)
    assert await devnet.balance_of("USDC", m.s.owner) - before == outcome.profit


async def test_split_larger_than_the_seizure_reverts(devnet: Devnet) -> None:
    m = await v3_market(devnet)
    params, outcome = await plan_route(
        devnet, m, lambda m, seized: (SwapLeg((m.v2(m.weth, m.usdc),), seized),
                                      SwapLeg((m.v3.hop(m.weth, m.usdc, 500),))), min_profit=0)
    assert outcome.profit == -1  # predicted to revert
    reason = await revert_name(devnet, m.s.liquidator, encode_liquidate(params), m.s.owner)
    # The eth_call runs a few seconds of interest away from the planned block.
    assert reason.startswith("SplitExceedsSeized(")
    seized = int(reason.removeprefix("SplitExceedsSeized(").removesuffix(")"))
    assert abs(seized - outcome.collateral_seized) < outcome.collateral_seized // 10_000


def raw_order(m: V3Setup, legs: list[Any], source: int = 1, pair_token: str = ZERO,
              fee: int = 0) -> bytes:
    return LIQ["liquidate"].encode((m.weth, m.usdc, m.s.user, 10**6, legs, 0, source,
                                    pair_token, fee, 0))


async def test_bad_orders_are_refused(devnet: Devnet) -> None:
    m = await v3_market(devnet)
    s = m.s
    v3_leg = [(0, [(1, m.usdc, 500)])]
    cases = {
        "BadFlashSource()": [
            raw_order(m, v3_leg, 2, m.usdc, 100),  # the lender must hold another token too
            raw_order(m, v3_leg, 2, m.dai, 0),  # no fee tier
            raw_order(m, v3_leg, 1, m.dai, 100),  # the Aave Pool takes no pool arguments
        ],
        "BadSwapPath()": [
            raw_order(m, [(0, [(1, m.usdc, 0)])]),  # a V3 hop needs a fee tier
            raw_order(m, [(0, [(0, m.usdc, 3000)])]),  # a V2 hop has none
            raw_order(m, [(0, [])]),  # an empty leg
            raw_order(m, [(0, [(1, m.dai, 3000)])]),  # ends elsewhere
            raw_order(m, []),  # no leg
        ],
    }
    for error, calls in cases.items():
        for data in calls:
            assert await revert_name(devnet, s.liquidator, data, s.owner) == error
    # A liquidator deployed without a V3 factory refuses every V3 hop and V3 flash loan.
    v2_only = await deploy_liquidator(devnet.tx, LiquidatorConfig(
        devnet.m.pool_addresses_provider, devnet.m.uniswap_factory, devnet.m.keeper))
    assert await revert_name(devnet, v2_only, raw_order(m, v3_leg), s.owner) == "BadSwapPath()"
    assert await revert_name(devnet, v2_only, raw_order(m, [(0, [(0, m.usdc, 0)])], 2, m.dai, 100),
                             s.owner) == "BadFlashSource()"


async def test_spoofed_v3_callbacks_revert(devnet: Devnet) -> None:
    m = await v3_market(devnet)
    s = m.s
    held = 5_000 * 10**6
    await devnet.tx.transact(m.usdc, ERC20["mint(address,uint256)"], s.liquidator, held)
    attacker_abi = test_contract("CallbackAttacker").abi
    attacker = await devnet.tx.deploy(test_contract("CallbackAttacker").deploy_data())
    swap_data = eth_abi.encode(["address", "address", "uint24"], [m.usdc, m.weth, 500])
    # The flash callback's data is an order naming the real lender (USDC/DAI, 0.01%).
    order = (m.weth, m.usdc, s.user, held, [(0, [(1, m.usdc, 500)])], 0, 2, m.dai, 100, 0)
    flash_data = eth_abi.encode(
        ["(address,address,address,uint256,(uint256,(uint8,address,uint24)[])[],uint256,uint8,"
         "address,uint24,uint256)", "uint256"], [order, 0])
    swap_cb = LIQ["uniswapV3SwapCallback"].encode(held, 0, swap_data)
    swap_cb_1 = LIQ["uniswapV3SwapCallback"].encode(0, held, swap_data)
    flash_cb = LIQ["uniswapV3FlashCallback"].encode(held, held, flash_data)
    # 1. An attacker contract posing as the pool.
    for data in (attacker_abi["swapCallback"].encode(s.liquidator, held, 0, swap_data),
                 attacker_abi["flashCallback"].encode(s.liquidator, held, held, flash_data)):
        assert await revert_name(devnet, attacker, data, "0x" + "a7" * 20) == "NotPool()"
    # 2. A pool of another factory with the same tokens and fee: calling directly...
    other = await deploy_uniswap_v3(devnet)
    prices = await devnet.prices()
    dec = {sym: devnet.m.reserve(sym).decimals for sym in SYMBOLS}
    fake = await other.create_pool(m.weth, m.usdc, 500, raw_price(prices, dec, "WETH", "USDC"),
                                   10**17)
    assert fake != m.v3.pool(m.weth, m.usdc, 500)
    for data in (swap_cb, swap_cb_1, flash_cb):
        assert await revert_name(devnet, s.liquidator, data, fake) == "NotPool()"
    # ... and through a real swap on it, whose callback the attacker forwards.
    via = attacker_abi["swapVia"].encode(fake, s.liquidator, m.weth < m.usdc, 10**15, swap_data)
    assert await revert_name(devnet, attacker, via, "0x" + "a7" * 20) == "NotPool()"
    receipt = await send_raw(devnet, attacker, via, devnet.m.deployer)
    assert int(receipt["status"], 16) == 0
    # 3. The canonical pools themselves, outside a liquidation of ours.
    real_swap_pool = m.v3.pool(m.weth, m.usdc, 500)
    real_lender = m.v3.pool(m.dai, m.usdc, 100)
    assert await revert_name(devnet, s.liquidator, swap_cb, real_swap_pool) == "NotLiquidating()"
    assert await revert_name(devnet, s.liquidator, flash_cb, real_lender) == "NotLiquidating()"
    await devnet.rpc.call("anvil_impersonateAccount", [real_swap_pool])
    await devnet.rpc.call("anvil_setBalance", [real_swap_pool, hex(10**18)])
    receipt = await send_raw(devnet, s.liquidator, swap_cb, real_swap_pool)
    assert int(receipt["status"], 16) == 0
    await devnet.rpc.call("anvil_stopImpersonatingAccount", [real_swap_pool])
    assert await devnet.balance_of("USDC", s.liquidator) == held
