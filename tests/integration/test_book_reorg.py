"""A real reorg (``anvil_reorg`` depth 3, new blocks with other transactions) seen by the live
sync: the book rolls back to the common ancestor, applies the new branch and then equals a
fresh full re-index and the chain."""

from __future__ import annotations

import asyncio

import pytest

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import plan_population, seed_population
from keeper.pipeline.sync import BookSync
from keeper.protocols.aave_v3.book import PositionBook
from tests.integration.test_book_property import (
    assert_book_matches_chain,
    contracts_of,
    fast_config,
    tip,
    wait_for_block,
)

pytestmark = pytest.mark.integration

_FEED = artifacts.ours("PriceFeed").abi


def assert_books_equal(a: PositionBook, b: PositionBook) -> None:
    """Same block, same users field by field, same reserves, prices and eMode categories."""
    assert (a.block_number, a.block_hash, a.block_timestamp) == (
        b.block_number, b.block_hash, b.block_timestamp)
    assert set(a.users()) == set(b.users())
    for u in a.users():
        assert a.record(u) == b.record(u), u
        assert a.account(u) == b.account(u), u
    ma, mb = a.market(), b.market()
    assert ma.reserves == mb.reserves
    assert ma.prices == mb.prices
    assert ma.emode_categories == mb.emode_categories
    assert ma.timestamp == mb.timestamp
    for asset in {r.asset for r in ma.reserves.values()}:
        assert a.holders(asset) == b.holders(asset)


async def fresh_index(devnet: Devnet, at: int) -> PositionBook:
    sync = BookSync(devnet.rpc, contracts_of(devnet), fast_config(devnet))
    await sync.run(until=at)
    assert sync.book.block_number == at
    return sync.book


async def test_reorg_rolls_back_and_equals_a_fresh_index(devnet: Devnet) -> None:
    plans = plan_population(5, 60, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    users = [p.address for p in plans]
    sync = BookSync(devnet.rpc, contracts_of(devnet), fast_config(devnet))
    await sync.catch_up()
    runner = asyncio.create_task(sync.run())
    try:
        # Three blocks the reorg will remove: a borrow, a repay and a price move.
        d = devnet
        weth = d.m.reserve("WETH")
        debt_symbol = plans[1].borrows[0][0]
        await d.send(d.users.tx_approve(users[1], debt_symbol))
        await d.send(d.users.tx_borrow(users[0], "USDC", 10 * 10**6))
        await d.send(d.users.tx_repay(users[1], debt_symbol, 1000))
        await d.tx.transact(weth.aggregator, _FEED["updateAnswer"], 1_700 * 10**8)
        before = await tip(d)
        await wait_for_block(sync, before)
        removed_hash = sync.book.block_hash

        # The new branch: 3 blocks with other transactions (another price, from the deployer,
        # whose key anvil holds), then one more block so the follower sees the fork.
        replacement = {"from": d.m.deployer, "to": weth.aggregator,
                       "data": "0x" + _FEED["updateAnswer"].encode(2_300 * 10**8).hex(),
                       "gas": hex(200_000)}
        await d.rpc.call("anvil_reorg", [3, [[replacement, 1]]])
        await d.mine(1)
        after = await tip(d)
        assert after == before + 1
        await wait_for_block(sync, after)
        assert sync.reorgs == 1
        assert sync.book.block_hash != removed_hash
        assert sync.book.market().prices[weth.address] == 2_300 * 10**8
        # Nothing is left of the removed borrow, repay and price.
        await assert_book_matches_chain(sync.book, d, users)
        assert_books_equal(sync.book, await fresh_index(d, after))
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
