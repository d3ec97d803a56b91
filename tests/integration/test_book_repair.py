"""A book account the chain contradicts is read from the contracts and restored, on the real
Aave V3 devnet: the scanner names it, the repair restores exactly what the contracts hold,
and a record the contracts confirm is not read again for a while; one the book holds healthier
than it is, which the scanner never checks, is restored by the audit of every account."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from keeper.app.audit_task import BookAuditTask
from keeper.chain.rpc import JsonRpc
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.domain.account import UserReserve
from keeper.domain.wadray import WAD
from keeper.obs.metrics import Metrics
from keeper.pipeline.book_repair import BookRepair
from keeper.pipeline.scan import HealthScanner
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3.book import PositionBook
from keeper.protocols.aave_v3.reader import AaveV3Contracts, MarketReader

pytestmark = pytest.mark.integration


class CountingRpc:
    """The devnet's RPC, counting the calls that reach it."""

    def __init__(self, rpc: JsonRpc) -> None:
        self.rpc = rpc
        self.calls = 0

    async def call(self, method: str, params: Any = (), **kw: Any) -> Any:
        self.calls += 1
        return await self.rpc.call(method, params, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rpc, name)


async def synced_after_a_crash(devnet: Devnet, *, seed: int, borrowers: int, weth: float,
                               ) -> tuple[BookSync, AaveV3Contracts, list[str]]:
    """Borrowers seeded, WETH crashed to ``weth`` of its price, a book synced to the tip; the
    sync, the market's contracts and the accounts under water."""
    plans = plan_population(seed, borrowers, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    await crash(devnet, {"WETH": weth}, blocks=2)
    m = devnet.m
    contracts = AaveV3Contracts(m.pool, m.oracle, m.pool_configurator, m.pool_addresses_provider)
    sync = BookSync(devnet.rpc, contracts, SyncConfig(start_block=m.deploy_block, progress=False))
    await sync.catch_up()
    under = [u for u in (p.address.lower() for p in plans) if sync.book.health_factor(u) < WAD]
    assert under, "the crash put nobody under water"
    return sync, contracts, under


def scale_debt(book: PositionBook, user: str, num: int, den: int) -> dict[str, UserReserve]:
    """``user``'s variable debt in the book times ``num / den`` (an event the book missed);
    the positions before."""
    account = book.account(user)
    before = dict(account.reserves)
    scaled = {a: replace(r, scaled_variable_debt=r.scaled_variable_debt * num // den)
              for a, r in before.items()}
    assert book.restore_user(user, account.configuration, account.emode_category, scaled)
    return before


async def test_an_account_the_chain_contradicts_is_restored_from_the_contracts(
    devnet: Devnet,
) -> None:
    sync, contracts, under = await synced_after_a_crash(devnet, seed=7, borrowers=40, weth=0.72)
    book, m = sync.book, devnet.m
    # A missed Repay: the book holds twice the debt of one account under water.
    wrong = under[0]
    truth = scale_debt(book, wrong, 2, 1)

    scanner = HealthScanner(book)
    await scanner.scan(devnet.rpc, m.pool, chunk=100)
    assert wrong in scanner.mismatched

    node = CountingRpc(devnet.rpc)
    repair = BookRepair(node)
    reader = MarketReader(contracts, book.state.revision)
    assert await repair.repair(book, reader, scanner.mismatched) == [wrong]
    assert dict(book.account(wrong).reserves) == truth
    chain = await reader.read_users(devnet.rpc, [wrong], book.state.tokens, book.block_hash)
    assert book.account(wrong).configuration == chain[wrong].configuration
    # Named again with its record as the contracts hold it: read once, then not again.
    calls = node.calls
    assert await repair.repair(book, reader, [wrong, under[-1]]) == []
    assert node.calls == calls + 1
    assert await repair.repair(book, reader, [wrong, under[-1]]) == []
    assert node.calls == calls + 1
    # Blocks later an event may have been missed since: confirmed records are read again.
    await devnet.mine(repair.recheck_blocks)
    await sync.catch_up()
    assert await repair.repair(book, reader, [wrong]) == []
    assert node.calls == calls + 2


async def test_the_audit_restores_an_account_the_book_holds_healthier_than_it_is(
    devnet: Devnet,
) -> None:
    # A missed Borrow: the book holds a quarter of the debt of an account under water, so it
    # looks healthy and the scanner never asks the chain about it. The audit reads every
    # account in turn, and restores it on its slice.
    sync, _, under = await synced_after_a_crash(devnet, seed=8, borrowers=30, weth=0.7)
    book, m = sync.book, devnet.m
    hidden = under[0]
    scale_debt(book, hidden, 1, 4)
    assert book.health_factor(hidden) > WAD * 11 // 10
    scanner = HealthScanner(book)
    found = await scanner.scan(devnet.rpc, m.pool, chunk=100)
    assert hidden not in {c.user for c in found} and not scanner.mismatched

    restored: list[str] = []
    metrics = Metrics()
    keeper = SimpleNamespace(sync=sync, metrics=metrics)
    audit = BookAuditTask(keeper, BookRepair(devnet.rpc), 7, 0.01,  # type: ignore[arg-type]
                          scans=lambda: 0, idle=lambda: True, restored=restored.extend)
    accounts = len(list(book.users()))
    for _ in range(-(-accounts // 7)):  # one pass, 7 accounts a step
        await audit.step()
    assert audit.audited == accounts and audit.passes == 0
    assert restored == [hidden] and book.health_factor(hidden) < WAD
    assert metrics.registry.get_sample_value("keeper_book_repairs_total",
                                             {"source": "audit"}) == 1
    await audit.step()  # the next pass begins
    assert audit.passes == 1 and restored == [hidden]
