"""Restart from the SQLite checkpoint: the sync is stopped mid-stream, the chain moves on (and
in the second test reorgs the checkpoint's own block away), a new sync with an empty book
resumes from the file without a backfill, and the book equals a fresh full re-index."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import plan_population, seed_population
from keeper.pipeline.store import BookStore
from keeper.pipeline.sync import BookSync
from tests.integration.test_book_property import (
    assert_book_matches_chain,
    contracts_of,
    fast_config,
    tip,
    wait_for_block,
)
from tests.integration.test_book_reorg import assert_books_equal, fresh_index

pytestmark = pytest.mark.integration

_FEED = artifacts.ours("PriceFeed").abi


def store_for(devnet: Devnet, path: Path) -> BookStore:
    m = devnet.m
    return BookStore(path, {"pool": m.pool, "start_block": m.deploy_block})


async def some_activity(devnet: Devnet, users: list[str], rng: random.Random, n: int) -> None:
    for _ in range(n):
        u = rng.choice(users)
        sym = rng.choice(["USDC", "DAI", "WETH"])
        await devnet.send_many(devnet.users.deposit_txs(u, sym, 10 ** devnet.m.reserve(sym).decimals))
    await devnet.increase_time(86_400)
    await devnet.set_price("WBTC", int((await devnet.prices())["WBTC"] * 0.97))


async def test_restart_resumes_from_the_checkpoint(devnet: Devnet, tmp_path: Path) -> None:
    rng = random.Random(3)
    plans = plan_population(3, 80, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    users = [p.address for p in plans]
    db = tmp_path / "book.sqlite"

    first = BookSync(devnet.rpc, contracts_of(devnet), fast_config(devnet),
                     store=store_for(devnet, db))
    runner = asyncio.create_task(first.run())
    await some_activity(devnet, users, rng, 5)
    await wait_for_block(first, await tip(devnet))
    await some_activity(devnet, users, rng, 3)
    runner.cancel()  # mid-stream: wherever it is
    with pytest.raises(asyncio.CancelledError):
        await runner
    stopped_at = first.book.block_number
    await first.close()

    await some_activity(devnet, users, rng, 5)  # the chain moves on while we are down

    second = BookSync(devnet.rpc, contracts_of(devnet), fast_config(devnet),
                      store=store_for(devnet, db))
    now = await tip(devnet)
    await second.run(until=now)
    await second.close()
    assert second.resumed_from == stopped_at  # no backfill
    assert second.book.block_number == now
    await assert_book_matches_chain(second.book, devnet, users)
    assert_books_equal(second.book, await fresh_index(devnet, now))


async def test_restart_rolls_back_a_checkpoint_that_was_reorged_out(
    devnet: Devnet, tmp_path: Path
) -> None:
    rng = random.Random(4)
    plans = plan_population(4, 40, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    users = [p.address for p in plans]
    db = tmp_path / "book.sqlite"

    first = BookSync(devnet.rpc, contracts_of(devnet), fast_config(devnet),
                     store=store_for(devnet, db))
    await some_activity(devnet, users, rng, 4)
    end = await tip(devnet)
    await first.run(until=end)  # checkpoints at `end` on the way out
    await first.close()
    checkpoint_hash = first.book.block_hash

    # Down for a while, and the checkpoint block and the two before it are replaced.
    weth = devnet.m.reserve("WETH")
    replacement = {"from": devnet.m.deployer, "to": weth.aggregator,
                   "data": "0x" + _FEED["updateAnswer"].encode(2_100 * 10**8).hex(),
                   "gas": hex(200_000)}
    await devnet.rpc.call("anvil_reorg", [3, [[replacement, 0]]])
    await some_activity(devnet, users, rng, 2)

    second = BookSync(devnet.rpc, contracts_of(devnet), fast_config(devnet),
                      store=store_for(devnet, db))
    now = await tip(devnet)
    await second.run(until=now)
    await second.close()
    assert second.resumed_from == end - 3  # rolled back with the saved journal, no re-index
    assert second.book.block_hash != checkpoint_hash
    await assert_book_matches_chain(second.book, devnet, users)
    assert_books_equal(second.book, await fresh_index(devnet, now))
