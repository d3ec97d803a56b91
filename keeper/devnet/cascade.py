"""A liquidation cascade played on the devnet, round by round, as the risk lab models one.

Each round: every account under health factor 1 is liquidated once by the deployer (who mints
the debt asset) on its largest collateral and largest debt by value, for as much as the Pool
takes (``debtToCover = type(uint256).max``); the collateral received is sold for the debt asset
through the router along the best Uniswap V2 route (the direct pair or one hop through a hub);
then each sold asset with a feed of its own has its oracle price moved ``pass_through`` of the
way to its DEX price against ``quote``. Assets priced off another's feed follow that feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.users import MAX_UINT
from keeper.domain.amm import SwapRevert
from keeper.domain.quote import UniswapV2Quoter
from keeper.domain.wadray import WAD

_ERC20 = artifacts.aave("MintableERC20").abi
_POOL = artifacts.aave("Pool").abi
_ROUTER = artifacts.uniswap("UniswapV2Router02").abi


@dataclass(frozen=True, slots=True)
class DrivenRound:
    """One round on chain: accounts liquidated, and the oracle prices after it (by symbol)."""

    liquidated: int
    prices: dict[str, int]


async def drive_cascade(devnet: Devnet, users: Sequence[str], *, quote: str = "USDC",
                        hubs: Sequence[str] = ("WETH",), pass_through: float = 1.0,
                        max_rounds: int = 20) -> list[DrivenRound]:
    """Play rounds until no account is under water (or ``max_rounds``)."""
    m = devnet.m
    rounds: list[DrivenRound] = []
    approved: set[tuple[str, str]] = set()
    for _ in range(max_rounds):
        data = await devnet.account_data(users)
        # An account with debt and no collateral left is bad debt: nothing to liquidate.
        under = [d.user for d in data if d.health_factor < WAD and d.total_debt_base > 0
                 and d.total_collateral_base > 0]
        if not under:
            break
        prices = await devnet.prices()
        sold: set[str] = set()
        for user in under:
            pair = await _largest_pair(devnet, user, prices)
            if pair is None:
                continue
            collateral, debt = pair
            got = await _liquidate(devnet, user, collateral, debt, approved)
            if got > 0 and collateral != debt:
                await _sell(devnet, collateral, debt, got, hubs, approved)
                sold.add(collateral)
        for sym in sorted(sold):
            r = m.reserve(sym)
            if r.feed_kind != "chainlink" or sym == quote:
                continue
            a, q = await devnet.pair_reserves(sym, quote)
            dex = (q / 10 ** m.reserve(quote).decimals) / (a / 10 ** r.decimals) * prices[quote]
            await devnet.set_price(sym, int(prices[sym] + pass_through * (dex - prices[sym])))
        rounds.append(DrivenRound(len(under), await devnet.prices()))
    return rounds


async def _largest_pair(devnet: Devnet, user: str, prices: dict[str, int]
                        ) -> tuple[str, str] | None:
    best_c = best_d = None
    value_c = value_d = 0
    for r in devnet.m.reserves:
        unit = 10 ** r.decimals
        c = await devnet.balance_of(r.a_token, user) * prices[r.symbol] // unit
        d = await devnet.balance_of(r.variable_debt_token, user) * prices[r.symbol] // unit
        if c > value_c:
            best_c, value_c = r.symbol, c
        if d > value_d:
            best_d, value_d = r.symbol, d
    return None if best_c is None or best_d is None else (best_c, best_d)


async def _approve(devnet: Devnet, token: str, spender: str,
                   approved: set[tuple[str, str]]) -> None:
    if (token, spender) not in approved:
        await devnet.tx.transact(token, _ERC20["approve"], spender, MAX_UINT)
        approved.add((token, spender))


async def _liquidate(devnet: Devnet, user: str, collateral: str, debt: str,
                     approved: set[tuple[str, str]]) -> int:
    """Liquidate ``user``; returns the collateral received."""
    m = devnet.m
    me = m.deployer
    c, d = m.reserve(collateral), m.reserve(debt)
    owed = await devnet.balance_of(d.variable_debt_token, user)
    await devnet.tx.transact(d.address, _ERC20["mint(address,uint256)"], me, owed + 1)
    await _approve(devnet, d.address, m.pool, approved)
    before = await devnet.balance_of(c.address, me)
    await devnet.tx.transact(m.pool, _POOL["liquidationCall"], c.address, d.address, user,
                             MAX_UINT, False)
    return await devnet.balance_of(c.address, me) - before


async def _sell(devnet: Devnet, collateral: str, debt: str, amount: int, hubs: Sequence[str],
                approved: set[tuple[str, str]]) -> None:
    m = devnet.m
    tokens = [collateral, debt, *hubs]
    addr = {s: m.reserve(s).address.lower() for s in tokens}
    reserves: dict[tuple[str, str], tuple[int, int]] = {}
    for a in tokens:
        for b in tokens:
            if addr[a] < addr[b] and (f"{a}/{b}" in m.pairs or f"{b}/{a}" in m.pairs):
                reserves[(addr[a], addr[b])] = await devnet.pair_reserves(a, b)
    try:
        route = UniswapV2Quoter(reserves, [addr[h] for h in hubs]).quote_exact_in(
            addr[collateral], addr[debt], amount)
    except SwapRevert:
        return
    await _approve(devnet, addr[collateral], m.uniswap_router, approved)
    await devnet.tx.transact(m.uniswap_router, _ROUTER["swapExactTokensForTokens"], amount, 0,
                             list(route.path), m.deployer, 2**255)
