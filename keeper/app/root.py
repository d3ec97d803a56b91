"""The composition root: builds every part from the configuration and runs them.

``run_once`` is one pass (sync the book to the tip, scan, plan, execute or simulate each
liquidatable account, wait for the receipts) and returns the executions for a report.
The long-running daemon (``keeper.app.daemon.run_daemon``) runs on the same ``Keeper``: the sync,
the scan and the execution as separate tasks, so scanning goes on while a transaction is in
flight; each batch of applied blocks re-checks the accounts they touched and the holders of
assets whose price moved, and the best due candidate is liquidated, one transaction at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from keeper.app.config import KeeperConfig
from keeper.chain.pool import RpcPool
from keeper.chain.rpc import JsonRpc, public_url
from keeper.chain.ws import WsRpc
from keeper.contracts import artifacts
from keeper.devnet.manifest import Manifest
from keeper.domain.fees import FeePolicy, gwei_to_wei
from keeper.domain.liquidation import AaveRules
from keeper.domain.plan import Rejection
from keeper.errors import ConfigError, RpcError
from keeper.exec.executor import Execution, LiquidationExecutor
from keeper.exec.guards import Guards
from keeper.exec.keys import load_signer
from keeper.exec.relay import RelayClient, RelaySubmitter
from keeper.exec.sender import Sender, SenderSettings
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.obs.server import Readiness
from keeper.pipeline.gather import Venue
from keeper.pipeline.planner import PlannerConfig
from keeper.pipeline.planning import LiquidationPlanner
from keeper.pipeline.scanner import Candidate, HealthScanner
from keeper.pipeline.store import BookStore
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3.reader import AaveV3Contracts

log = get_logger(__name__)

_OWNER = bytes.fromhex("8da5cb5b")  # owner()
_RESERVE_DATA = "getReserveData"


@dataclass(frozen=True, slots=True)
class Target:
    """Where the keeper runs: endpoints, the market, our contract, the AMM."""

    rpc_urls: tuple[str, ...]
    ws_url: str | None
    contracts: AaveV3Contracts | None  # None: resolve from the addresses provider
    addresses_provider: str
    start_block: int
    liquidator: str | None
    uniswap_v2_factory: str | None
    pair_init_code_hash: bytes
    hubs: tuple[str, ...]
    native_asset: str | None
    symbols: dict[str, str]  # asset -> symbol, where known up front


def resolve_target(cfg: KeeperConfig) -> Target:
    """The devnet manifest's addresses when configured, the config's otherwise."""
    ex, dex = cfg.executor, cfg.dex
    init_hash = bytes.fromhex(dex.pair_init_code_hash.removeprefix("0x"))
    if cfg.network.devnet_manifest is not None:
        m = Manifest.load(cfg.network.devnet_manifest)
        weth = m.reserve("WETH").address
        return Target(
            # Configured endpoints win (e.g. a fork of the devnet); else the manifest's node.
            rpc_urls=tuple(cfg.network.rpc_urls) or (m.rpc_url,),
            ws_url=cfg.network.ws_url or (None if cfg.network.rpc_urls else m.ws_url),
            contracts=AaveV3Contracts(m.pool, m.oracle, m.pool_configurator,
                                      m.pool_addresses_provider, m.multicall3),
            addresses_provider=m.pool_addresses_provider, start_block=m.deploy_block,
            liquidator=ex.liquidator or m.liquidator or None,
            uniswap_v2_factory=dex.uniswap_v2_factory or m.uniswap_factory,
            pair_init_code_hash=init_hash,
            hubs=tuple(dex.hubs) or (weth, m.reserve("USDC").address),
            native_asset=dex.native_asset or weth,
            symbols={r.address: r.symbol for r in m.reserves},
        )
    if not cfg.network.rpc_urls:
        raise ConfigError("network.rpc_urls: at least one RPC URL is needed")
    if cfg.aave.pool_addresses_provider is None:
        raise ConfigError("aave.pool_addresses_provider: needed to find the market")
    return Target(
        rpc_urls=tuple(cfg.network.rpc_urls), ws_url=cfg.network.ws_url, contracts=None,
        addresses_provider=cfg.aave.pool_addresses_provider, start_block=cfg.aave.start_block,
        liquidator=ex.liquidator, uniswap_v2_factory=dex.uniswap_v2_factory,
        pair_init_code_hash=init_hash, hubs=tuple(dex.hubs), native_asset=dex.native_asset,
        symbols={},
    )


class Keeper:
    """Every long-lived part, built once from the config (see ``build``)."""

    def __init__(self, cfg: KeeperConfig, target: Target, rpc: RpcPool, contracts: AaveV3Contracts,
                 sync: BookSync, executor: LiquidationExecutor | None, metrics: Metrics,
                 readiness: Readiness, planner: LiquidationPlanner | None = None) -> None:
        self.cfg = cfg
        self.target = target
        self.rpc = rpc
        self.contracts = contracts
        self.sync = sync
        self.executor = executor
        self.planner = planner
        self.metrics = metrics
        self.readiness = readiness
        self.symbols = dict(target.symbols)

    def symbol(self, asset: str) -> str:
        return self.symbols.get(asset, asset[:10])

    async def candidates(self, scanner: HealthScanner) -> list[Candidate]:
        """Liquidatable accounts, confirmed on chain, best first."""
        found = await scanner.scan(self.rpc, self.contracts.pool,
                                   chunk=self.cfg.scanner.confirm_batch_size,
                                   multicall=self.contracts.multicall3)
        self.metrics.liquidatable.set(len(found))
        return [c for c in found if c.confirmed_on_chain]

    async def liquidate(self, candidate: Candidate) -> Execution:
        """Plan the candidate on the book's view (pipeline), then send the plan (exec)."""
        assert self.executor is not None and self.planner is not None
        detected = time.monotonic()
        book = self.sync.book
        market = book.market()
        plan = await self.planner.plan(candidate.user, book.account(candidate.user), market)
        if isinstance(plan, Rejection):
            return Execution(candidate.user, rejection=plan)
        return await self.executor.send(
            await self.executor.prepare(plan, market, detected_at=detected))


@contextlib.asynccontextmanager
async def build(cfg: KeeperConfig, *, dry_run: bool, execute: bool = True,
                progress: bool = False) -> AsyncIterator[Keeper]:
    """Build the keeper from its config; everything is closed on exit."""
    target = resolve_target(cfg)
    metrics = Metrics()
    readiness = Readiness()
    async with RpcPool(list(target.rpc_urls), timeout=cfg.network.request_timeout) as rpc:
        chain_id = int(await rpc.call("eth_chainId"), 16)
        if chain_id != cfg.network.chain_id:
            raise ConfigError(f"network.chain_id: the node is on chain {chain_id}, "
                              f"the config says {cfg.network.chain_id}")
        contracts = target.contracts or await AaveV3Contracts.resolve(rpc, target.addresses_provider)
        store = BookStore(cfg.state.sqlite, identity={"pool": contracts.pool,
                                                       "start_block": target.start_block})
        ws = await _connect_ws(target.ws_url, cfg.network.request_timeout)
        sync = BookSync(rpc, contracts, SyncConfig(
            start_block=target.start_block, chunk=cfg.scanner.backfill_chunk_blocks,
            poll_interval=cfg.scanner.poll_interval, progress=progress), store=store, ws=ws)
        try:
            executor, planner = await _build_executor(
                cfg, target, rpc, contracts, metrics, dry_run=dry_run) if execute else (None, None)
            yield Keeper(cfg, target, rpc, contracts, sync, executor, metrics, readiness, planner)
        finally:
            # Final checkpoint even when cancelled: losing it only costs a longer catch-up,
            # but a half-written one must never happen (the store writes in one transaction).
            await asyncio.shield(sync.close())
            if ws is not None:
                await ws.close()


async def _connect_ws(url: str | None, timeout: float) -> WsRpc | None:
    """New heads pushed over WebSocket (reacting within milliseconds of a block), or None to
    poll over HTTP when no URL is configured or it does not answer at start-up."""
    if url is None:
        return None
    ws = WsRpc(url, timeout=timeout)
    try:
        await ws.connect()
    except (RpcError, OSError) as exc:
        log.warning("websocket unavailable; following heads by HTTP polling", url=public_url(url),
                    error=str(exc))
        await ws.close()
        return None
    return ws


async def _build_executor(cfg: KeeperConfig, target: Target, rpc: JsonRpc,
                          contracts: AaveV3Contracts, metrics: Metrics, *,
                          dry_run: bool) -> tuple[LiquidationExecutor, LiquidationPlanner]:
    ex = cfg.executor
    if target.liquidator is None:
        raise ConfigError("executor.liquidator: no liquidator contract configured "
                          "(deploy one: `keeper deploy-liquidator`)")
    if target.uniswap_v2_factory is None:
        raise ConfigError("dex.uniswap_v2_factory: needed to swap the seized collateral")
    if target.native_asset is None:
        raise ConfigError("dex.native_asset: the reserve that prices gas (WETH on Ethereum)")
    signer = None if dry_run else await load_signer(cfg)
    owner_raw = await rpc.call("eth_call", [{"to": target.liquidator,
                                              "data": "0x" + _OWNER.hex()}, "latest"])
    owner = "0x" + str(owner_raw)[-40:]
    if signer is not None and signer.address.lower() != owner:
        raise ConfigError(f"executor.liquidator: {target.liquidator} is owned by {owner}, "
                          f"not by the configured key's account {signer.address}")
    policy = FeePolicy.from_config(ex.priority_fee_share, ex.max_priority_fee_gwei, ex.max_fee_gwei)
    guards = Guards.from_config(gwei_to_wei(ex.gas_budget_per_hour_eth * 1e9),
                                ex.max_consecutive_failures, ex.kill_switch)
    submitter = None
    if ex.private_relay_url is not None and signer is not None:
        submitter = RelaySubmitter(RelayClient(ex.private_relay_url, signer),
                                   blocks_ahead=ex.relay_blocks_ahead)
    settings = SenderSettings.from_config(cfg, dry_run=dry_run)
    sender = Sender(rpc, signer, policy, guards, settings, metrics=metrics, submitter=submitter,
                    address=owner)
    a_tokens = await _a_tokens(rpc, contracts)
    venue = Venue(pool=contracts.pool, liquidator=target.liquidator.lower(),
                  uniswap_v2_factory=target.uniswap_v2_factory.lower(),
                  pair_init_code_hash=target.pair_init_code_hash, hubs=target.hubs,
                  a_tokens=a_tokens)
    planner = PlannerConfig(
        liquidator=venue.liquidator, native_asset=target.native_asset.lower(),
        rules=AaveRules(cfg.aave.rules), min_profit_base=round(ex.min_profit_usd * 10**8),
        profit_tolerance_bps=ex.profit_tolerance_bps)
    executor = LiquidationExecutor(rpc, sender, metrics, owner=owner,
                                   native_asset=planner.native_asset,
                                   native_decimals=planner.native_decimals,
                                   block_time=cfg.network.block_time)
    return executor, LiquidationPlanner(rpc, venue, planner, policy, metrics,
                                        block_time=cfg.network.block_time)


async def _a_tokens(rpc: JsonRpc, contracts: AaveV3Contracts) -> dict[str, str]:
    """Reserve asset -> aToken, for the flash-loan liquidity check (one batch)."""
    pool_abi = artifacts.aave("Pool").abi
    (assets,) = pool_abi["getReservesList"].decode_output(await rpc.call(
        "eth_call", [{"to": contracts.pool, "data": pool_abi["getReservesList"].encode_hex()}, "latest"]))
    fn = pool_abi[_RESERVE_DATA]
    raw = await rpc.batch([("eth_call", [{"to": contracts.pool, "data": fn.encode_hex(a)}, "latest"])
                           for a in assets])
    out: dict[str, str] = {}
    for asset, r in zip(assets, raw, strict=True):
        (data,) = fn.decode_output(r)
        out[str(asset).lower()] = str(data[8]).lower()  # ReserveData.aTokenAddress
    return out


async def run_once(keeper: Keeper, *, max_rounds: int = 1000) -> list[Execution]:
    """Sync, scan, and liquidate every liquidatable account once; re-sync between sends so
    each plan sees the state the previous liquidation left."""
    done: set[str] = set()
    results: list[Execution] = []
    for _ in range(max_rounds):
        await keeper.sync.catch_up()
        scanner = await asyncio.to_thread(HealthScanner, keeper.sync.book)
        todo = [c for c in await keeper.candidates(scanner) if c.user not in done]
        if not todo:
            break
        candidate = todo[0]
        done.add(candidate.user)
        results.append(await keeper.liquidate(candidate))
    return results


def format_executions(keeper: Keeper, results: list[Execution], *, dry_run: bool) -> str:
    """The one-pass report: one line per account, liquidated or skipped with its reason."""
    head = (f"{'account':44s} {'pair':16s} {'debt covered':>16s} {'expected $':>11s} "
            f"{'realised $':>11s} {'gas':>9s}  tx / reason")
    lines = [head]
    mined = 0
    for r in results:
        if r.plan is None:
            lines.append(f"{r.user:44s} {'-':16s} {'':>16s} {'':>11s} {'':>11s} {'':>9s}  "
                         f"skipped: {r.skipped_reason}")
            continue
        p = r.plan
        pair = f"{keeper.symbol(p.collateral_asset)}/{keeper.symbol(p.debt_asset)}"
        dec = next(res.configuration.decimals for res in keeper.sync.book.market().reserves.values()
                   if res.asset == p.debt_asset)
        covered = f"{p.debt_to_cover / 10**dec:,.4f}"
        expected = (r.predicted_net_usd if r.predicted_net_usd is not None else p.net_profit_usd) / 1e8
        realised = f"{r.realised_net_usd / 1e8:,.2f}" if r.realised_net_usd is not None else "-"
        gas = r.outcome.gas_used if r.outcome and r.outcome.gas_used else r.predicted_gas
        if r.outcome is not None and r.outcome.tx_hash and r.realised_profit is not None:
            tail = r.outcome.tx_hash
            mined += 1
        elif dry_run and r.outcome is not None and r.outcome.dry_run:
            tail = "dry run: would send (simulated ok)"
        else:
            tail = f"skipped: {r.skipped_reason}"
        lines.append(f"{r.user:44s} {pair:16s} {covered:>16s} {expected:>11,.2f} {realised:>11s} "
                     f"{gas or 0:>9,}  {tail}")
    lines.append(f"{len(results)} liquidatable account(s): {mined} liquidated, "
                 f"{len(results) - mined} not" + (" (dry run: nothing signed or sent)" if dry_run else ""))
    return "\n".join(lines)


def is_tty() -> bool:
    return sys.stderr.isatty()
