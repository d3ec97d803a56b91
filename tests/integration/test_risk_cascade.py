"""A cascade on the devnet against the risk lab's prediction: the driver liquidates every account
under water, sells the collateral into the pools and moves the oracle to the DEX price each
round; the bad debt it ends with is within 1% of the predicted one."""

from __future__ import annotations

import pytest

from keeper.devnet.cascade import drive_cascade
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.quote import needed_pairs
from keeper.domain.risk_cascade import CascadeConfig, run_cascade
from keeper.domain.risk_shock import PriceLink
from keeper.domain.wadray import WAD
from keeper.protocols.uniswap_v2.pair import load_pair_reserves
from tests.conftest import running_devnet
from tests.integration.test_risk_shock import _book

pytestmark = pytest.mark.integration


async def test_devnet_cascade_ends_within_one_percent_of_the_predicted_bad_debt() -> None:
    # v3.0: a position left without collateral keeps its debt on the books (3.3+ burns it into
    # a reserve deficit), so the chain's bad debt is what getUserAccountData reports.
    async with running_devnet("3.0") as devnet:
        m = devnet.m
        before = await devnet.prices()
        plans = plan_population(5, 150, m, before)
        await seed_population(devnet, plans)
        await crash(devnet, {"WETH": 0.6, "WBTC": 0.65}, blocks=1)
        users = [p.address.lower() for p in plans]

        book = await _book(devnet)
        market = book.market
        assert market is not None
        addr = {r.symbol: r.address.lower() for r in m.reserves}
        now = dict(market.prices)
        start = {addr[s]: p for s, p in before.items()}
        keys = needed_pairs(book.assets, book.assets)
        pools = await load_pair_reserves(devnet.rpc, m.uniswap_factory, keys)
        link = PriceLink(addr["wstETH"], addr["WETH"], now[addr["wstETH"]] * WAD
                         // now[addr["WETH"]])
        predicted = run_cascade(book, start, now, pools,
                                CascadeConfig(addr["USDC"], 1.0, (addr["WETH"],), links=(link,)))

        rounds = await drive_cascade(devnet, users, quote="USDC", hubs=("WETH",))
        data = await devnet.account_data(users)
        chain_bad = sum(max(d.total_debt_base - d.total_collateral_base, 0) for d in data)

        assert 2 <= len(rounds) < 20 and len(predicted.rounds) >= 2  # it did cascade, and ended
        assert predicted.bad_debt > predicted.bad_debt_initial > 0
        assert abs(chain_bad - predicted.bad_debt) <= 0.01 * chain_bad, (
            chain_bad, predicted.bad_debt, len(rounds), len(predicted.rounds))
