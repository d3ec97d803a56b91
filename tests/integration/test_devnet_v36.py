"""The Aave v3.6 devnet on the real contracts (compiled from npm aave-v3-origin): what it deploys,
a seeded scenario crashed under water, one liquidation checked against the v3.3+ rules, and
``keeper devnet up --aave 3.6`` from saved state as a user runs it.

The build is cached in build/aave-v3-origin.json and the deployed chain in build/test-devnet
(keyed by every deploy input), so only the first run on a machine compiles (20-40 s).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keeper.devnet import market_v36
from keeper.devnet.driver import Devnet
from keeper.devnet.origin_build import origin
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.devnet.users import MAX_UINT, STABLE, Tx
from keeper.errors import DevnetError
from tests.conftest import TEST_STATE_DIR, running_devnet

ROOT = Path(__file__).resolve().parents[2]
POOL = origin("PoolInstance").abi
ZERO = "0x" + "00" * 20
WAD = 10**18


@pytest.fixture
async def devnet36() -> AsyncIterator[Devnet]:
    """A fresh anvil with the v3.6 market (deployed once into build/test-devnet, then loaded)."""
    async with running_devnet("3.6") as devnet:
        yield devnet


async def _now(d: Devnet) -> int:
    latest = await d.rpc.call("eth_getBlockByNumber", ["latest", False])
    return int(latest["timestamp"], 16)


async def test_v36_market_as_deployed(devnet36: Devnet) -> None:
    d, m = devnet36, devnet36.m
    assert m.aave_version == "3.6" and m.pool_revision == 10
    (revision,) = await d.tx.call(m.pool, POOL["POOL_REVISION"])
    assert revision == 10
    # Six reserves with today's decimals; no stable debt tokens any more.
    assert [(r.symbol, r.decimals) for r in m.reserves] == [
        ("WETH", 18), ("WBTC", 8), ("USDC", 6), ("DAI", 18), ("wstETH", 18), ("LINK", 18)]
    assert all(r.stable_debt_token == ZERO for r in m.reserves)
    # Liquid eMode: wstETH is collateral in two categories with different borrowables.
    ids = {r.symbol: i for i, r in enumerate(m.reserves)}  # reserve id = order of initReserves
    for e in market_v36.EMODES:
        (coll,) = await d.tx.call(m.pool, POOL["getEModeCategoryCollateralBitmap"], e.id)
        (borr,) = await d.tx.call(m.pool, POOL["getEModeCategoryBorrowableBitmap"], e.id)
        assert coll == sum(1 << ids[s] for s in e.collateral)
        assert borr == sum(1 << ids[s] for s in e.borrowable)
    assert {e.id for e in m.emodes if "wstETH" in e.collateral} == {2, 3}
    # Isolation: LINK has a debt ceiling; the grace period on it is running (re-armed on load).
    link = m.reserve("LINK")
    assert link.debt_ceiling > 0
    (until,) = await d.tx.call(m.pool, POOL["getLiquidationGracePeriod"], link.address)
    assert until == m.grace_period_until["LINK"] > await _now(d)
    (weth_until,) = await d.tx.call(m.pool, POOL["getLiquidationGracePeriod"], m.reserve("WETH").address)
    assert weth_until == 0


async def test_v36_scenario_crash_underwater(devnet36: Devnet) -> None:
    d = devnet36
    plans = plan_population(3, 120, d.m, await d.prices())
    assert {p.emode for p in plans} >= {0, 1, 2, 3}
    await seed_population(d, plans)
    # Virtual accounting: the Pool tracks each reserve's underlying itself, equal to what it
    # holds as long as nobody sends tokens to the aToken directly.
    for r in d.m.reserves:
        (virtual,) = await d.tx.call(d.m.pool, POOL["getVirtualUnderlyingBalance"], r.address)
        assert virtual == await d.balance_of(r.symbol, r.a_token) > 0
    before = [a for a in await d.account_data([p.address for p in plans]) if a.total_debt_base]
    assert before and all(a.health_factor >= WAD for a in before)
    await crash(d, {"WETH": 0.72, "WBTC": 0.85}, blocks=3)
    after = await d.account_data([p.address for p in plans])
    under = [a for a in after if a.health_factor < WAD]
    assert len(under) >= 5


def _percent_mul(value: int, pct: int) -> int:
    return (value * pct + 5_000) // 10_000


def _percent_div(value: int, pct: int) -> int:
    return (value * 10_000 + pct // 2) // pct


async def test_v36_liquidation_call_follows_v33_rules(devnet36: Devnet) -> None:
    d, m = devnet36, devnet36.m
    weth, usdc = m.reserve("WETH"), m.reserve("USDC")
    user, liquidator = "0x" + "b0" * 20, "0x" + "1c" * 20
    await d.fund([user, liquidator])
    lp = d.users.deposit_txs(m.deployer, "USDC", 1_000_000 * 10**6)
    await d.send_many([*lp, *d.users.deposit_txs(user, "WETH", 10 * WAD),
                       d.users.tx_borrow(user, "USDC", 15_000 * 10**6)])
    await d.set_price("WETH", 1_800 * 10**8)  # HF 0.99: 10 WETH × 1800 × 0.825 / 15,000
    await d.send_many([d.users.tx_mint(liquidator, "USDC", 20_000 * 10**6), d.users.tx_approve(liquidator, "USDC")])

    # The account as the liquidation will see it: in the next block (one second later).
    t = await _now(d) + 1
    acct_call = {"to": m.pool, "data": POOL["getUserAccountData"].encode_hex(user)}
    raw = await d.rpc.call("eth_call", [acct_call, "latest", {}, {"time": hex(t)}])
    coll_base, debt_base, _avail, _lt, _ltv, hf = POOL["getUserAccountData"].decode_output(raw)
    assert 0.95 * WAD < hf < WAD and coll_base >= 2_000 * 10**8 and debt_base >= 2_000 * 10**8
    prices = await d.prices()
    a_coll_before = await d.balance_of(weth.a_token, user)
    usdc0, weth0 = await d.balance_of("USDC", liquidator), await d.balance_of("WETH", liquidator)

    await d.send(Tx(liquidator, m.pool, POOL["liquidationCall"].encode(
        weth.address, usdc.address, user, MAX_UINT, False), 1_500_000))
    repaid = usdc0 - await d.balance_of("USDC", liquidator)
    seized = await d.balance_of("WETH", liquidator) - weth0

    # Close factor (v3.3+): collateral and debt both ≥ $2,000 and HF > 0.95 → at most 50% of
    # the position's total debt, in the debt asset's units (floor).
    expected_repaid = _percent_mul(debt_base, 5_000) * 10**usdc.decimals // prices["USDC"]
    assert repaid == expected_repaid
    # Collateral: repaid debt × prices × bonus, less the protocol's share of the bonus.
    base = prices["USDC"] * repaid * 10**weth.decimals // (prices["WETH"] * 10**usdc.decimals)
    with_bonus = _percent_mul(base, weth.liquidation_bonus)
    fee = _percent_mul(with_bonus - _percent_div(with_bonus, weth.liquidation_bonus),
                       weth.liquidation_protocol_fee)
    assert seized == with_bonus - fee
    # ≈ 7,500 × 1.05 / 1,800 = 4.375 WETH, of which 10% of the 5% bonus goes to the treasury.
    assert abs(with_bonus - 4_375 * WAD // 1_000) < WAD // 100
    assert abs(seized - 4_354_166 * WAD // 1_000_000) < WAD // 100
    # What is left is no dust: both sides stay ≥ $1,000 (else MustNotLeaveDust would revert).
    (_c, debt_left, *_rest) = await d.tx.call(m.pool, POOL["getUserAccountData"], user)
    assert debt_left >= 1_000 * 10**8
    assert await d.balance_of(weth.a_token, user) >= a_coll_before - seized - fee


def test_v36_cli_up_from_saved_state(tmp_path: Path, devnet36: Devnet) -> None:
    # devnet36 made sure the saved v3.6 deploy exists; reuse it in a private state dir.
    state = tmp_path / "devnet"
    state.mkdir()
    for name in ("deployed-state-v3.6.json", "deployed-manifest-v3.6.json", "deployed-state-v3.6.key"):
        shutil.copy(TEST_STATE_DIR / name, state / name)

    def keeper(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "keeper", "devnet", "--state-dir", str(state),
                               *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                              check=False)

    t0 = time.perf_counter()
    up = keeper("up", "--aave", "3.6")
    elapsed = time.perf_counter() - t0
    assert up.returncode == 0, up.stderr
    assert "Aave 3.6, Pool revision 10, loaded saved state" in up.stdout
    assert elapsed < 5.0
    try:
        assert keeper("status").returncode == 0
        clash = keeper("up", "--aave", "3.0")
        assert clash.returncode != 0 and "runs Aave 3.6" in clash.stderr
        seeded = keeper("scenario", "--borrowers", "40", "--seed", "1")
        assert seeded.returncode == 0, seeded.stderr
        crashed = keeper("crash", "WETH=0.7", "WBTC=0.8", "--blocks", "2")
        assert crashed.returncode == 0, crashed.stderr
        under = keeper("underwater")
        assert under.returncode == 0 and "under health factor 1" in under.stdout
        assert not under.stdout.startswith("0 of")
    finally:
        down = keeper("down")
    assert down.returncode == 0 and "stopped" in down.stdout


async def test_v36_driver_refuses_stable_rate(devnet36: Devnet) -> None:
    with pytest.raises(DevnetError, match="no stable-rate debt"):
        devnet36.users.tx_borrow("0x" + "b1" * 20, "USDC", 10**6, rate_mode=STABLE)
