"""``keeper run --once`` end to end on the devnet: issue 5's "done when", one test each.

Every test starts its own anvil with the market (``devnet`` fixture), opens positions, moves
prices, and then runs the keeper exactly as ``keeper run --once`` does: ``app.build`` from
``config/devnet.toml`` with the test's manifest, a temporary SQLite book and the devnet keeper's
well-known key, then ``run_once``. What the keeper reports is checked against the chain,
read independently of the executor's own accounting: the owner's token and ETH balances at each
receipt's block and the block before, the receipts of every transaction the keeper account sent,
and the Pool's ``LiquidationCall`` events.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from keeper.app import root as app
from keeper.app.config import load_config
from keeper.app.once import run_once
from keeper.app.report import format_executions
from keeper.commands.target import resolve_target
from keeper.contracts import artifacts
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.devnet.users import Tx
from keeper.domain.plan import RejectionReason
from keeper.exec.executor import Execution
from keeper.exec.tx import Status
from keeper.obs.logging import configure_logging
from keeper.pipeline.sync import SyncConfig
from tests.conftest import running_devnet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "devnet.toml"
# Anvil's account 1: the devnet keeper, owner of the FlashLiquidator. A public dev key.
KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
# Anvil's account 2: a valid key that does not own the liquidator.
OTHER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
PRICE_UNIT = 10**8
GWEI = 10**9

_ERC20 = artifacts.aave("MintableERC20").abi
_ORACLE = artifacts.aave("AaveOracle").abi
_PAIR = artifacts.uniswap("UniswapV2Pair").abi
_LIQUIDATION_CALL = artifacts.aave("Pool").abi.event("LiquidationCall").topic0

# Issue 5: predicted and realised net profit agree within 0.1%.
MAX_RELATIVE_ERROR = Fraction(1, 1000)


# ---- running the keeper -----------------------------------------------------------------------


@dataclass
class Run:
    results: list[Execution]
    table: str
    metrics: str
    logs: list[dict[str, Any]]
    raw_logs: str
    before_block: int  # the head when the run started


def keeper_env(devnet: Devnet, tmp_path: Path, key: str = KEY) -> dict[str, str]:
    manifest = tmp_path / "manifest.json"
    devnet.m.save(manifest)
    return {
        "KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
        "KEEPER_STATE__SQLITE": str(tmp_path / "keeper.sqlite"),
        "KEEPER_PRIVATE_KEY": key,
    }


async def run_keeper(devnet: Devnet, tmp_path: Path, *, dry_run: bool,
                     env: dict[str, str] | None = None) -> Run:
    """One ``keeper run --once`` pass in-process, logging everything (DEBUG) to a buffer."""
    cfg = load_config(CONFIG, keeper_env(devnet, tmp_path) | (env or {}))
    # One second per block, as on a chain with one timestamp per block. Anvil's default
    # wall-clock stamps give several blocks per second the same timestamp, and which second
    # a transaction lands in is then a race: a reserve touched earlier in the same second
    # skips its index update and the transaction uses ~20-40k gas less than planned.
    await devnet.rpc.call("anvil_setBlockTimestampInterval", [1])
    before = await block_number(devnet)
    stream = io.StringIO()
    handle = configure_logging("DEBUG", stream=stream)
    try:
        async with app.build(cfg, resolve_target(cfg), dry_run=dry_run) as keeper:
            results = await run_once(keeper)
            table = format_executions(keeper, results, dry_run=dry_run)
            metrics = keeper.metrics.render().decode()
    finally:
        handle.stop()
    raw = stream.getvalue()
    logs = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return Run(results, table, metrics, logs, raw, before)


def mined(run: Run) -> list[Execution]:
    return [r for r in run.results
            if r.outcome is not None and r.outcome.status is Status.MINED]


# ---- reading the chain ------------------------------------------------------------------------


async def block_number(devnet: Devnet) -> int:
    return int(await devnet.rpc.call("eth_blockNumber"), 16)


async def tx_count(devnet: Devnet, who: str, block: str = "latest") -> int:
    return int(await devnet.rpc.call("eth_getTransactionCount", [who, block]), 16)


async def keeper_receipts(devnet: Devnet, after_block: int) -> list[dict[str, Any]]:
    """Receipts of every transaction the keeper account sent in blocks after ``after_block``."""
    keeper = devnet.m.keeper.lower()
    head = await block_number(devnet)
    blocks = await devnet.rpc.batch([("eth_getBlockByNumber", [hex(b), True])
                                     for b in range(after_block + 1, head + 1)]) if head > after_block else []
    hashes = [tx["hash"] for b in blocks for tx in b["transactions"]
              if str(tx["from"]).lower() == keeper]
    if not hashes:
        return []
    return list(await devnet.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]))


async def assert_keeper_never_reverted(devnet: Devnet, since: Run | int) -> list[dict[str, Any]]:
    """Every transaction of the keeper account since the run (or block) began succeeded, and
    the scan saw them all (its count equals the account's nonce increase)."""
    before_block = since if isinstance(since, int) else since.before_block
    receipts = await keeper_receipts(devnet, before_block)
    assert all(int(r["status"], 16) == 1 for r in receipts), \
        [r["transactionHash"] for r in receipts if int(r["status"], 16) != 1]
    nonce_before = await tx_count(devnet, devnet.m.keeper, hex(before_block))
    assert await tx_count(devnet, devnet.m.keeper) - nonce_before == len(receipts)
    return receipts


async def liquidated_users(devnet: Devnet, after_block: int) -> Counter[str]:
    """How many LiquidationCall events name each user, in blocks after ``after_block``."""
    logs = await devnet.rpc.call("eth_getLogs", [{
        "address": devnet.m.pool, "fromBlock": hex(after_block + 1), "toBlock": "latest",
        "topics": [_LIQUIDATION_CALL]}])
    return Counter("0x" + str(lg["topics"][3])[-40:] for lg in logs)


@dataclass(frozen=True)
class Measured:
    user: str
    pair: tuple[str, str]  # (collateral symbol, debt symbol)
    debt_decimals: int
    predicted_usd: Fraction
    realised_usd: Fraction
    gross_planned: int
    gross_realised: int
    predicted_gas: int
    gas_used: int

    @property
    def relative_error(self) -> Fraction:
        return abs(self.predicted_usd - self.realised_usd) / abs(self.realised_usd)


async def measure(devnet: Devnet, execution: Execution, receipt: dict[str, Any]) -> Measured:
    """The plan's prediction against the owner's balance changes in the receipt's block.

    Realised: the owner's debt-asset balance change plus its ETH balance change (the gas), both
    valued at the oracle's prices of that block. Predicted: the plan's gross profit less the
    traced gas at the price the transaction paid.
    """
    plan = execution.plan
    assert plan is not None and execution.predicted_gas is not None
    m, owner = devnet.m, devnet.m.keeper
    by_address = {r.address: r for r in m.reserves}
    debt, collateral = by_address[plan.debt_asset], by_address[plan.collateral_asset]
    block = int(receipt["blockNumber"], 16)
    weth = m.reserve("WETH").address
    calls = []
    for b in (block - 1, block):
        calls.append(("eth_call", [{"to": debt.address,
                                    "data": _ERC20["balanceOf"].encode_hex(owner)}, hex(b)]))
        calls.append(("eth_getBalance", [owner, hex(b)]))
    calls.append(("eth_call", [{"to": m.oracle, "data": _ORACLE["getAssetsPrices"].encode_hex(
        [debt.address, weth])}, hex(block)]))
    tok0, eth0, tok1, eth1, prices_raw = await devnet.rpc.batch(calls)
    (debt_price, eth_price), = _ORACLE["getAssetsPrices"].decode_output(prices_raw)
    gained = int(tok1, 16) - int(tok0, 16)
    eth_change = int(eth1, 16) - int(eth0, 16)
    price_paid = int(receipt["effectiveGasPrice"], 16)
    # The owner's only ETH flow in that block is the gas of our transaction.
    assert eth_change == -int(receipt["gasUsed"], 16) * price_paid
    unit = 10**debt.decimals
    realised = (Fraction(gained * debt_price, unit)
                + Fraction(eth_change * eth_price, 10**18)) / PRICE_UNIT
    predicted = (Fraction(plan.gross_profit * debt_price, unit)
                 - Fraction(execution.predicted_gas * price_paid * eth_price, 10**18)) / PRICE_UNIT
    return Measured(execution.user, (collateral.symbol, debt.symbol), debt.decimals,
                    predicted, realised, plan.gross_profit, gained, execution.predicted_gas,
                    int(receipt["gasUsed"], 16))


# ---- opening positions --------------------------------------------------------------------------


def amount_of(devnet: Devnet, prices: dict[str, int], symbol: str, usd: float) -> int:
    return int(usd * PRICE_UNIT * 10**devnet.m.reserve(symbol).decimals) // prices[symbol]


async def provide_liquidity(devnet: Devnet, usd: float = 5_000_000) -> None:
    """Deposits of every reserve to borrow from, after enough blocks for the book's backfill.

    The node started from a saved state has no state for the blocks before it, and the
    backfill reads the market ``follow_depth`` blocks below the tip: a short scenario gets
    that many empty blocks first (a long one, like a seeded population, makes them itself).
    """
    await devnet.mine(SyncConfig(start_block=0).follow_depth + 1)
    prices = await devnet.prices()
    txs: list[Tx] = []
    for r in devnet.m.reserves:
        txs += devnet.users.deposit_txs(devnet.m.deployer, r.symbol, amount_of(devnet, prices, r.symbol, usd))
    await devnet.send_many(txs)


async def open_positions(devnet: Devnet, positions: list[tuple[str, str, float, str, float]]) -> None:
    """(user, collateral, collateral USD, debt, debt USD) each; users are funded for gas."""
    prices = await devnet.prices()
    await devnet.fund(p[0] for p in positions)
    txs: list[Tx] = []
    for user, coll, coll_usd, debt, debt_usd in positions:
        txs += devnet.users.deposit_txs(user, coll, amount_of(devnet, prices, coll, coll_usd))
        txs.append(devnet.users.tx_borrow(user, debt, amount_of(devnet, prices, debt, debt_usd)))
    await devnet.send_many(txs)


def user(n: int) -> str:
    return f"0x{0xE2E00000 + n:040x}"


def skipped_logs(run: Run, who: str) -> list[dict[str, Any]]:
    return [e for e in run.logs if e.get("event") == "liquidation_skipped" and e.get("user") == who]


# ---- 1. predicted = realised over many mixed liquidations ---------------------------------------


@pytest.fixture(params=["3.0", "3.6"])
async def any_devnet(request: pytest.FixtureRequest) -> AsyncIterator[Devnet]:
    """A fresh anvil with the Aave 3.0 or 3.6 market (each deployed once, then loaded)."""
    async with running_devnet(request.param) as devnet:
        yield devnet


async def test_predicted_net_profit_matches_the_owners_balance_change(
        any_devnet: Devnet, tmp_path: Path) -> None:
    devnet = any_devnet
    plans = plan_population(5, 250, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    await crash(devnet, {"WETH": 0.72, "WBTC": 0.85, "LINK": 0.8}, blocks=3)

    run = await run_keeper(devnet, tmp_path, dry_run=False)

    receipts = {r["transactionHash"]: r for r in await assert_keeper_never_reverted(devnet, run)}
    done = mined(run)
    assert len(done) >= 20, run.table
    assert all(r.outcome is not None and r.outcome.tx_hash in receipts for r in done)
    measured = [await measure(devnet, r, receipts[str(r.outcome.tx_hash)])  # type: ignore[union-attr]
                for r in done]
    worst = max(measured, key=lambda x: x.relative_error)
    pairs = {x.pair for x in measured}
    print(f"\nAave {devnet.m.aave_version}: {len(measured)} liquidations over {len(pairs)} pairs {sorted(pairs)}; debt decimals "
          f"{sorted({x.debt_decimals for x in measured})}; max |predicted - realised| / realised "
          f"= {float(worst.relative_error):.6%} ({worst.pair}, predicted "
          f"${float(worst.predicted_usd):.4f}, realised ${float(worst.realised_usd):.4f}); gross "
          f"off the plan by at most {max(abs(x.gross_realised - x.gross_planned) for x in measured)} "
          f"units; traced gas off the receipt by at most "
          f"{max(abs(x.gas_used - x.predicted_gas) for x in measured)}")
    assert worst.relative_error <= MAX_RELATIVE_ERROR, worst
    assert all(x.realised_usd > 0 for x in measured)
    assert len(pairs) >= 3 and len({x.debt_decimals for x in measured}) >= 2
    # The executor's own accounting says the same as the chain, to a cent.
    for r, x in zip(done, measured, strict=True):
        assert r.realised_net_usd is not None and r.predicted_net_usd is not None
        assert abs(Fraction(r.realised_net_usd, PRICE_UNIT) - x.realised_usd) < Fraction(1, 100)
        assert abs(Fraction(r.predicted_net_usd, PRICE_UNIT) - x.predicted_usd) < Fraction(1, 100)
    # Each account once: in the results and on chain, and nothing liquidated but these.
    users = [r.user for r in run.results]
    assert len(users) == len(set(users))
    events = await liquidated_users(devnet, run.before_block)
    assert set(events) == {r.user for r in done} and set(events.values()) == {1}
    assert not any(KEY[2:] in text.lower() for text in (run.raw_logs, run.metrics, run.table))


# ---- 2. a losing liquidation is skipped, with its reason ------------------------------------------


async def test_small_position_under_high_base_fee_is_skipped_as_unprofitable(
        devnet: Devnet, tmp_path: Path) -> None:
    await provide_liquidity(devnet)
    small = user(1)
    # $1,500 of WETH against $1,150 of USDC: a ~$30 bonus when liquidatable.
    await open_positions(devnet, [(small, "WETH", 1_500, "USDC", 1_150)])
    prices = await devnet.prices()
    await devnet.set_price("WETH", prices["WETH"] * 85 // 100)
    await devnet.arbitrage(["WETH"])

    # At the devnet's base fee the liquidation pays: a dry run would send it.
    cheap = await run_keeper(devnet, tmp_path, dry_run=True)
    assert [r.user for r in cheap.results] == [small]
    assert cheap.results[0].plan is not None and cheap.results[0].outcome is not None
    assert cheap.results[0].outcome.dry_run

    # At 250 gwei (~0.09 ETH of gas) it would lose money: skipped, and the log says why.
    await devnet.rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(250 * GWEI)])
    await devnet.rpc.call("evm_mine")
    nonce = await tx_count(devnet, devnet.m.keeper)
    run = await run_keeper(devnet, tmp_path, dry_run=False)

    (result,) = run.results
    assert result.user == small and result.plan is None and result.outcome is None
    assert result.rejection is not None
    assert result.rejection.reason is RejectionReason.UNPROFITABLE, result.rejection
    (line,) = skipped_logs(run, small)
    assert line["reason"] == "unprofitable" and "net profit" in line["detail"]
    assert f"skipped: unprofitable: {result.rejection.detail}" in run.table
    assert 'keeper_rejections_total{reason="unprofitable"} 1.0' in run.metrics
    assert await tx_count(devnet, devnet.m.keeper) == nonce
    await assert_keeper_never_reverted(devnet, run)


async def _drain(devnet: Devnet, sell: str, buy: str, share: float) -> None:
    """Swap ``share`` of ``buy`` out of the sell/buy pool by paying in freshly minted ``sell``."""
    pair = devnet.m.pair(sell, buy)
    r_sell, r_buy = await devnet.pair_reserves(sell, buy)
    out = int(r_buy * share)
    amount_in = r_sell * out * 1000 // ((r_buy - out) * 997) + 1
    (token0,) = _PAIR["token0"].decode_output(await devnet.rpc.call(
        "eth_call", [{"to": pair, "data": _PAIR["token0"].encode_hex()}, "latest"]))
    sell_token = devnet.m.reserve(sell).address
    outs = (0, out) if str(token0).lower() == sell_token else (out, 0)
    await devnet.tx.transact(sell_token, _ERC20["mint(address,uint256)"], pair, amount_in)
    await devnet.tx.transact(pair, _PAIR["swap"], *outs, devnet.m.deployer, b"")


async def test_position_whose_collateral_cannot_be_sold_is_skipped(
        devnet: Devnet, tmp_path: Path) -> None:
    await provide_liquidity(devnet)
    stuck = user(2)
    await open_positions(devnet, [(stuck, "WBTC", 50_000, "DAI", 34_000)])  # HF 1.10
    # Every route from WBTC to DAI (direct, via the WETH and USDC hubs) is drained of its far
    # side: the seized WBTC would fetch almost nothing.
    for buy in ("DAI", "WETH", "USDC"):
        await _drain(devnet, "WBTC", buy, 0.999)
    prices = await devnet.prices()
    await devnet.set_price("WBTC", prices["WBTC"] * 88 // 100)  # no arbitrage: pools stay dry
    nonce = await tx_count(devnet, devnet.m.keeper)

    # The V2 pairs only: the devnet's V3 pools would still buy the WBTC (selling where the
    # liquidity is, tests/e2e/test_run_once_v3.py); this is about a sale nothing can take.
    run = await run_keeper(devnet, tmp_path, dry_run=False,
                           env={"KEEPER_DEX__ROUTE_UNISWAP_V3": "false"})

    (result,) = run.results
    assert result.user == stuck and result.plan is None and result.rejection is not None
    assert result.rejection.reason in (RejectionReason.UNPROFITABLE, RejectionReason.NO_ROUTE)
    (line,) = skipped_logs(run, stuck)
    assert line["reason"] == result.rejection.reason.value and line["detail"]
    print(f"\nunsellable collateral: {result.skipped_reason}")
    assert await tx_count(devnet, devnet.m.keeper) == nonce
    await assert_keeper_never_reverted(devnet, run)


# ---- 3. two accounts made liquidatable by one price update ----------------------------------------


async def _two_liquidatable_in_one_block(devnet: Devnet) -> tuple[list[str], int]:
    """Two borrowers against WETH (USDC and DAI debts) at HF ≈ 1.03, both pushed under 1 by one
    WETH price update. Returns them and the block of that update."""
    await provide_liquidity(devnet)
    pair = [user(3), user(4)]
    # WETH: liquidation threshold 82.5%; debt = 0.8 of the collateral → HF 1.03.
    await open_positions(devnet, [(pair[0], "WETH", 40_000, "USDC", 32_000),
                                  (pair[1], "WETH", 60_000, "DAI", 48_000)])
    prices = await devnet.prices()
    await devnet.set_price("WETH", prices["WETH"] * 92 // 100)
    update_block = await block_number(devnet)
    await devnet.arbitrage(["WETH"])
    before, after = (await devnet.account_data(pair, hex(update_block - 1)),
                     await devnet.account_data(pair, hex(update_block)))
    assert all(a.health_factor >= 10**18 for a in before)
    assert all(a.health_factor < 10**18 for a in after)
    return pair, update_block


async def test_two_accounts_liquidatable_in_one_block_are_each_liquidated_once(
        devnet: Devnet, tmp_path: Path) -> None:
    pair, _ = await _two_liquidatable_in_one_block(devnet)

    run = await run_keeper(devnet, tmp_path, dry_run=False)

    assert sorted(r.user for r in mined(run)) == sorted(pair), run.table
    assert len(run.results) == 2
    events = await liquidated_users(devnet, run.before_block)
    assert events == Counter(dict.fromkeys(pair, 1))
    receipts = await assert_keeper_never_reverted(devnet, run)
    assert len(receipts) == 2
    # The log names each transaction (a hash, not redacted as if it were a key).
    for r in mined(run):
        (line,) = [e for e in run.logs
                   if e.get("event") == "liquidation_mined" and e.get("user") == r.user]
        assert r.outcome is not None and line["tx_hash"] == r.outcome.tx_hash


# ---- 4. a dry run sends nothing ---------------------------------------------------------------------


async def test_dry_run_sends_nothing_and_says_what_it_would_do(
        devnet: Devnet, tmp_path: Path) -> None:
    pair, _ = await _two_liquidatable_in_one_block(devnet)
    nonce, head = await tx_count(devnet, devnet.m.keeper, "pending"), await block_number(devnet)

    dry = await run_keeper(devnet, tmp_path, dry_run=True)

    assert await tx_count(devnet, devnet.m.keeper, "pending") == nonce
    assert await block_number(devnet) == head
    assert sorted(r.user for r in dry.results) == sorted(pair)
    for r in dry.results:
        assert r.plan is not None and r.plan.net_profit_usd > 0
        assert r.outcome is not None and r.outcome.dry_run and r.outcome.tx_hash is None
        assert r.outcome.simulated_gas is not None and r.outcome.simulated_gas > 0
        line = next(ln for ln in dry.table.splitlines() if ln.startswith(r.user))
        assert "dry run: would send (simulated ok)" in line
        assert f"{r.plan.net_profit_usd / PRICE_UNIT:,.2f}" in line
    assert "2 liquidatable account(s): 0 liquidated, 2 not (dry run: nothing signed or sent)" \
        in dry.table
    assert "keeper_dry_run_would_send_total 2.0" in dry.metrics
    assert "keeper_txs_sent_total{" not in dry.metrics  # no sample: nothing handed out

    # What it said it would do is what a real run then does.
    real = await run_keeper(devnet, tmp_path, dry_run=False)
    planned = {r.user: r.plan for r in dry.results}
    for r in mined(real):
        assert r.plan is not None and r.realised_profit is not None
        said = planned[r.user]
        assert said is not None
        assert (r.plan.collateral_asset, r.plan.debt_asset) == (said.collateral_asset, said.debt_asset)
        assert abs(r.realised_profit - said.gross_profit) * 1000 <= said.gross_profit
    assert len(mined(real)) == 2
    await assert_keeper_never_reverted(devnet, real)


# ---- 5. the key is never shown ------------------------------------------------------------------------


def _key_forms(key: str) -> list[str]:
    bare = key.removeprefix("0x")
    return [bare.lower(), bare.upper(), "0x" + bare.lower(), "0X" + bare.upper()]


async def _keeper_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keeper", "run", "-c", str(CONFIG), *args,
        cwd=ROOT, env=base | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_private_key_appears_in_no_log_metric_table_or_error(
        devnet: Devnet, tmp_path: Path) -> None:
    pair, _ = await _two_liquidatable_in_one_block(devnet)
    forms = _key_forms(KEY)

    # In-process, everything at DEBUG.
    dry = await run_keeper(devnet, tmp_path, dry_run=True)
    assert len(dry.results) == 2
    for text in (dry.raw_logs, dry.metrics, dry.table):
        assert not any(f.lower() in text.lower() for f in forms)

    # The command itself, as an operator runs it, with the key in an unusual spelling.
    env = keeper_env(devnet, tmp_path, key="0x" + KEY[2:].upper())
    before = await block_number(devnet)
    code, out, err = await _keeper_cli(env, "--once", "--log-level", "DEBUG")
    assert code == 0, err
    assert len(await assert_keeper_never_reverted(devnet, before)) == 2
    assert "2 liquidatable account(s): 2 liquidated, 0 not" in out, out
    assert all(u in out for u in pair)
    assert err.strip(), "DEBUG logs expected on stderr"
    for text in (out, err):
        assert not any(f.lower() in text.lower() for f in forms)

    # A key that does not own the liquidator: one line, exit 2, neither key echoed.
    env = keeper_env(devnet, tmp_path, key=OTHER_KEY[2:])
    nonce = await tx_count(devnet, devnet.m.keeper)
    code, out, err = await _keeper_cli(env, "--once")
    assert code == 2, (code, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("keeper: error: executor.liquidator:"), err
    assert "not by the configured key's account" in lines[0]
    for text in (out, err):
        assert not any(f.lower() in text.lower() for f in forms + _key_forms(OTHER_KEY))
    assert await tx_count(devnet, devnet.m.keeper) == nonce


# ---- 6. a transaction lost from the mempool is replaced, not doubled -----------------------------


async def _keeper_pending(devnet: Devnet) -> list[dict[str, Any]]:
    content = await devnet.rpc.call("txpool_content")
    keeper = devnet.m.keeper.lower()
    return [tx for sender, txs in content.get("pending", {}).items() if sender.lower() == keeper
            for tx in txs.values()]


# The devnet config caps the tip at 5 gwei, and a large liquidation's first bid (a share of
# its profit) is already at the cap; "headroom" raises the caps above what it bids. Either
# way a transaction the node lost is handed out again as it was: a higher bid is no answer to
# a node that dropped it.
HEADROOM = {"KEEPER_EXECUTOR__MAX_PRIORITY_FEE_GWEI": "1000",
            "KEEPER_EXECUTOR__MAX_FEE_GWEI": "3000"}
AT_CAP = {"KEEPER_EXECUTOR__RECEIPT_TIMEOUT": "10"}


@pytest.mark.parametrize("caps", [
    pytest.param(HEADROOM, id="headroom"),
    # The devnet's caps: the first tip already sits at max_priority_fee (no +10% bump).
    pytest.param(AT_CAP, id="tip-at-cap"),
])
async def test_a_transaction_lost_from_the_mempool_is_sent_again_with_its_nonce(
        devnet: Devnet, tmp_path: Path, caps: dict[str, str]) -> None:
    pair, _ = await _two_liquidatable_in_one_block(devnet)
    before = await block_number(devnet)
    await devnet.rpc.call("anvil_setAutomine", [False])
    try:
        task = asyncio.create_task(run_keeper(devnet, tmp_path, dry_run=False, env=caps))
        # The first liquidation reaches the mempool and is lost there before any block.
        lost: dict[str, Any] | None = None
        for _ in range(400):
            if pending := await _keeper_pending(devnet):
                lost = pending[0]
                await devnet.rpc.call("anvil_dropTransaction", [lost["hash"]])
                break
            await asyncio.sleep(0.025)
        assert lost is not None, "the keeper sent nothing"
        # Blocks go on without it; the keeper notices and sends it again.
        while not task.done():
            await devnet.rpc.call("evm_mine")
            await asyncio.sleep(0.1)
        run = task.result()
    finally:
        await devnet.rpc.call("anvil_setAutomine", [True])

    assert len(await assert_keeper_never_reverted(devnet, before)) == 2
    assert sorted(r.user for r in mined(run)) == sorted(pair), run.table
    first = next(r.outcome for r in run.results if r.outcome and lost["hash"] in r.outcome.hashes)
    assert first.status is Status.MINED and first.nonce == int(lost["nonce"], 16)
    sent, again = first.attempts[0], first.attempts[-1]
    # The node lost it, not the market: with room to bid more or not, the very same bytes
    # are handed out again at the next block and mined (a tx the node drops again for its
    # price is replaced on schedule: test_sender's stuck-transaction test).
    assert again.kind == "resend" and first.tx_hash == lost["hash"] == sent.tx_hash
    assert first.replacements == 0
    assert await liquidated_users(devnet, before) == Counter(dict.fromkeys(pair, 1))
