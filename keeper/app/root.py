"""The composition root: builds every long-lived part of the keeper from its config.

``build`` yields a ``Keeper``: the RPC pool, the market's contracts, the book sync and (unless
scanning only) the executor, all closed on exit. It holds no runtime logic: one pass is
``keeper.app.once.run_once``, the daemon is ``keeper.app.daemon.run_daemon``, both built on the
steps of ``keeper.app.steps``. Where the keeper runs (a ``Target``) is resolved by the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from keeper.app import preflight
from keeper.app.config import KeeperConfig
from keeper.app.decisions import DecisionLog
from keeper.app.exec_settings import load_signer, sender_settings
from keeper.app.oracle_guard import build_oracle_guard
from keeper.app.target import Target
from keeper.chain.pool import RpcPool
from keeper.chain.rpc import JsonRpc, public_url
from keeper.chain.ws import WsRpc
from keeper.cluster.metrics import ClusterMetrics
from keeper.contracts import artifacts
from keeper.domain.fees import FeePolicy, gwei_to_wei
from keeper.domain.liquidation import AaveRules, rules_of
from keeper.errors import ConfigError, RpcError
from keeper.exec.executor import LiquidationExecutor
from keeper.exec.gate import GatedSubmitter, OpenGate, SendGate
from keeper.exec.guards import Guards
from keeper.exec.keys import Signer
from keeper.exec.relay import RelayClient, RelaySubmitter
from keeper.exec.sender import Sender
from keeper.exec.submit import PublicSubmitter, Submitter
from keeper.obs.logging import get_logger
from keeper.obs.metrics import Metrics
from keeper.obs.server import Readiness
from keeper.pipeline.gather import Venue
from keeper.pipeline.oracle_guard import OracleGuard
from keeper.pipeline.pair_search import batched_keep_gas
from keeper.pipeline.planner import GasModel, PlannerConfig
from keeper.pipeline.planning import LiquidationPlanner
from keeper.pipeline.store import BookStore
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3.reader import AaveV3Contracts
from keeper.protocols.aave_v3.revision import read_revision
from keeper.protocols.uniswap_v3.pool_address import UniswapV3Venue

log = get_logger(__name__)

_OWNER = bytes.fromhex("8da5cb5b")  # owner()
_RESERVE_DATA = "getReserveData"


@dataclass(slots=True)
class Keeper:
    """Every long-lived part, built once from the config (see ``build``)."""

    cfg: KeeperConfig
    target: Target
    rpc: RpcPool
    contracts: AaveV3Contracts
    sync: BookSync
    executor: LiquidationExecutor | None  # None: scanning only
    metrics: Metrics
    readiness: Readiness  # the daemon swaps in its own (see ``keeper.app.head``)
    planner: LiquidationPlanner | None = None  # None: scanning only
    oracle_guard: OracleGuard | None = None  # None: oracle_guard.enabled is false
    gate: SendGate = field(default_factory=OpenGate)  # a keeper network's: keeper.app.cluster
    cluster_metrics: ClusterMetrics | None = None
    decisions: DecisionLog | None = None  # the daemon's decision record (keeper.app.decisions)


@contextlib.asynccontextmanager
async def build(cfg: KeeperConfig, target: Target, *, dry_run: bool, execute: bool = True,
                progress: bool = False, gate: SendGate | None = None) -> AsyncIterator[Keeper]:
    """Build the keeper from its config for ``target``; everything is closed on exit.
    ``gate`` is asked before every hand-out of a signed transaction (default: always clear)."""
    gate = gate if gate is not None else OpenGate()
    metrics = Metrics()
    readiness = Readiness()
    async with RpcPool(list(target.rpc_urls), timeout=cfg.network.request_timeout) as rpc:
        rpc.on_error = metrics.rpc_error  # every transient failure, by method and kind
        rpc.on_request = metrics.rpc_request
        await preflight.check_chain_id(rpc, cfg.network.chain_id)
        contracts = await resolve_contracts(rpc, target, cfg.network.chain_id)
        store = BookStore(cfg.state.sqlite, identity={"pool": contracts.pool,
                                                       "start_block": target.start_block})
        ws = await _connect_ws(target.ws_url, cfg.network.request_timeout)
        sync = BookSync(rpc, contracts, await sync_config(
            rpc, cfg, target, contracts, progress=progress), store=store, ws=ws)
        try:
            executor, planner = await _build_executor(
                cfg, target, rpc, contracts, metrics, dry_run=dry_run, gate=gate) \
                if execute else (None, None)
            guard = build_oracle_guard(cfg, target, rpc, metrics)
            yield Keeper(cfg, target, rpc, contracts, sync, executor, metrics, readiness, planner,
                         guard, gate, ClusterMetrics(metrics.registry))
        finally:
            # Final checkpoint even when cancelled: losing it only costs a longer catch-up,
            # but a half-written one must never happen (the store writes in one transaction).
            await asyncio.shield(sync.close())
            if ws is not None:
                await ws.close()


async def resolve_contracts(rpc: JsonRpc, target: Target, chain_id: int) -> AaveV3Contracts:
    """The market's contracts (the target's, or from its addresses provider, checked to have
    code: an empty address would otherwise fail as undecodable data)."""
    if target.contracts is not None:
        return target.contracts
    await preflight.require_code(rpc, target.addresses_provider, "aave.pool_addresses_provider",
                                 chain_id)
    return await AaveV3Contracts.resolve(rpc, target.addresses_provider)


async def sync_config(rpc: JsonRpc, cfg: KeeperConfig, target: Target,
                      contracts: AaveV3Contracts, *, progress: bool) -> SyncConfig:
    """The book sync's settings; on a young chain the market is read at the tip."""
    base = SyncConfig(start_block=target.start_block, chunk=cfg.scanner.backfill_chunk_blocks,
                      poll_interval=cfg.scanner.poll_interval, progress=progress,
                      # A block and a half without a pushed head: the subscription went quiet.
                      ws_silence=1.5 * cfg.network.block_time)
    depth = await preflight.follow_depth(rpc, target.start_block,
                                         [contracts.multicall3, contracts.pool], base.follow_depth)
    return replace(base, follow_depth=depth)


async def _connect_ws(url: str | None, timeout: float) -> WsRpc | None:
    """New heads pushed over WebSocket (reacting within milliseconds of a block), or None to
    poll over HTTP when no URL is configured or it does not answer at start-up."""
    if url is None:
        return None
    ws = WsRpc(url, timeout=timeout)
    try:
        await ws.connect()
    except (RpcError, OSError) as exc:
        log.warning("websocket_unavailable_polling_heads", url=public_url(url), error=str(exc))
        await ws.close()
        return None
    return ws


def _uniswap_v3(cfg: KeeperConfig, target: Target) -> UniswapV3Venue | None:
    """Where planning reads V3 pools, when routing through V3 is on and a factory is known."""
    dex = cfg.dex
    if not dex.route_uniswap_v3 or target.uniswap_v3_factory is None:
        return None
    return UniswapV3Venue(
        factory=target.uniswap_v3_factory.lower(), fee_tiers=tuple(dex.uniswap_v3_fee_tiers),
        init_code_hash=bytes.fromhex(dex.uniswap_v3_pool_init_code_hash.removeprefix("0x")))


async def _build_executor(cfg: KeeperConfig, target: Target, rpc: JsonRpc,
                          contracts: AaveV3Contracts, metrics: Metrics, *, dry_run: bool,
                          gate: SendGate) -> tuple[LiquidationExecutor, LiquidationPlanner]:
    ex = cfg.executor
    if target.liquidator is None:
        raise ConfigError("executor.liquidator: no liquidator contract configured "
                          "(deploy one: `keeper deploy-liquidator`)")
    if target.uniswap_v2_factory is None:
        raise ConfigError("dex.uniswap_v2_factory: needed to swap the seized collateral")
    if target.native_asset is None:
        raise ConfigError("dex.native_asset: the reserve that prices gas (WETH on Ethereum)")
    signer = None if dry_run else (
        Signer.from_private_key(target.fork_key, cfg.network.chain_id,
                                devnet_chain_ids=frozenset({cfg.network.chain_id}))
        if target.fork_key is not None else await load_signer(cfg))
    await preflight.require_code(rpc, target.liquidator, "executor.liquidator",
                                 cfg.network.chain_id, "deploy one: `keeper deploy-liquidator`")
    owner_raw = str(await rpc.call("eth_call", [{"to": target.liquidator,
                                                  "data": "0x" + _OWNER.hex()}, "latest"]))
    if len(owner_raw) != 66:
        raise ConfigError(f"executor.liquidator: {target.liquidator} has no owner(): "
                          "not a FlashLiquidator (deploy one: `keeper deploy-liquidator`)")
    owner = "0x" + owner_raw[-40:]
    if signer is not None and signer.address.lower() != owner:
        raise ConfigError(f"executor.liquidator: {target.liquidator} is owned by {owner}, "
                          f"not by the configured key's account {signer.address}")
    policy = FeePolicy.from_config(ex.priority_fee_share, ex.max_priority_fee_gwei, ex.max_fee_gwei,
                                   ex.min_priority_fee_gwei)
    guards = Guards.from_config(gwei_to_wei(ex.gas_budget_per_hour_eth * 1e9),
                                ex.max_consecutive_failures, ex.kill_switch)
    settings = sender_settings(cfg, dry_run=dry_run, confirmations=await preflight.confirmations(
        rpc, ex.confirmations))
    submitter: Submitter = PublicSubmitter(rpc, settings.rpc_timeout)
    if ex.private_relay_url is not None and signer is not None:
        submitter = RelaySubmitter(RelayClient(ex.private_relay_url, signer),
                                   blocks_ahead=ex.relay_blocks_ahead)
    # The one hook of a keeper network on the sending path: the gate, before every hand-out.
    submitter = GatedSubmitter(submitter, gate)
    sender = Sender(rpc, signer, policy, guards, settings, metrics=metrics, submitter=submitter,
                    address=owner)
    a_tokens = await _a_tokens(rpc, contracts)
    venue = Venue(pool=contracts.pool, liquidator=target.liquidator.lower(),
                  uniswap_v2_factory=target.uniswap_v2_factory.lower(),
                  pair_init_code_hash=target.pair_init_code_hash, hubs=target.hubs,
                  a_tokens=a_tokens, uniswap_v3=_uniswap_v3(cfg, target),
                  sender=owner.lower() if owner else None)
    planner = PlannerConfig(
        liquidator=venue.liquidator, native_asset=target.native_asset.lower(),
        rules=await _liquidation_rules(rpc, contracts.pool, cfg.aave.rules),
        min_profit_base=round(ex.min_profit_usd * 10**8),
        profit_tolerance_bps=ex.profit_tolerance_bps, owner=owner,
        keep_collateral=ex.keep_collateral,
        # Kept liquidations priced at their share of a batch, where batches are sent.
        gas=GasModel(kept_in_batch=batched_keep_gas(ex.batch_size)) if ex.batch_size > 1
        and not cfg.cluster.enabled else GasModel())
    executor = LiquidationExecutor(rpc, sender, metrics, owner=owner,
                                   native_asset=planner.native_asset,
                                   native_decimals=planner.native_decimals,
                                   block_time=cfg.network.block_time)
    return executor, LiquidationPlanner(rpc, venue, planner, policy, metrics,
                                        block_time=cfg.network.block_time)


async def _liquidation_rules(rpc: JsonRpc, pool: str, configured: str) -> AaveRules:
    """The configured rules, or (``auto``) those of the Pool's POOL_REVISION."""
    if configured != "auto":
        return AaveRules(configured)
    rules = rules_of(await read_revision(rpc, pool))
    log.info("liquidation_rules_selected", rules=rules.value)
    return rules


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
