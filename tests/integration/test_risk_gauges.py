"""The daemon's stress gauges on a devnet book: one refresh publishes, per asset and for the
volatile assets together, the liquidatable and bad debt of −10/−20/−30%, as the risk lab
computes them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from keeper.app.config import KeeperConfig
from keeper.app.risk_task import RiskGaugeTask
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import plan_population, seed_population
from keeper.domain.risk_book import build_risk_book
from keeper.domain.risk_shock import Shock, evaluate_shock
from keeper.obs.metrics import Metrics
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3.reader import AaveV3Contracts

pytestmark = pytest.mark.integration


async def test_one_refresh_sets_the_stress_gauges(devnet: Devnet) -> None:
    m = devnet.m
    await seed_population(devnet, plan_population(21, 120, m, await devnet.prices()))
    contracts = AaveV3Contracts(m.pool, m.oracle, m.pool_configurator, m.pool_addresses_provider)
    sync = BookSync(devnet.rpc, contracts, SyncConfig(start_block=m.deploy_block, progress=False))
    await sync.catch_up()
    await sync.close()
    metrics = Metrics()
    keeper: Any = SimpleNamespace(
        sync=sync, metrics=metrics, cfg=KeeperConfig(),
        target=SimpleNamespace(symbols={r.address: r.symbol for r in m.reserves}))
    task = RiskGaugeTask(cast(Any, keeper), every_blocks=10, poll=0.1)
    await task.refresh()

    assert task.refreshes == 1
    assert metrics.value("keeper_risk_block") == sync.book.block_number
    book = sync.book
    risk = build_risk_book(book.market(), {u: book.account(u) for u in book.users()})
    weth = m.reserve("WETH").address.lower()
    expected = evaluate_shock(risk, Shock("-30%", {weth: 0.7}))
    labels = {"asset": "WETH", "shock": "-30%"}
    assert metrics.value("keeper_risk_liquidatable_debt_usd", labels) == pytest.approx(
        expected.liquidatable_debt / 1e8)
    assert metrics.value("keeper_risk_bad_debt_usd", labels) == pytest.approx(
        expected.bad_debt / 1e8)
    joint = {"asset": "all_volatile", "shock": "-30%"}
    single = metrics.value("keeper_risk_liquidatable_debt_usd", labels) or 0.0
    assert (metrics.value("keeper_risk_liquidatable_debt_usd", joint) or 0.0) >= single > 0
