"""Deploy Aave v3.6 (compiled from npm ``@aave-dao/aave-v3-origin``) with the devnet's feeds,
Uniswap V2 pools, Multicall3 and our liquidator.

The order follows what the contracts require (shared/notes/aave-v3-origin.md): one rate
strategy, passed to the Pool's constructor, serves every reserve; the Pool links five
libraries (FlashLoanLogic links BorrowLogic, so it comes after); token implementations take
the Pool *proxy*; eMode categories list their collateral and borrowable reserves; one reserve
is unpaused with a liquidation grace period.
"""

from __future__ import annotations

import dataclasses

from eth_abi import encode as abi_encode

from keeper.chain.abi import Function
from keeper.chain.rpc import HttpRpc
from keeper.devnet import market, market_v36
from keeper.devnet.deploy import (
    DEV_ACCOUNTS,
    ZERO,
    DeployContext,
    configure_reserve,
    deploy_feeds,
    deploy_periphery,
    deploy_provider_and_acl,
    derived_address,
    reserve_infos,
)
from keeper.devnet.manifest import MULTICALL3, EModeInfo, Manifest
from keeper.devnet.origin_build import POOL_LIBRARIES, origin
from keeper.devnet.txs import TxSender
from keeper.obs.logging import get_logger

log = get_logger(__name__)


async def _deploy_pool(ctx: DeployContext, provider: str) -> tuple[str, str]:
    """Rate strategy, libraries, Pool and configurator behind the provider's proxies."""
    provider_art = origin("PoolAddressesProvider")
    strategy = await ctx.deploy(origin("DefaultReserveInterestRateStrategyV2"), provider)
    libs: dict[str, str] = {}
    for name in POOL_LIBRARIES:
        if name != "FlashLoanLogic":
            libs[name] = await ctx.deploy(origin(name))
    libs["FlashLoanLogic"] = await ctx.deploy(origin("FlashLoanLogic"), libraries=libs)
    pool_art = origin("PoolInstance")
    # v3.6 implementations lock their initializer in the constructor: nothing to initialise.
    pool_impl = await ctx.deploy(pool_art, provider, strategy, libraries=libs)
    await ctx.do(provider, provider_art, "setPoolImpl", pool_impl)
    (pool,) = await ctx.read(provider, provider_art, "getPool")

    cfg_art = origin("PoolConfiguratorInstance")
    cfg_libs = {"ConfiguratorLogic": await ctx.deploy(origin("ConfiguratorLogic"))}
    cfg_impl = await ctx.deploy(cfg_art, libraries=cfg_libs)
    await ctx.do(provider, provider_art, "setPoolConfiguratorImpl", cfg_impl)
    (configurator,) = await ctx.read(provider, provider_art, "getPoolConfigurator")
    return str(pool).lower(), str(configurator).lower()


async def _init_reserves(ctx: DeployContext, pool: str, configurator: str, tokens: dict[str, str]) -> None:
    """Token implementations, reserves, eMode categories, risk parameters, grace period."""
    cfg = origin("PoolConfiguratorInstance")
    treasury = derived_address("keeper-devnet-treasury")
    a_art, v_art = origin("ATokenInstance"), origin("VariableDebtTokenInstance")
    a_impl = await ctx.deploy(a_art, pool, ZERO, treasury)
    v_impl = await ctx.deploy(v_art, pool, ZERO)
    inputs = [
        (a_impl, v_impl, tokens[spec.symbol], f"Aave Devnet {spec.symbol}", f"aDev{spec.symbol}",
         f"Aave Devnet Variable Debt {spec.symbol}", f"variableDebtDev{spec.symbol}", b"",
         abi_encode(["(uint16,uint32,uint32,uint32)"],
                    [market_v36.rate_data(spec.rates).args()]))
        for spec in market.RESERVES
    ]
    await ctx.do(configurator, cfg, "initReserves", inputs)
    await ctx.do(configurator, cfg, "updateFlashloanPremium", market_v36.FLASHLOAN_PREMIUM)
    for spec in market.RESERVES:
        await configure_reserve(ctx, configurator, cfg, tokens[spec.symbol], spec, v3_0=False)
    for e in market_v36.EMODES:
        await ctx.do(configurator, cfg, "setEModeCategory", e.id, e.ltv, e.liquidation_threshold,
                     e.liquidation_bonus, e.label)
        for sym in e.collateral:
            await ctx.do(configurator, cfg, "setAssetCollateralInEMode", tokens[sym], e.id, True)
        for sym in e.borrowable:
            await ctx.do(configurator, cfg, "setAssetBorrowableInEMode", tokens[sym], e.id, True)
    await ctx.do(configurator, cfg, "setReservePause(address,bool,uint40)",
                 tokens[market_v36.GRACE_PERIOD_RESERVE], False, market_v36.GRACE_PERIOD_SECONDS)


async def deploy_all(rpc: HttpRpc, rpc_url: str, ws_url: str) -> Manifest:
    """Deploy the v3.6 devnet market on a fresh anvil and return its manifest."""
    deployer, keeper_account = DEV_ACCOUNTS
    ctx = DeployContext(TxSender(rpc, deployer), deployer)
    chain_id = int(await rpc.call("eth_chainId"), 16)
    deploy_block = int(await rpc.call("eth_blockNumber"), 16)

    feeds = await deploy_feeds(ctx)
    tokens = feeds.tokens
    provider_art = origin("PoolAddressesProvider")
    provider, acl = await deploy_provider_and_acl(ctx, provider_art, origin("ACLManager"))
    pool, configurator = await _deploy_pool(ctx, provider)

    symbols = [s.symbol for s in market.RESERVES]
    oracle_art = origin("AaveOracle")
    oracle = await ctx.deploy(oracle_art, provider, [tokens[s] for s in symbols],
                              [feeds.sources[s] for s in symbols], ZERO, ZERO, market.PRICE_UNIT)
    await ctx.do(provider, provider_art, "setPriceOracle", oracle)
    dp_art = origin("AaveProtocolDataProvider")
    data_provider = await ctx.deploy(dp_art, provider)
    await ctx.do(provider, provider_art, "setPoolDataProvider", data_provider)

    await _init_reserves(ctx, pool, configurator, tokens)
    pool_art = origin("PoolInstance")
    grace_asset = tokens[market_v36.GRACE_PERIOD_RESERVE]
    (until,) = await ctx.read(pool, pool_art, "getLiquidationGracePeriod", grace_asset)
    (revision,) = await ctx.read(pool, pool_art, "POOL_REVISION")

    reserve_tokens: dict[str, tuple[str, str, str]] = {}
    for sym in symbols:
        a, s, v = await ctx.read(data_provider, dp_art, "getReserveTokensAddresses", tokens[sym])
        reserve_tokens[sym] = (str(a).lower(), str(s).lower(), str(v).lower())

    periphery = await deploy_periphery(ctx, rpc, oracle, tokens, provider)
    emodes = tuple(EModeInfo(e.id, e.ltv, e.liquidation_threshold, e.liquidation_bonus, e.label,
                             e.collateral, e.borrowable) for e in market_v36.EMODES)
    log.info("devnet_deployed", aave_version=market_v36.AAVE_VERSION, pool_revision=int(revision),
             pool=pool)
    return Manifest(
        chain_id=chain_id, rpc_url=rpc_url, ws_url=ws_url, deployer=deployer, keeper=keeper_account,
        deploy_block=deploy_block, pool_addresses_provider=provider, pool=pool,
        pool_configurator=configurator, acl_manager=acl, oracle=oracle, data_provider=data_provider,
        treasury=derived_address("keeper-devnet-treasury"), uniswap_factory=periphery.factory,
        uniswap_router=periphery.router, weth9=periphery.weth9, multicall3=MULTICALL3,
        reserves=reserve_infos(feeds, reserve_tokens, market_v36.EMODE_OF), emodes=emodes,
        pairs=periphery.pairs, liquidator=periphery.liquidator,
        aave_version=market_v36.AAVE_VERSION, pool_revision=int(revision),
        grace_period_until={market_v36.GRACE_PERIOD_RESERVE: int(until)},
        uniswap_v3=periphery.uniswap_v3,
    )


# Fixed fragments, so that re-arming the grace period on a loaded chain needs no build.
_SET_RESERVE_PAUSE = Function("setReservePause", ("address", "bool", "uint40"), ())
_GET_GRACE_PERIOD = Function("getLiquidationGracePeriod", ("address",), ("uint40",))


async def rearm_grace_period(rpc: HttpRpc, manifest: Manifest) -> Manifest:
    """Start the grace period again on a chain loaded from saved state.

    Anvil stamps the blocks of a loaded chain with the wall clock, so a grace period set when
    the state was saved has long ended; unpausing again is what an admin does on a live
    market. Returns the manifest with the new end of the period.
    """
    tx = TxSender(rpc, manifest.deployer)
    until: dict[str, int] = {}
    for sym in manifest.grace_period_until:
        asset = manifest.reserve(sym).address
        await tx.transact(manifest.pool_configurator, _SET_RESERVE_PAUSE, asset, False,
                          market_v36.GRACE_PERIOD_SECONDS)
        (end,) = await tx.call(manifest.pool, _GET_GRACE_PERIOD, asset)
        until[sym] = int(end)
    return dataclasses.replace(manifest, grace_period_until=until)
