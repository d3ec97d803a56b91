"""The book against the real Aave V3 on the devnet: after a seeded random history of supplies,
borrows, repays, withdrawals, aToken transfers, collateral toggles, eMode changes, price moves,
oracle source switches, aggregator switches, time jumps and liquidations over 300+ accounts,
every account's health factor, total collateral and total debt equal getUserAccountData's to
the wei, and so does the set of liquidatable accounts.

The sync backfills the seeded population, then follows the chain live (polling heads) while
the random operations run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterable

import pytest

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.devnet.users import MAX_UINT, STABLE, Tx
from keeper.domain.account import a_token_balance, is_bad_debt, user_debt
from keeper.domain.revision import AaveRevision
from keeper.domain.wadray import WAD
from keeper.errors import DevnetError
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3.book import BlockUpdate, PositionBook
from keeper.protocols.aave_v3.reader import AaveV3Contracts, MarketReader
from tests.conftest import running_devnet

pytestmark = pytest.mark.integration

_POOL = artifacts.aave("Pool").abi
_ATOKEN = artifacts.aave("AToken").abi
_ORACLE = artifacts.aave("AaveOracle").abi
_ERC20 = artifacts.aave("MintableERC20").abi
_FEED = artifacts.ours("PriceFeed")
_PROXY = artifacts.ours("FeedProxy")


def contracts_of(devnet: Devnet) -> AaveV3Contracts:
    m = devnet.m
    return AaveV3Contracts(m.pool, m.oracle, m.pool_configurator, m.pool_addresses_provider)


def fast_config(devnet: Devnet, **kw: object) -> SyncConfig:
    """A sync config for tests: polls heads every 10 ms, no progress bar."""
    args: dict[str, object] = {"start_block": devnet.m.deploy_block, "poll_interval": 0.01,
                               "follow_depth": 4, "progress": False, "checkpoint_every": 0.0}
    args.update(kw)
    return SyncConfig(**args)  # type: ignore[arg-type]


async def wait_for_block(sync: BookSync, number: int, timeout: float = 20.0) -> None:
    """Wait until the running ``sync`` has applied block ``number``."""
    updates = sync.subscribe()  # before looking, so no block slips between
    try:
        async with asyncio.timeout(timeout):
            while sync.book.block_number < number:
                await updates.get()
    finally:
        sync.unsubscribe(updates)


async def tip(devnet: Devnet) -> int:
    return int(await devnet.rpc.call("eth_blockNumber"), 16)


async def assert_book_matches_chain(book: PositionBook, devnet: Devnet, users: Iterable[str]) -> int:
    """Compare every user's account data with the chain at the book's block; returns the
    number of liquidatable accounts."""
    everyone = sorted(set(users) | set(book.users()))
    chain = await devnet.account_data(everyone, block=hex(book.block_number))
    mismatches = []
    for row in chain:
        mine = book.account_data(row.user)
        if (mine.health_factor, mine.total_collateral_base, mine.total_debt_base) != (
            row.health_factor, row.total_collateral_base, row.total_debt_base
        ):
            mismatches.append((row, mine))
    assert not mismatches, f"{len(mismatches)} accounts differ, first: {mismatches[0]}"
    on_chain = {r.user for r in chain if r.total_debt_base and r.health_factor < WAD}
    in_book = {u for u in everyone if book.health_factor(u) < WAD}
    assert in_book == on_chain
    # Debt without collateral: bad debt, the same accounts on both sides.
    bad_on_chain = {r.user for r in chain if r.total_debt_base and not r.total_collateral_base}
    assert {u for u in everyone if is_bad_debt(book.account_data(u))} == bad_on_chain
    # Beneath the totals, the raw state: every scaled balance, stable principal, rate and
    # timestamp, the collateral and borrowing bits and the eMode, as the contracts store them.
    reader = MarketReader(contracts_of(devnet), book.state.revision)
    raw = await reader.read_users(devnet.rpc, everyone, book.state.tokens, book.block_hash)
    differ = []
    for user in everyone:
        account, snap = book.account(user), raw[user]
        if (dict(account.reserves), account.configuration.data, account.emode_category) != (
                dict(snap.positions), snap.configuration.data, snap.emode_category):
            differ.append((user, account, snap))
    assert not differ, f"{len(differ)} users' stored state differs, first: {differ[0]}"
    return len(on_chain)


class RandomHistory:
    """Seeded random operations on the devnet; reverted ones are skipped (a revert changes
    nothing, which the book must also get right)."""

    def __init__(self, devnet: Devnet, book: PositionBook, users: list[str], seed: int) -> None:
        self.d = devnet
        self.stable = devnet.m.aave_version == "3.0"
        self.emodes = [0, *(e.id for e in devnet.m.emodes)]
        self.m = devnet.m
        self.book = book
        self.users = users
        self.rng = random.Random(seed)
        self.liquidator = "0x" + "11" * 20
        # symbol -> the aggregator the oracle currently reads (after switches)
        self.aggregator = {r.symbol: r.aggregator for r in self.m.reserves
                           if r.feed_kind == "chainlink"}
        self.proxies: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    async def send(self, *txs: Tx) -> bool:
        try:
            for tx in txs:
                await self.d.send(tx)
        except DevnetError:
            return False
        return True

    def _count(self, name: str, ok: bool) -> None:
        if ok:
            self.counts[name] = self.counts.get(name, 0) + 1

    def symbol(self, asset: str) -> str:
        return next(r.symbol for r in self.m.reserves if r.address == asset)

    async def step(self) -> None:
        ops = [
            (self.supply, 12), (self.borrow, 12), (self.repay, 10), (self.withdraw, 8),
            *(((self.borrow_stable, 6), (self.repay_stable, 4)) if self.stable else ()),
            (self.transfer, 5), (self.toggle_collateral, 4), (self.emode, 4), (self.price, 10),
            (self.switch_source, 2), (self.switch_aggregator, 2), (self.time_jump, 4),
            (self.liquidate, 10),
        ]
        op = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
        await op()

    async def supply(self) -> None:
        u = self.rng.choice(self.users)
        r = self.rng.choice(self.m.reserves)
        amount = int(10 ** r.decimals * self.rng.uniform(0.01, 5))
        self._count("supply", await self.send(*self.d.users.deposit_txs(u, r.symbol, amount)))

    async def borrow(self) -> None:
        u = self.rng.choice(self.users)
        (ad,) = await self.d.account_data([u])
        sym = self.rng.choice(["WETH", "WBTC", "USDC", "DAI", "wstETH"])
        r = self.m.reserve(sym)
        price = (await self.d.prices())[sym]
        amount = int(ad.available_borrows_base * self.rng.uniform(0.1, 0.9) * 10 ** r.decimals
                     // price)
        if amount > 0:
            self._count("borrow", await self.send(self.d.users.tx_borrow(u, sym, amount)))

    async def borrow_stable(self) -> None:
        # v3.0 stable-rate debt (enabled on the devnet's stablecoins); the Pool refuses it
        # against the same asset as collateral and above 25% of the liquidity: then nothing.
        u = self.rng.choice(self.users)
        (ad,) = await self.d.account_data([u])
        sym = self.rng.choice(["USDC", "DAI"])
        r = self.m.reserve(sym)
        price = (await self.d.prices())[sym]
        amount = int(ad.available_borrows_base * self.rng.uniform(0.05, 0.5) * 10 ** r.decimals
                     // price)
        if amount > 0:
            self._count("borrow_stable",
                        await self.send(self.d.users.tx_borrow(u, sym, amount, STABLE)))

    async def repay_stable(self) -> None:
        holders = [u for u in self.users
                   if any(p.stable_debt_principal for p in self.book.record(u).positions.values())]
        if not holders:
            return
        u = self.rng.choice(holders)
        debts = [a for a, p in self.book.record(u).positions.items() if p.stable_debt_principal]
        sym = self.symbol(self.rng.choice(debts))
        r = self.m.reserve(sym)
        full = self.rng.random() < 0.4
        amount = MAX_UINT if full else int(10 ** r.decimals * self.rng.uniform(0.001, 0.5))
        ok = await self.send(self.d.users.tx_mint(u, sym, 10 ** (r.decimals + 6)),
                             self.d.users.tx_approve(u, sym), self.d.users.tx_repay(u, sym, amount, STABLE))
        self._count("repay_stable_full" if full else "repay_stable", ok)

    async def repay(self) -> None:
        u = self.rng.choice(self.users)
        debts = [a for a, p in self.book.record(u).positions.items() if p.scaled_variable_debt]
        if not debts:
            return
        sym = self.symbol(self.rng.choice(debts))
        r = self.m.reserve(sym)
        full = self.rng.random() < 0.4
        amount = MAX_UINT if full else int(10 ** r.decimals * self.rng.uniform(0.001, 0.5))
        ok = await self.send(self.d.users.tx_mint(u, sym, 10 ** (r.decimals + 6)),
                             self.d.users.tx_approve(u, sym), self.d.users.tx_repay(u, sym, amount))
        self._count("repay_full" if full else "repay", ok)

    async def withdraw(self) -> None:
        u = self.rng.choice(self.users)
        held = [a for a, p in self.book.record(u).positions.items() if p.scaled_a_token_balance]
        if not held:
            return
        asset = self.rng.choice(held)
        market = self.book.market()
        reserve = market.reserve_of(asset)
        balance = a_token_balance(reserve, self.book.record(u).positions[asset], market.timestamp)
        full = self.rng.random() < 0.3
        amount = MAX_UINT if full else max(1, int(balance * self.rng.uniform(0.05, 0.5)))
        ok = await self.send(self.d.users.tx_withdraw(u, self.symbol(asset), amount))
        self._count("withdraw_full" if full else "withdraw", ok)

    async def transfer(self) -> None:
        u, to = self.rng.sample(self.users, 2)
        held = [a for a, p in self.book.record(u).positions.items() if p.scaled_a_token_balance]
        if not held:
            return
        asset = self.rng.choice(held)
        a_token = next(r.a_token for r in self.m.reserves if r.address == asset)
        market = self.book.market()
        balance = a_token_balance(market.reserve_of(asset), self.book.record(u).positions[asset],
                                  market.timestamp)
        amount = balance if self.rng.random() < 0.3 else int(balance * self.rng.uniform(0.1, 0.6))
        if amount > 0:
            tx = Tx(u, a_token, _ATOKEN["transfer"].encode(to, amount), 400_000)
            self._count("atoken_transfer", await self.send(tx))

    async def toggle_collateral(self) -> None:
        u = self.rng.choice(self.users)
        held = [a for a, p in self.book.record(u).positions.items() if p.scaled_a_token_balance]
        if held:
            asset = self.rng.choice(held)
            enable = asset not in self.book.record(u).collateral
            tx = self.d.users.tx_use_as_collateral(u, self.symbol(asset), enable)
            self._count("collateral_toggle", await self.send(tx))

    async def emode(self) -> None:
        u = self.rng.choice(self.users)
        self._count("emode", await self.send(self.d.users.tx_set_emode(u, self.rng.choice(self.emodes))))

    async def price(self) -> None:
        sym = self.rng.choice(sorted(self.aggregator))
        if sym in ("USDC", "DAI"):
            factor = self.rng.uniform(0.97, 1.03)
        else:
            factor = self.rng.uniform(0.82, 1.08)  # drifts down: liquidations happen
        price = int((await self.d.prices())[sym] * factor)
        await self.d.tx.transact(self.aggregator[sym], _FEED.abi["updateAnswer"], price)
        self._count("price", True)

    async def switch_source(self) -> None:
        """A new PriceFeed behind a new FeedProxy, set with AaveOracle.setAssetSources."""
        sym = self.rng.choice(["WBTC", "LINK", "DAI"])
        price = int((await self.d.prices())[sym] * self.rng.uniform(0.9, 1.02))
        feed = await self.d.tx.deploy(_FEED.deploy_data(8, f"{sym} / USD v2", price))
        proxy = await self.d.tx.deploy(_PROXY.deploy_data(feed))
        await self.d.tx.transact(self.m.oracle, _ORACLE["setAssetSources"],
                                 [self.m.reserve(sym).address], [proxy])
        self.aggregator[sym], self.proxies[sym] = feed, proxy
        self._count("switch_source", True)

    async def switch_aggregator(self) -> None:
        """The proxy the oracle reads moves to another aggregator (AggregatorConfirmed)."""
        if not self.proxies:
            await self.switch_source()
        sym = self.rng.choice(sorted(self.proxies))
        price = int((await self.d.prices())[sym] * self.rng.uniform(0.9, 1.02))
        feed = await self.d.tx.deploy(_FEED.deploy_data(8, f"{sym} / USD v3", price))
        await self.d.tx.transact(self.proxies[sym], _PROXY.abi["confirmAggregator"], feed)
        self.aggregator[sym] = feed
        self._count("switch_aggregator", True)

    async def time_jump(self) -> None:
        await self.d.increase_time(self.rng.randint(3_600, 60 * 86_400))
        self._count("time_jump", True)

    async def liquidate(self) -> None:
        rows = await self.d.account_data(self.users)
        under = [r.user for r in rows if r.total_debt_base and r.health_factor < WAD]
        if not under:
            return
        user = self.rng.choice(under)
        rec = self.book.record(user)
        collateral = [a for a in rec.collateral
                      if a in rec.positions and rec.positions[a].scaled_a_token_balance]
        # Variable or stable: a liquidation burns variable debt first, then stable.
        debts = [a for a, p in rec.positions.items()
                 if p.scaled_variable_debt or p.stable_debt_principal]
        if not collateral or not debts:
            return
        col, debt = self.rng.choice(collateral), self.rng.choice(debts)
        market = self.book.market()
        owed = user_debt(market.reserve_of(debt), rec.positions[debt], market.timestamp).total
        sym = self.symbol(debt)
        liq = self.liquidator
        data = _POOL["liquidationCall"].encode(col, debt, user, MAX_UINT, self.rng.random() < 0.3)
        ok = await self.send(self.d.users.tx_mint(liq, sym, 2 * owed + 10), self.d.users.tx_approve(liq, sym),
                             Tx(liq, self.m.pool, data, 1_500_000))
        self._count("liquidation", ok)


async def test_book_equals_chain_after_random_history(devnet: Devnet) -> None:
    seed = 20240607
    plans = plan_population(seed, 300, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    users = [p.address for p in plans]

    sync = BookSync(devnet.rpc, contracts_of(devnet), fast_config(devnet))
    await sync.catch_up()  # backfill of the seeded population, then a few live blocks
    assert set(users) <= set(sync.book.users())
    await assert_book_matches_chain(sync.book, devnet, users)

    updates = sync.subscribe()
    runner = asyncio.create_task(sync.run())
    history = RandomHistory(devnet, sync.book, users, seed)
    await devnet.fund([history.liquidator])
    try:
        for i in range(160):
            await history.step()
            if i % 40 == 39:
                # Mid-way checks against the chain, at whatever block the book is at.
                await wait_for_block(sync, await tip(devnet))
                await assert_book_matches_chain(sync.book, devnet, users)
        await wait_for_block(sync, await tip(devnet))
        liquidatable = await assert_book_matches_chain(sync.book, devnet, users)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner

    counts = history.counts
    for op in ("supply", "borrow", "repay", "withdraw", "price", "switch_source",
               "switch_aggregator", "time_jump", "liquidation", "emode", "borrow_stable"):
        assert counts.get(op, 0) > 0, f"no successful {op} in {counts}"
    # AnswerUpdated and oracle reads reported moved assets to the scanner's queue.
    seen: list[BlockUpdate] = []
    while not updates.empty():
        seen.append(updates.get_nowait())
    moved = set().union(*(u.moved_assets for u in seen))
    assert {devnet.m.reserve("WETH").address, devnet.m.reserve("wstETH").address} & moved
    print(f"ops {counts}; liquidatable at the end: {liquidatable}")


@pytest.fixture(params=["3.0", "3.6"])
async def market(request: pytest.FixtureRequest) -> AsyncIterator[Devnet]:
    """A fresh anvil with the Aave market of one revision (from saved state)."""
    async with running_devnet(request.param) as devnet:
        yield devnet


_EXPECTED = {"3.0": AaveRevision.V3_0, "3.6": AaveRevision.V3_6}


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_book_equals_chain_per_revision(market: Devnet, seed: int) -> None:
    """Seeds 1-5 on v3.0 and v3.6: the revision comes from the chain, and after a short random
    history and after a market crash every account's health factor, collateral and debt, the
    liquidatable set and the bad-debt set equal the chain's."""
    devnet, t0 = market, time.perf_counter()
    plans = plan_population(seed, 40, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    users = [p.address for p in plans]
    sync = BookSync(devnet.rpc, contracts_of(devnet), fast_config(devnet))
    await sync.catch_up()
    assert sync.book.state.revision == _EXPECTED[devnet.m.aave_version]
    runner = asyncio.create_task(sync.run())
    history = RandomHistory(devnet, sync.book, users, seed)
    await devnet.fund([history.liquidator])
    checked = 0
    try:
        for _ in range(30):
            await history.step()
        await wait_for_block(sync, await tip(devnet))
        await assert_book_matches_chain(sync.book, devnet, users)
        await crash(devnet, {"WETH": 0.6, "WBTC": 0.7}, blocks=2)
        for _ in range(6):
            await history.liquidate()
        await wait_for_block(sync, await tip(devnet))
        liquidatable = await assert_book_matches_chain(sync.book, devnet, users)
        checked = len(set(users) | set(sync.book.users()))
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    print(f"aave {devnet.m.aave_version} seed {seed}: {checked} accounts equal, "
          f"{liquidatable} liquidatable after the crash, ops {history.counts}, "
          f"{time.perf_counter() - t0:.1f} s")
