"""FlashLiquidator against the real Aave V3 and Uniswap V2 on the devnet.

Every profitable liquidation here is predicted to the wei before it is sent: the Pool's state
and the oracle are read, brought to the timestamp the liquidation will be mined at
(``evm_setNextBlockTimestamp``), quoted with keeper.domain.liquidation, priced on the pairs
with keeper.domain.amm, and the owner must receive exactly the predicted profit.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import eth_abi
import pytest
from eth_utils import keccak

from keeper.chain.abi import hexstr_to_bytes
from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.domain.account import EModeCategory, Market, ReserveState, UserAccount, UserReserve
from keeper.domain.amm import sort_tokens
from keeper.domain.liquidation import LiquidationQuote, quote_liquidation_call
from keeper.domain.plan import LiquidationParams, LiquidatorParamsError
from keeper.domain.reserve_config import UserConfiguration, decode_reserve_configuration
from keeper.domain.wadray import UINT256_MAX
from keeper.errors import ExecutionReverted
from keeper.protocols.aave_v3.liquidator import (
    LiquidationOutcome,
    LiquidatorConfig,
    decode_revert,
    deploy_liquidator,
    encode_liquidate,
    predict_outcome,
)
from keeper.protocols.uniswap_v2.pair import UNISWAP_V2_PAIR_INIT_CODE_HASH, pair_address

POOL = artifacts.aave("Pool").abi
ERC20 = artifacts.aave("MintableERC20").abi
ATOKEN = artifacts.aave("AToken").abi
STABLE_DEBT = artifacts.aave("StableDebtToken").abi
ORACLE = artifacts.aave("AaveOracle").abi
PAIR = artifacts.uniswap("UniswapV2Pair").abi
LIQ = artifacts.ours("FlashLiquidator").abi

ATTACKER = "0x000000000000000000000000000000000000a77a"
# Fixed gas limit for liquidations: anvil's own estimate inside eth_sendTransaction came out
# below what the nested calls need (63/64 rule) and the call ran out of gas in the callback.
GAS = 3_000_000


# ---- chain → domain snapshots (a reader for the book does not exist yet) ---------------------


async def read_market(devnet: Devnet, timestamp: int) -> Market:
    """Every reserve, price and eMode category, evaluated at ``timestamp``."""
    calls: list[Any] = [(devnet.m.pool, POOL["getReserveData"], (r.address,))
                        for r in devnet.m.reserves]
    calls.append((devnet.m.oracle, ORACLE["getAssetsPrices"],
                  ([r.address for r in devnet.m.reserves],)))
    calls += [(devnet.m.pool, POOL["getEModeCategoryData"], (e.id,)) for e in devnet.m.emodes]
    rows = await devnet.tx.call_many(calls)
    reserves: dict[int, ReserveState] = {}
    for r, (data,) in zip(devnet.m.reserves, rows, strict=False):
        (config,), liq_index, liq_rate, var_index, var_rate, _stable, last_update, rid = data[:8]
        reserves[rid] = ReserveState(
            asset=r.address, id=rid, configuration=decode_reserve_configuration(config),
            liquidity_index=liq_index, current_liquidity_rate=liq_rate,
            variable_borrow_index=var_index, current_variable_borrow_rate=var_rate,
            last_update_timestamp=last_update)
    (prices,) = rows[len(devnet.m.reserves)]
    emodes: dict[int, EModeCategory] = {}
    for e, (cat,) in zip(devnet.m.emodes, rows[len(devnet.m.reserves) + 1:], strict=True):
        ltv, threshold, bonus, source, label = cat
        emodes[e.id] = EModeCategory(ltv, threshold, bonus, str(source).lower(), label)
    return Market(reserves=reserves,
                  prices={r.address: int(p) for r, p in zip(devnet.m.reserves, prices, strict=True)},
                  timestamp=timestamp, emode_categories=emodes)


async def read_account(devnet: Devnet, user: str) -> UserAccount:
    """The user's configuration bits, eMode and scaled balances (no stable debt on the devnet)."""
    calls: list[Any] = [(devnet.m.pool, POOL["getUserConfiguration"], (user,)),
                        (devnet.m.pool, POOL["getUserEMode"], (user,))]
    for r in devnet.m.reserves:
        calls += [(r.a_token, ATOKEN["scaledBalanceOf"], (user,)),
                  (r.variable_debt_token, ATOKEN["scaledBalanceOf"], (user,)),
                  (r.stable_debt_token, STABLE_DEBT["principalBalanceOf"], (user,))]
    rows = await devnet.tx.call_many(calls)
    ((config,),), (emode,) = rows[0], rows[1]
    positions: dict[str, UserReserve] = {}
    for i, r in enumerate(devnet.m.reserves):
        (scaled_a,), (scaled_var,), (stable,) = rows[2 + 3 * i: 5 + 3 * i]
        assert stable == 0, "stable debt is not modelled by this helper"
        positions[r.address] = UserReserve(scaled_a_token_balance=scaled_a,
                                           scaled_variable_debt=scaled_var)
    return UserAccount(UserConfiguration(config), emode, positions)


async def read_pairs(devnet: Devnet, path: tuple[str, ...]) -> dict[tuple[str, str], tuple[int, int]]:
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for a, b in pairwise(path):
        key = sort_tokens(a, b)
        pair = pair_address(devnet.m.uniswap_factory, a, b)
        r0, r1, _ = await devnet.tx.call(pair, PAIR["getReserves"])
        out[key] = (int(r0), int(r1))
    return out


# ---- scenario helpers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    liquidator: str
    owner: str
    user: str


def addr(devnet: Devnet, symbol: str) -> str:
    return devnet.m.reserve(symbol).address


async def deploy(devnet: Devnet) -> str:
    return await deploy_liquidator(devnet.tx, LiquidatorConfig(
        addresses_provider=devnet.m.pool_addresses_provider,
        uniswap_v2_factory=devnet.m.uniswap_factory, owner=devnet.m.keeper))


async def provide_liquidity(devnet: Devnet) -> None:
    """A lender (the deployer) supplies what the borrowers borrow and the flash loans lend."""
    await devnet.send_many([*devnet.users.deposit_txs(devnet.m.deployer, "USDC", 1_000_000 * 10**6),
                            *devnet.users.deposit_txs(devnet.m.deployer, "WETH", 1_000 * 10**18)])


async def weth_usdc_borrower(devnet: Devnet, user: str = "0x" + "b0" * 20) -> Setup:
    """10 WETH supplied, 15,000 USDC borrowed (HF 1.10); WETH to $1,800 (HF 0.99)."""
    await devnet.fund([user, ATTACKER])
    await provide_liquidity(devnet)
    await devnet.send_many([*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                            devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)])
    await devnet.set_price("WETH", 1800 * 10**8)
    await devnet.arbitrage(["WETH"])
    return Setup(await deploy(devnet), devnet.m.keeper, user)


async def usdc_usdc_borrower(devnet: Devnet, user: str = "0x" + "b1" * 20) -> Setup:
    """10 WETH and 10,000 USDC supplied, 23,000 USDC borrowed; WETH to $1,800 (HF 0.99):
    the USDC collateral runs out before the close factor (the collateral cap applies)."""
    await devnet.fund([user, ATTACKER])
    await provide_liquidity(devnet)
    await devnet.send_many([*devnet.users.deposit_txs(user, "WETH", 10 * 10**18),
                            *devnet.users.deposit_txs(user, "USDC", 10_000 * 10**6),
                            devnet.users.tx_borrow(user, "USDC", 23_000 * 10**6)])
    await devnet.set_price("WETH", 1800 * 10**8)
    await devnet.arbitrage(["WETH"])
    return Setup(await deploy(devnet), devnet.m.keeper, user)


async def next_timestamp(devnet: Devnet, ahead: int = 12) -> int:
    """Fix the next block's timestamp, so interest accrual is known in advance."""
    latest = await devnet.rpc.call("eth_getBlockByNumber", ["latest", False])
    ts = int(latest["timestamp"], 16) + ahead
    await devnet.rpc.call("evm_setNextBlockTimestamp", [ts])
    return ts


async def quote_at(devnet: Devnet, user: str, collateral: str, debt: str,
                   timestamp: int) -> LiquidationQuote:
    market = await read_market(devnet, timestamp)
    account = await read_account(devnet, user)
    return quote_liquidation_call(account, market, addr(devnet, collateral), addr(devnet, debt),
                                  UINT256_MAX)


async def flash_premium_total(devnet: Devnet) -> int:
    (bps,) = await devnet.tx.call(devnet.m.pool, POOL["FLASHLOAN_PREMIUM_TOTAL"])
    return int(bps)


async def plan(devnet: Devnet, s: Setup, collateral: str, debt: str, path: tuple[str, ...],
               *, flash_loan: bool, min_profit: int | None = None,
               ) -> tuple[LiquidationParams, LiquidationOutcome]:
    """Fix the next block's timestamp and predict the liquidation mined in it."""
    ts = await next_timestamp(devnet)
    quote = await quote_at(devnet, s.user, collateral, debt, ts)
    token_path = tuple(addr(devnet, p) for p in path)
    params = LiquidationParams(addr(devnet, collateral), addr(devnet, debt), s.user,
                               quote.debt_to_cover_actual, token_path, 0, flash_loan)
    outcome = predict_outcome(params, quote, await read_pairs(devnet, token_path),
                              flash_premium_total=await flash_premium_total(devnet))
    mp = outcome.profit if min_profit is None else min_profit
    return LiquidationParams(params.collateral_asset, params.debt_asset, s.user,
                             params.debt_to_cover, token_path, mp, flash_loan), outcome


async def send_raw(devnet: Devnet, to: str, data: bytes, sender: str) -> dict[str, Any]:
    """Send with a fixed gas limit (estimation fails on a revert) and return the receipt."""
    tx_hash = await devnet.rpc.call("eth_sendTransaction", [{
        "from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(GAS)}])
    return await devnet.tx.wait_receipt(tx_hash)


async def revert_name(devnet: Devnet, to: str, data: bytes, sender: str,
                      block: str = "latest") -> str:
    """eth_call at ``block`` that must revert; the FlashLiquidator error it reverts with."""
    with pytest.raises(ExecutionReverted) as info:
        await devnet.rpc.call("eth_call", [{"from": sender, "to": to, "data": "0x" + data.hex(),
                                            "gas": hex(GAS)}, block])
    raw = info.value.data
    assert isinstance(raw, str), info.value
    reason = decode_revert(raw)
    assert reason is not None, raw
    return reason


async def balances(devnet: Devnet, holders: list[str], symbols: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in holders:
        for sym in symbols:
            out[f"{sym}@{h}"] = await devnet.balance_of(sym, h)
    return out


async def allowance(devnet: Devnet, symbol: str, owner: str, spender: str) -> int:
    (a,) = await devnet.tx.call(addr(devnet, symbol), ERC20["allowance"], owner, spender)
    return int(a)


# ---- tests ----------------------------------------------------------------------------------


def test_pair_init_code_hash_is_the_npm_pair() -> None:
    code = hexstr_to_bytes(artifacts.uniswap("UniswapV2Pair").bytecode)
    assert keccak(code) == UNISWAP_V2_PAIR_INIT_CODE_HASH


async def test_pair_address_matches_the_factory(devnet: Devnet) -> None:
    for key, pair in devnet.m.pairs.items():
        a, b = key.split("/")
        assert pair_address(devnet.m.uniswap_factory, addr(devnet, a), addr(devnet, b)) == pair


async def test_deploy_resolves_the_pool(devnet: Devnet) -> None:
    liq = await deploy(devnet)
    reads = await devnet.tx.call_many([(liq, LIQ["POOL"], ()), (liq, LIQ["owner"], ()),
                                       (liq, LIQ["ADDRESSES_PROVIDER"], ()),
                                       (liq, LIQ["UNISWAP_V2_FACTORY"], ()),
                                       (liq, LIQ["PAIR_INIT_CODE_HASH"], ())])
    assert [str(r[0]).lower() for r in reads[:4]] == [
        devnet.m.pool, devnet.m.keeper, devnet.m.pool_addresses_provider, devnet.m.uniswap_factory]
    assert reads[4][0] == UNISWAP_V2_PAIR_INIT_CODE_HASH


@pytest.mark.parametrize("path", [("WETH", "USDC"), ("WETH", "DAI", "USDC")],
                         ids=["one-hop", "two-hops"])
async def test_flash_loan_liquidation_pays_the_predicted_profit(
    devnet: Devnet, path: tuple[str, ...]
) -> None:
    s = await weth_usdc_borrower(devnet)
    params, outcome = await plan(devnet, s, "WETH", "USDC", path, flash_loan=True)
    assert outcome.profit > 0
    # The contract holds nothing: the flash loan is its only capital.
    assert await devnet.balance_of("USDC", s.liquidator) == 0
    owner_before = await devnet.balance_of("USDC", s.owner)
    receipt = await devnet.tx.send(s.liquidator, encode_liquidate(params), sender=s.owner, gas=GAS)
    # Exactly the predicted profit, to the wei, with min_profit set to it.
    assert await devnet.balance_of("USDC", s.owner) - owner_before == outcome.profit
    # Half the debt (close factor 50% at HF 0.99), which has grown by some interest.
    assert 7_500 * 10**6 <= outcome.debt_repaid < 7_501 * 10**6
    assert outcome.flash_premium == (params.debt_to_cover * 5 + 5_000) // 10_000
    # Nothing stays behind: no tokens, no allowances.
    for sym in ("USDC", "WETH", "DAI"):
        assert await devnet.balance_of(sym, s.liquidator) == 0
    assert await allowance(devnet, "USDC", s.liquidator, devnet.m.pool) == 0
    event = LIQ_EVENT.decode(*_log_of(receipt, s.liquidator))
    assert event["profit"] == outcome.profit and event["flashSource"] == 1
    # The debt actually repaid and the collateral actually seized, not the amounts asked.
    assert event["debtRepaid"] == outcome.debt_repaid
    assert event["collateralSeized"] == outcome.collateral_seized


LIQ_EVENT = artifacts.ours("FlashLiquidator").abi.event("Liquidated")


def _log_of(receipt: dict[str, Any], emitter: str) -> tuple[list[str], str]:
    logs = [lg for lg in receipt["logs"] if lg["address"].lower() == emitter
            and lg["topics"][0] == LIQ_EVENT.topic0]
    assert len(logs) == 1
    return logs[0]["topics"], logs[0]["data"]


async def test_own_balance_liquidation_pays_the_predicted_profit(devnet: Devnet) -> None:
    s = await weth_usdc_borrower(devnet)
    own = 20_000 * 10**6
    await devnet.tx.transact(addr(devnet, "USDC"), ERC20["mint(address,uint256)"],
                             s.liquidator, own)
    params, outcome = await plan(devnet, s, "WETH", "USDC", ("WETH", "USDC"), flash_loan=False)
    assert outcome.flash_premium == 0 and outcome.profit > 0
    owner_before = await devnet.balance_of("USDC", s.owner)
    await devnet.tx.send(s.liquidator, encode_liquidate(params), sender=s.owner, gas=GAS)
    assert await devnet.balance_of("USDC", s.owner) - owner_before == outcome.profit
    # The contract's own funds are back in full; only the profit moved.
    assert await devnet.balance_of("USDC", s.liquidator) == own
    assert await devnet.balance_of("WETH", s.liquidator) == 0
    assert await allowance(devnet, "USDC", s.liquidator, devnet.m.pool) == 0


@pytest.mark.parametrize("flash_loan", [True, False], ids=["flash-loan", "own-balance"])
async def test_same_asset_liquidation(devnet: Devnet, flash_loan: bool) -> None:
    s = await usdc_usdc_borrower(devnet)
    if not flash_loan:
        await devnet.tx.transact(addr(devnet, "USDC"), ERC20["mint(address,uint256)"],
                                 s.liquidator, 20_000 * 10**6)
    own = await devnet.balance_of("USDC", s.liquidator)
    params, outcome = await plan(devnet, s, "USDC", "USDC", (), flash_loan=flash_loan)
    # The user's whole USDC collateral goes (less the protocol fee): the collateral cap applies.
    assert outcome.debt_repaid < 23_000 * 10**6 // 2
    assert outcome.profit > 0 and outcome.swap_amounts == (outcome.collateral_seized,)
    owner_before = await devnet.balance_of("USDC", s.owner)
    await devnet.tx.send(s.liquidator, encode_liquidate(params), sender=s.owner, gas=GAS)
    assert await devnet.balance_of("USDC", s.owner) - owner_before == outcome.profit
    assert await devnet.balance_of("USDC", s.liquidator) == own
    assert await allowance(devnet, "USDC", s.liquidator, devnet.m.pool) == 0


async def test_repaying_less_than_asked_clears_the_allowance(devnet: Devnet) -> None:
    # Ask for twice the close factor from own funds: the Pool repays half; the rest of the
    # approval must not linger, and the unused funds stay in the contract.
    s = await weth_usdc_borrower(devnet)
    own = 30_000 * 10**6
    await devnet.tx.transact(addr(devnet, "USDC"), ERC20["mint(address,uint256)"],
                             s.liquidator, own)
    params, outcome = await plan(devnet, s, "WETH", "USDC", ("WETH", "USDC"), flash_loan=False)
    asked = LiquidationParams(params.collateral_asset, params.debt_asset, params.user,
                              params.debt_to_cover * 2, params.swap_path, outcome.profit, False)
    owner_before = await devnet.balance_of("USDC", s.owner)
    receipt = await devnet.tx.send(s.liquidator, encode_liquidate(asked), sender=s.owner, gas=GAS)
    assert await devnet.balance_of("USDC", s.owner) - owner_before == outcome.profit
    assert await devnet.balance_of("USDC", s.liquidator) == own
    # The event logs what was repaid (half), not what was asked.
    event = LIQ_EVENT.decode(*_log_of(receipt, s.liquidator))
    assert event["debtRepaid"] == outcome.debt_repaid < asked.debt_to_cover
    assert event["collateralSeized"] == outcome.collateral_seized
    assert await allowance(devnet, "USDC", s.liquidator, devnet.m.pool) == 0


@pytest.mark.parametrize("flash_loan", [True, False], ids=["flash-loan", "own-balance"])
async def test_min_profit_above_the_trade_reverts_and_changes_nothing(
    devnet: Devnet, flash_loan: bool
) -> None:
    s = await weth_usdc_borrower(devnet)
    if not flash_loan:
        await devnet.tx.transact(addr(devnet, "USDC"), ERC20["mint(address,uint256)"],
                                 s.liquidator, 20_000 * 10**6)
    params, outcome = await plan(devnet, s, "WETH", "USDC", ("WETH", "USDC"),
                                 flash_loan=flash_loan)
    greedy = LiquidationParams(params.collateral_asset, params.debt_asset, params.user,
                               params.debt_to_cover, params.swap_path, outcome.profit + 1,
                               flash_loan)
    holders = [s.owner, s.liquidator, s.user, devnet.m.pair("USDC", "WETH"),
               devnet.m.reserve("USDC").a_token, devnet.m.reserve("WETH").a_token]
    before_block = await devnet.rpc.call("eth_blockNumber")
    tokens_before = await balances(devnet, holders, ["USDC", "WETH"])
    user_before = await read_account(devnet, s.user)
    receipt = await send_raw(devnet, s.liquidator, encode_liquidate(greedy), s.owner)
    assert int(receipt["status"], 16) == 0
    # Replayed on the state before, it reverts with the exact shortfall.
    reason = await revert_name(devnet, s.liquidator, encode_liquidate(greedy), s.owner,
                               before_block)
    assert reason.startswith("InsufficientProfit(")
    assert await balances(devnet, holders, ["USDC", "WETH"]) == tokens_before
    assert await read_account(devnet, s.user) == user_before
    (hf_after,) = await devnet.account_data([s.user])
    assert hf_after.health_factor < 10**18  # still liquidatable: nothing happened
    # And with the exact profit as the floor, the same liquidation goes through.
    exact = await plan(devnet, s, "WETH", "USDC", ("WETH", "USDC"), flash_loan=flash_loan)
    await devnet.tx.send(s.liquidator, encode_liquidate(exact[0]), sender=s.owner, gas=GAS)


async def test_only_the_owner_may_act(devnet: Devnet) -> None:
    s = await weth_usdc_borrower(devnet)
    params, _ = await plan(devnet, s, "WETH", "USDC", ("WETH", "USDC"), flash_loan=True)
    usdc = addr(devnet, "USDC")
    calls = [
        encode_liquidate(params),
        LIQ["rescue"].encode(usdc, ATTACKER, 1),
        LIQ["rescueEther"].encode(ATTACKER, 0),
        LIQ["transferOwnership"].encode(ATTACKER),
    ]
    for data in calls:
        assert await revert_name(devnet, s.liquidator, data, ATTACKER) == "NotOwner()"
        receipt = await send_raw(devnet, s.liquidator, data, ATTACKER)
        assert int(receipt["status"], 16) == 0
    assert await revert_name(devnet, s.liquidator, LIQ["acceptOwnership"].encode(),
                             ATTACKER) == "NotPendingOwner()"


async def test_two_step_ownership_transfer(devnet: Devnet) -> None:
    s = await weth_usdc_borrower(devnet)
    new_owner = "0x" + "0e" * 20
    await devnet.fund([new_owner])
    await devnet.tx.transact(s.liquidator, LIQ["transferOwnership"], new_owner, sender=s.owner)
    ((owner,),) = await devnet.tx.call_many([(s.liquidator, LIQ["owner"], ())])
    assert str(owner).lower() == s.owner  # not yet
    await devnet.tx.transact(s.liquidator, LIQ["acceptOwnership"], sender=new_owner)
    (owner,) = await devnet.tx.call(s.liquidator, LIQ["owner"])
    assert str(owner).lower() == new_owner
    params, outcome = await plan(devnet, s, "WETH", "USDC", ("WETH", "USDC"), flash_loan=True)
    assert await revert_name(devnet, s.liquidator, encode_liquidate(params), s.owner) == "NotOwner()"
    before = await devnet.balance_of("USDC", new_owner)
    await devnet.tx.send(s.liquidator, encode_liquidate(params), sender=new_owner, gas=GAS)
    assert await devnet.balance_of("USDC", new_owner) - before == outcome.profit


async def test_attacker_cannot_move_funds_through_the_callback(devnet: Devnet) -> None:
    s = await weth_usdc_borrower(devnet)
    usdc = addr(devnet, "USDC")
    held = 5_000 * 10**6
    await devnet.tx.transact(usdc, ERC20["mint(address,uint256)"], s.liquidator, held)
    inner = eth_abi.encode(["address", "address", "address[]"],
                           [addr(devnet, "WETH"), s.user, [addr(devnet, "WETH"), usdc]])
    # 1. Calling the callback directly.
    direct = LIQ["executeOperation"].encode(usdc, 1_000 * 10**6, 0, s.liquidator, inner)
    assert await revert_name(devnet, s.liquidator, direct, ATTACKER) == "NotPool()"
    # 2. A flash loan from the Pool naming our contract as receiver (the Pool is msg.sender,
    #    the attacker the initiator): the callback refuses before anything moves.
    attack = POOL["flashLoanSimple"].encode(s.liquidator, usdc, 1_000 * 10**6, inner, 0)
    assert await revert_name(devnet, devnet.m.pool, attack, ATTACKER) == "BadInitiator()"
    receipt = await send_raw(devnet, devnet.m.pool, attack, ATTACKER)
    assert int(receipt["status"], 16) == 0
    # ... even one that would pay the premium out of the contract's own funds.
    attack_small = POOL["flashLoanSimple"].encode(s.liquidator, usdc, 1, b"", 0)
    assert await revert_name(devnet, devnet.m.pool, attack_small, ATTACKER) == "BadInitiator()"
    assert await devnet.balance_of("USDC", s.liquidator) == held
    assert await allowance(devnet, "USDC", s.liquidator, devnet.m.pool) == 0
    # The owner can take its funds back; no one else can.
    await devnet.tx.transact(s.liquidator, LIQ["rescue"], usdc, s.owner, held, sender=s.owner)
    assert await devnet.balance_of("USDC", s.liquidator) == 0


async def test_bad_paths_are_refused(devnet: Devnet) -> None:
    s = await weth_usdc_borrower(devnet)
    weth, usdc, dai = addr(devnet, "WETH"), addr(devnet, "USDC"), addr(devnet, "DAI")
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(weth, usdc, s.user, 1, (weth, dai))
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(usdc, usdc, s.user, 1, (usdc, dai, usdc))
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(weth, usdc, s.user, 0, (weth, usdc))
    # The contract checks the same rules on its own.
    bad = LIQ["liquidate"].encode((weth, usdc, s.user, 10**6, [(0, [(0, dai, 0)])], 0, 1,
                                   "0x" + "00" * 20, 0, 0))
    assert await revert_name(devnet, s.liquidator, bad, s.owner) == "BadSwapPath()"
