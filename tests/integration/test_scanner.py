"""The scanner against the real Aave V3 on the devnet: after a crash, exactly the chain's set.

The book here is a snapshot read straight from the contracts at one block (getReserveData,
oracle prices, eMode categories, and per user getUserConfiguration, getUserEMode, the tokens'
scaledBalanceOf and stable debt) by a small reader below, independent of ``keeper.protocols.aave_v3.book``: this
test checks the scanner and the exact math against the chain, not the event-driven book.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keeper.chain.abi import Function
from keeper.chain.multicall import MulticallError, aggregate3
from keeper.chain.rpc import JsonRpc
from keeper.commands import scan as scan_cmd
from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.manifest import Manifest
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.account import EModeCategory, Market, ReserveState, UserAccount, UserReserve
from keeper.domain.reserve_config import UserConfiguration, decode_reserve_configuration
from keeper.domain.wadray import WAD
from keeper.pipeline.scan import HealthScanner
from keeper.pipeline.store import BookStore
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3.account_data import read_account_data
from keeper.protocols.aave_v3.reader import AaveV3Contracts

pytestmark = pytest.mark.integration

_POOL = artifacts.aave("Pool").abi
_ORACLE = artifacts.aave("AaveOracle").abi
_STABLE = artifacts.aave("StableDebtToken").abi
_ERC20 = artifacts.aave("MintableERC20").abi
_SCALED = artifacts.aave("AToken").abi["scaledBalanceOf"]


async def _read(
    rpc: JsonRpc, calls: Sequence[tuple[str, Function, tuple[Any, ...]]], block: int
) -> list[tuple[Any, ...]]:
    results = await aggregate3(
        rpc, [(to, fn.encode(*args)) for to, fn, args in calls], block=block, chunk=400
    )
    out = []
    for (to, fn, _), (ok, data) in zip(calls, results, strict=True):
        assert ok, f"{fn.name} on {to} reverted"
        out.append(fn.decode_output(data))
    return out


@dataclass
class ChainSnapshotBook:
    """A BookView of the market and the given users, read from the contracts at one block."""

    block_number: int
    block_timestamp: int
    market_: Market
    accounts: dict[str, UserAccount]

    def market(self) -> Market:
        return self.market_

    def account(self, user: str) -> UserAccount:
        return self.accounts.get(user, UserAccount(UserConfiguration()))

    def users(self) -> Iterable[str]:
        return list(self.accounts)

    def holders(self, asset: str) -> set[str]:
        return {u for u, a in self.accounts.items() if asset in a.reserves}

    def health_factor(self, user: str) -> int:
        raise NotImplementedError  # the scanner does its own exact math

    @classmethod
    async def read(
        cls, rpc: JsonRpc, m: Manifest, users: Sequence[str], block: int
    ) -> ChainSnapshotBook:
        head = await rpc.call("eth_getBlockByNumber", [hex(block), False])
        (assets,) = (await _read(rpc, [(m.pool, _POOL["getReservesList"], ())], block))[0]
        assets = [str(a).lower() for a in assets]
        rows = await _read(rpc, [(m.pool, _POOL["getReserveData"], (a,)) for a in assets], block)
        reserves: dict[int, ReserveState] = {}
        tokens: dict[str, tuple[str, str, str]] = {}
        for asset, (row,) in zip(assets, rows, strict=True):
            reserves[int(row[7])] = ReserveState(
                asset=asset,
                id=int(row[7]),
                configuration=decode_reserve_configuration(int(row[0][0])),
                liquidity_index=int(row[1]),
                current_liquidity_rate=int(row[2]),
                variable_borrow_index=int(row[3]),
                current_variable_borrow_rate=int(row[4]),
                last_update_timestamp=int(row[6]),
            )
            tokens[asset] = (str(row[8]).lower(), str(row[9]).lower(), str(row[10]).lower())
        ((prices,),) = await _read(rpc, [(m.oracle, _ORACLE["getAssetsPrices"], (assets,))], block)
        cats = await _read(
            rpc, [(m.pool, _POOL["getEModeCategoryData"], (e.id,)) for e in m.emodes], block
        )
        emodes = {
            e.id: EModeCategory(int(c[0]), int(c[1]), int(c[2]), str(c[3]).lower(), str(c[4]))
            for e, (c,) in zip(m.emodes, cats, strict=True)
        }
        calls: list[tuple[str, Function, tuple[Any, ...]]] = []
        for u in users:
            calls += [(m.pool, _POOL["getUserConfiguration"], (u,)),
                      (m.pool, _POOL["getUserEMode"], (u,))]
            for a in assets:
                a_token, stable, variable = tokens[a]
                calls += [(a_token, _SCALED, (u,)), (variable, _SCALED, (u,)),
                          (stable, _STABLE["principalBalanceOf"], (u,)),
                          (stable, _STABLE["getUserStableRate"], (u,)),
                          (stable, _STABLE["getUserLastUpdated"], (u,))]
        answers = await _read(rpc, calls, block)
        per_user = 2 + 5 * len(assets)
        accounts: dict[str, UserAccount] = {}
        for i, u in enumerate(users):
            row_ = answers[i * per_user : (i + 1) * per_user]
            positions: dict[str, UserReserve] = {}
            for k, a in enumerate(assets):
                s_a, s_v, p, r, t = (int(x[0]) for x in row_[2 + 5 * k : 7 + 5 * k])
                if s_a or s_v or p:
                    positions[a] = UserReserve(s_a, s_v, p, r, t)
            accounts[u] = UserAccount(
                UserConfiguration(int(row_[0][0][0])), int(row_[1][0]), positions
            )
        market = Market(
            reserves=reserves,
            prices={a: int(p) for a, p in zip(assets, prices, strict=True)},
            timestamp=int(head["timestamp"], 16),
            emode_categories=emodes,
        )
        return cls(block, market.timestamp, market, accounts)


async def test_candidates_confirmed_on_chain_are_exactly_the_chains_liquidatable_set(
    devnet: Devnet,
) -> None:
    plans = plan_population(42, 300, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    await crash(devnet, {"WETH": 0.75}, blocks=3)
    users = [p.address for p in plans]
    block = int(await devnet.rpc.call("eth_blockNumber"), 16)
    book = await ChainSnapshotBook.read(devnet.rpc, devnet.m, users, block)

    scanner = HealthScanner(book)
    found = await scanner.scan(devnet.rpc, devnet.m.pool, chunk=100)

    truth = {d.user for d in await devnet.account_data(users, block=hex(block))
             if d.health_factor < WAD}
    assert 10 < len(truth) < 300  # the crash put some, not all, under water
    assert {c.user for c in found} == truth
    assert all(c.confirmed_on_chain and c.block == block for c in found)
    assert scanner.stats.mismatches == 0 and scanner.stats.chain_failures == 0
    # The book's exact math equals the chain for every account, not only the candidates.
    chain = await read_account_data(devnet.rpc, devnet.m.pool, users, block=block)
    exact = scanner.evaluate(users)
    for user, onchain in zip(users, chain, strict=True):
        assert onchain is not None
        assert exact[user].health_factor == onchain.health_factor, user
        assert exact[user].total_debt_base == onchain.total_debt_base, user
    # The prefilter did its job: far fewer exact evaluations than accounts.
    assert scanner.stats.last_prefiltered < len(users) // 2


async def test_aggregate3_allow_failure_reports_a_reverting_call(devnet: Devnet) -> None:
    weth = devnet.m.reserve("WETH").address
    someone = "0x" + "11" * 20
    calls = [
        (devnet.m.pool, _POOL["getReservesList"].encode()),
        # Multicall3 holds no WETH: this transfer reverts inside the token.
        (weth, _ERC20["transfer"].encode(someone, 10**18)),
        (devnet.m.oracle, _ORACLE["getAssetsPrices"].encode([weth])),
    ]
    results = await aggregate3(devnet.rpc, calls)
    assert [ok for ok, _ in results] == [True, False, True]
    assert results[1][1][:4] == bytes.fromhex("08c379a0")  # Error(string): the revert reason
    (prices,) = _ORACLE["getAssetsPrices"].decode_output(results[2][1])
    assert int(prices[0]) > 0
    with pytest.raises(MulticallError):
        await aggregate3(devnet.rpc, calls, allow_failure=False)


async def test_keeper_scan_reports_the_chains_liquidatable_accounts(
    devnet: Devnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = plan_population(42, 120, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    await crash(devnet, {"WETH": 0.7}, blocks=2)
    devnet.m.save(tmp_path / "manifest.json")
    config = tmp_path / "keeper.toml"
    config.write_text(f'[network]\ndevnet_manifest = "{tmp_path / "manifest.json"}"\n')
    args = argparse.Namespace(config=config, json=True, limit=0)

    assert await scan_cmd.run(args) == 0
    report = json.loads(capsys.readouterr().out)

    users = [p.address for p in plans]
    block = report["block"]
    truth = {d.user for d in await devnet.account_data(users, block=hex(block))
             if d.health_factor < WAD}
    assert truth and {c["user"] for c in report["liquidatable"]} == truth
    assert all(c["confirmed_on_chain"] for c in report["liquidatable"])
    assert report["mismatches"] == 0
    assert {r["user"] for r in report["rows"] if r["liquidatable"]} == truth
    hfs = [int(r["health_factor"]) for r in report["rows"]]
    assert hfs == sorted(hfs)


async def test_keeper_scan_starts_from_a_copy_of_the_checkpoint_and_leaves_it_alone(
    devnet: Devnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = plan_population(43, 80, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    m = devnet.m
    contracts = AaveV3Contracts(m.pool, m.oracle, m.pool_configurator, m.pool_addresses_provider)
    state = tmp_path / "keeper.sqlite"
    identity = {"pool": m.pool, "start_block": m.deploy_block}
    sync = BookSync(devnet.rpc, contracts, SyncConfig(start_block=m.deploy_block, progress=False),
                    store=BookStore(state, identity=identity))
    await sync.catch_up()
    checkpoint_block = sync.book.block_number
    await sync.close()
    before = state.read_bytes()
    await crash(devnet, {"WETH": 0.7}, blocks=2)  # after the checkpoint: the scan must catch up

    m.save(tmp_path / "manifest.json")
    config = tmp_path / "keeper.toml"
    config.write_text(f'[network]\ndevnet_manifest = "{tmp_path / "manifest.json"}"\n'
                      f'[state]\nsqlite = "{state}"\n')
    assert await scan_cmd.run(argparse.Namespace(config=config, json=True, limit=0)) == 0
    report = json.loads(capsys.readouterr().out)

    assert report["resumed_from"] == checkpoint_block < report["block"]
    truth = {d.user for d in await devnet.account_data([p.address for p in plans],
                                                       block=hex(report["block"]))
             if d.health_factor < WAD}
    assert truth and {c["user"] for c in report["liquidatable"]} == truth
    assert state.read_bytes() == before  # the daemon's checkpoint was only read
