"""The risk lab's static shocks against the chain: for each shock of a grid, the predicted
liquidatable accounts, their debt and health factors equal, to the wei, what
Pool.getUserAccountData answers once ``keeper devnet crash`` has applied that shock."""

from __future__ import annotations

from typing import Any

import pytest

from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.risk_book import RiskBook, build_risk_book
from keeper.domain.risk_shock import PriceLink, Shock, evaluate_shock
from keeper.domain.wadray import WAD
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3.reader import AaveV3Contracts
from tests.conftest import running_devnet

pytestmark = pytest.mark.integration

_ADAPTER = artifacts.ours("RateAdapter").abi

# Dyadic fractions: the crash driver's float arithmetic lands on the same integer price.
GRID = [
    {"WETH": 0.75},
    {"WBTC": 0.5},
    {"WETH": 0.875, "WBTC": 0.875},
    {"WETH": 0.625, "WBTC": 0.75, "LINK": 0.5},
]


async def _book(devnet: Devnet) -> RiskBook:
    m = devnet.m
    contracts = AaveV3Contracts(m.pool, m.oracle, m.pool_configurator, m.pool_addresses_provider)
    sync = BookSync(devnet.rpc, contracts, SyncConfig(start_block=m.deploy_block, progress=False))
    await sync.catch_up()
    await sync.close()
    book = sync.book
    return build_risk_book(book.market(), {u: book.account(u) for u in book.users()})


async def _call(devnet: Devnet, to: str, fn: Any, block: int) -> Any:
    raw = await devnet.rpc.call("eth_call", [{"to": to, "data": "0x" + fn.encode().hex()},
                                             hex(block)])
    return fn.decode_output(str(raw))[0]


@pytest.mark.parametrize("aave", ["3.6", "3.0"])
async def test_static_shocks_predict_the_chain_to_the_wei(aave: str) -> None:
    async with running_devnet(aave) as devnet:
        m = devnet.m
        plans = plan_population(11, 150, m, await devnet.prices())
        await seed_population(devnet, plans)
        users = [p.address.lower() for p in plans]
        book = await _book(devnet)
        addr = {r.symbol: r.address.lower() for r in m.reserves}
        wsteth = m.reserve("wstETH")
        snapshot = await devnet.rpc.call("evm_snapshot")
        seen_liquidatable = 0
        for moves in GRID:
            # WETH is always "moved" (fraction 1 when not shocked) so that wstETH, priced off
            # its feed by a rate adapter, takes the adapter's rate of the crash's block.
            moves = {"WETH": 1.0, **moves}
            before = int(await devnet.rpc.call("eth_blockNumber"), 16)
            # A fresh handle each time: the arbitrageur remembers its router approvals, which
            # the revert to the snapshot undid.
            await crash(Devnet(devnet.rpc, m), moves, blocks=1)
            block = before + len(moves)  # one block per price update, then the arbitrage
            header = await devnet.rpc.call("eth_getBlockByNumber", [hex(block), False])
            rate = await _call(devnet, wsteth.price_source, _ADAPTER["exchangeRate"], block)

            shock = Shock("grid", {addr[s]: f for s, f in moves.items()})
            outcome = evaluate_shock(
                book, shock, links=[PriceLink(addr["wstETH"], addr["WETH"], int(rate))],
                timestamp=int(header["timestamp"], 16), detail=True)

            chain = {d.user.lower(): d for d in await devnet.account_data(users, hex(block))}
            truth = {u for u, d in chain.items() if d.health_factor < WAD}
            assert set(outcome.exact) == truth, moves
            for u, predicted in outcome.exact.items():
                assert predicted.health_factor == chain[u].health_factor, (moves, u)
                assert predicted.total_debt_base == chain[u].total_debt_base, (moves, u)
                assert predicted.total_collateral_base == chain[u].total_collateral_base
            assert outcome.exact_debt == sum(chain[u].total_debt_base for u in truth)
            assert outcome.liquidatable == len(truth)
            seen_liquidatable += len(truth)
            await devnet.rpc.call("evm_revert", [snapshot])
            snapshot = await devnet.rpc.call("evm_snapshot")
        assert seen_liquidatable > 20  # the grid put accounts under water
