"""Deterministic borrower populations and price crashes for the devnet.

``plan_population`` is pure: a seed, the market and the prices give the same borrowers, the same
collateral and the same debts every time. ``seed_population`` sends them to the chain;
``crash`` moves prices over several blocks through our aggregators (so ``AnswerUpdated`` fires)
and arbitrages the Uniswap pools back to the oracle after each step.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from eth_utils import keccak

from keeper.devnet.driver import Devnet
from keeper.devnet.manifest import EModeInfo, Manifest, ReserveInfo
from keeper.devnet.users import Tx
from keeper.errors import DevnetError

PRICE_UNIT = 10**8
_REGULAR_COLLATERAL = ("WETH", "WBTC", "USDC", "DAI", "wstETH")
_REGULAR_DEBT = ("WETH", "WBTC", "USDC", "DAI")
_ISOLATED_DEBT_CAP_USD = 4_000_000  # below the LINK debt ceiling of 5M


@dataclass(frozen=True, slots=True)
class BorrowerPlan:
    address: str
    emode: int
    supplies: tuple[tuple[str, int], ...]  # (symbol, amount in token units)
    borrows: tuple[tuple[str, int], ...]
    target_health_factor: float


def borrower_address(seed: int, index: int) -> str:
    return "0x" + keccak(text=f"keeper-devnet-borrower:{seed}:{index}")[12:].hex()


def _target_hf(rng: random.Random) -> float:
    u = rng.random()
    if u < 0.35:
        return rng.uniform(1.03, 1.15)
    if u < 0.75:
        return rng.uniform(1.15, 1.6)
    return rng.uniform(1.6, 3.0)


def plan_population(
    seed: int, n: int, manifest: Manifest, prices: Mapping[str, int]
) -> list[BorrowerPlan]:
    """N borrowers with mixed collateral/debt, eMode and isolation users, and a spread of HFs."""
    if not 1 <= n <= 100_000:
        raise DevnetError(f"borrowers must be between 1 and 100000, got {n}")
    rng = random.Random(seed)
    by_symbol = {r.symbol: r for r in manifest.reserves}
    emodes = {e.id: e for e in manifest.emodes}
    isolated = [r.symbol for r in manifest.reserves if r.debt_ceiling > 0]
    isolated_debt_usd = 0.0
    plans: list[BorrowerPlan] = []
    for i in range(n):
        kind = rng.random()
        emode = 0
        if kind < 0.10 and 1 in emodes:
            emode, coll, debt = 1, [rng.choice(["USDC", "DAI"])], ["USDC", "DAI"]
            debt = [s for s in debt if s != coll[0]]
        elif kind < 0.20 and 2 in emodes:
            emode, coll, debt = 2, ["wstETH"], ["WETH"]
            # Liquid eMode (v3.2+): half of them put the same wstETH in the category that
            # borrows stablecoins. The draw happens only on such a market, so v3.0 populations
            # stay what they were.
            if 3 in emodes and rng.random() < 0.5:
                emode, debt = 3, [rng.choice(["USDC", "DAI"])]
        elif kind < 0.25 and isolated and isolated_debt_usd < _ISOLATED_DEBT_CAP_USD * 0.9:
            coll, debt = [isolated[0]], [rng.choice(["USDC", "DAI"])]
        else:
            coll = rng.sample(_REGULAR_COLLATERAL, rng.choice((1, 1, 2)))
            choices = [s for s in _REGULAR_DEBT if s not in coll]
            debt = rng.sample(choices, min(len(choices), rng.choice((1, 1, 2))))
        # Collateral worth $1k..$500k, log-uniform.
        total_usd = 10 ** rng.uniform(3, 5.7)
        weights = [rng.random() + 0.2 for _ in coll]
        wsum = sum(weights)
        supplies: list[tuple[str, int]] = []
        lt_usd = ltv_usd = 0.0
        for sym, w in zip(coll, weights, strict=True):
            r = by_symbol[sym]
            usd = total_usd * w / wsum
            amount = int(usd * PRICE_UNIT / prices[sym] * 10**r.decimals)
            supplies.append((sym, amount))
            lt, ltv = _risk(r, emode, emodes)
            lt_usd += usd * lt / 10_000
            ltv_usd += usd * ltv / 10_000
        hf = _target_hf(rng)
        debt_usd = min(lt_usd / hf, ltv_usd * 0.985)
        if emode == 0 and coll == isolated[:1]:
            debt_usd = min(debt_usd, _ISOLATED_DEBT_CAP_USD - isolated_debt_usd)
            isolated_debt_usd += debt_usd
        dweights = [rng.random() + 0.2 for _ in debt]
        dsum = sum(dweights)
        borrows = tuple(
            (sym, int(debt_usd * w / dsum * PRICE_UNIT / prices[sym] * 10**by_symbol[sym].decimals))
            for sym, w in zip(debt, dweights, strict=True)
        )
        plans.append(BorrowerPlan(borrower_address(seed, i), emode, tuple(supplies),
                                  tuple(b for b in borrows if b[1] > 0), hf))
    return plans


def _risk(r: ReserveInfo, emode: int, emodes: Mapping[int, EModeInfo]) -> tuple[int, int]:
    if emode:
        e = emodes[emode]
        # v3.2+ lists a category's collateral; v3.0 has one category per reserve.
        if (r.symbol in e.collateral) if e.collateral else r.emode_category == emode:
            return e.liquidation_threshold, e.ltv
    return r.liquidation_threshold, r.ltv


async def seed_population(devnet: Devnet, plans: list[BorrowerPlan]) -> None:
    """Fund the pool with liquidity, then open every planned position on-chain."""
    m = devnet.m
    demand: dict[str, int] = {}
    for p in plans:
        for sym, amt in p.borrows:
            demand[sym] = demand.get(sym, 0) + amt
    lp = m.deployer
    lp_txs: list[Tx] = []
    for r in m.reserves:
        # Twice the demand plus a floor, so utilisation (and interest) stays realistic and low.
        amount = 2 * demand.get(r.symbol, 0) + 1_000_000 * 10**r.decimals // 10**(2 if r.decimals > 6 else 0)
        lp_txs += devnet.users.deposit_txs(lp, r.symbol, amount)
    await devnet.send_many(lp_txs)
    await devnet.fund(p.address for p in plans)
    txs: list[Tx] = []
    for p in plans:
        if p.emode:
            txs.append(devnet.users.tx_set_emode(p.address, p.emode))
        for sym, amt in p.supplies:
            txs += devnet.users.deposit_txs(p.address, sym, amt)
            if m.reserve(sym).debt_ceiling:
                # v3.0.2+: an isolated asset is never enabled as collateral as a side effect
                # of a supply (only ISOLATED_COLLATERAL_SUPPLIER_ROLE may); the user opts in.
                txs.append(devnet.users.tx_use_as_collateral(p.address, sym, True))
        for sym, amt in p.borrows:
            txs.append(devnet.users.tx_borrow(p.address, sym, amt))
    await devnet.send_many(txs)


async def crash(devnet: Devnet, moves: Mapping[str, float], blocks: int = 5) -> dict[str, int]:
    """Move each price in ``moves`` to that fraction of its current value over ``blocks`` steps.

    Each step publishes a new answer on the aggregator (one block each) and arbitrages the
    affected Uniswap pools back to the oracle. Returns the final prices.
    """
    if blocks < 1:
        raise DevnetError("a crash needs at least one block")
    start = await devnet.prices()
    for sym, frac in moves.items():
        if frac <= 0:
            raise DevnetError(f"price fraction for {sym} must be positive, got {frac}")
        if devnet.m.reserve(sym).feed_kind != "chainlink":
            raise DevnetError(f"{sym} follows a rate adapter; crash its base asset instead")
    for step in range(1, blocks + 1):
        for sym, frac in moves.items():
            p0 = start[sym]
            target = int(p0 * (1 + (frac - 1) * step / blocks))
            await devnet.set_price(sym, target)
        await devnet.arbitrage(_affected(devnet.m, moves))
    return await devnet.prices()


def _affected(m: Manifest, moves: Mapping[str, float]) -> set[str]:
    out = set(moves)
    for r in m.reserves:
        if r.feed_kind == "rate_adapter":
            base = next((b for b in m.reserves if b.aggregator == r.aggregator and b.feed_kind == "chainlink"), None)
            if base is not None and base.symbol in moves:
                out.add(r.symbol)
    return out
