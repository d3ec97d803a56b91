"""Deploy the real Aave V3 (npm ``@aave/core-v3``), Uniswap V2, our price feeds and Multicall3.

The order follows what the contracts require (see shared/notes/aave-v3-devnet.md): the
addresses provider gets its ACL admin before the ACLManager reads it; token implementations
take the Pool *proxy*; reserves start with borrowing and flash loans off and LTV 0, so every
risk parameter is set explicitly afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.contracts.artifacts import Artifact
from keeper.devnet import market
from keeper.devnet.manifest import MULTICALL3, EModeInfo, Manifest, ReserveInfo, UniswapV3Info
from keeper.devnet.txs import TxSender
from keeper.devnet.uniswap_v3 import deploy_uniswap_v3
from keeper.protocols.aave_v3.liquidator import LiquidatorConfig, deploy_liquidator

ZERO = "0x" + "00" * 20
DEV_ACCOUNTS = (
    "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",  # deployer / pool admin
    "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",  # the keeper (liquidator owner)
)
POOL_LIBRARIES = ("BorrowLogic", "BridgeLogic", "EModeLogic", "LiquidationLogic", "PoolLogic",
                  "SupplyLogic")
MARKET_ID = "keeper-devnet"


def derived_address(label: str) -> str:
    return "0x" + keccak(text=label)[12:].hex()


@dataclass
class DeployContext:
    tx: TxSender
    deployer: str

    async def deploy(self, art: Artifact, *args: Any, libraries: dict[str, str] | None = None) -> str:
        return await self.tx.deploy(art.deploy_data(*args, libraries=libraries), what=art.name)

    async def do(self, to: str, art: Artifact, fn: str, *args: Any) -> dict[str, Any]:
        return await self.tx.transact(to, art.abi[fn], *args)

    async def read(self, to: str, art: Artifact, fn: str, *args: Any) -> tuple[Any, ...]:
        return await self.tx.call(to, art.abi[fn], *args)


async def deploy_all(rpc: HttpRpc, rpc_url: str, ws_url: str) -> Manifest:
    """Deploy the whole devnet market on a fresh anvil and return its manifest."""
    deployer, keeper_account = DEV_ACCOUNTS
    ctx = DeployContext(TxSender(rpc, deployer), deployer)
    chain_id = int(await rpc.call("eth_chainId"), 16)
    deploy_block = int(await rpc.call("eth_blockNumber"), 16)

    feeds = await deploy_feeds(ctx)
    provider, acl = await deploy_provider_and_acl(ctx, artifacts.aave("PoolAddressesProvider"),
                                                  artifacts.aave("ACLManager"))
    pool, revision = await deploy_pool(ctx, provider)
    configurator = await deploy_configurator(ctx, provider)
    oracle, data_provider = await deploy_oracle_and_data_provider(ctx, provider, feeds, configurator)
    treasury = derived_address("keeper-devnet-treasury")
    impls = await deploy_token_implementations(ctx, pool)
    strategies = await deploy_rate_strategies(ctx, provider)
    await configure_reserves(ctx, configurator, feeds.tokens, impls, strategies, treasury)
    reserve_tokens = await read_reserve_tokens(ctx, data_provider, feeds.tokens)

    periphery = await deploy_periphery(ctx, rpc, oracle, feeds.tokens, provider)

    reserves = reserve_infos(feeds, reserve_tokens)
    emodes = tuple(EModeInfo(e.id, e.ltv, e.liquidation_threshold, e.liquidation_bonus, e.label)
                   for e in market.EMODES)
    return Manifest(
        chain_id=chain_id, rpc_url=rpc_url, ws_url=ws_url, deployer=deployer, keeper=keeper_account,
        deploy_block=deploy_block, pool_addresses_provider=provider, pool=pool,
        pool_configurator=configurator, acl_manager=acl, oracle=oracle, data_provider=data_provider,
        treasury=treasury, uniswap_factory=periphery.factory, uniswap_router=periphery.router,
        weth9=periphery.weth9, multicall3=MULTICALL3, reserves=reserves, emodes=emodes,
        pairs=periphery.pairs, liquidator=periphery.liquidator, aave_version="3.0",
        pool_revision=int(revision), uniswap_v3=periphery.uniswap_v3,
    )


async def deploy_pool(ctx: DeployContext, provider: str) -> tuple[str, int]:
    """Pool libraries, implementation and proxy; returns the proxy and its POOL_REVISION."""
    provider_art, pool_art = artifacts.aave("PoolAddressesProvider"), artifacts.aave("Pool")
    libs: dict[str, str] = {}
    for name in POOL_LIBRARIES:
        libs[name] = await ctx.deploy(artifacts.aave(name))
    libs["FlashLoanLogic"] = await ctx.deploy(artifacts.aave("FlashLoanLogic"), libraries=libs)
    pool_impl = await ctx.deploy(pool_art, provider, libraries=libs)
    await ctx.do(pool_impl, pool_art, "initialize", provider)
    await ctx.do(provider, provider_art, "setPoolImpl", pool_impl)
    (pool,) = await ctx.read(provider, provider_art, "getPool")
    pool = str(pool).lower()
    (revision,) = await ctx.read(pool, pool_art, "POOL_REVISION")
    return pool, int(revision)


async def deploy_configurator(ctx: DeployContext, provider: str) -> str:
    """The PoolConfigurator implementation and its proxy (returned)."""
    provider_art, cfg_art = artifacts.aave("PoolAddressesProvider"), artifacts.aave("PoolConfigurator")
    cfg_libs = {"ConfiguratorLogic": await ctx.deploy(artifacts.aave("ConfiguratorLogic"))}
    cfg_impl = await ctx.deploy(cfg_art, libraries=cfg_libs)
    await ctx.do(cfg_impl, cfg_art, "initialize", provider)
    await ctx.do(provider, provider_art, "setPoolConfiguratorImpl", cfg_impl)
    (configurator,) = await ctx.read(provider, provider_art, "getPoolConfigurator")
    return str(configurator).lower()


async def deploy_oracle_and_data_provider(
    ctx: DeployContext, provider: str, feeds: Feeds, configurator: str
) -> tuple[str, str]:
    """The AaveOracle over the feeds, the data provider, then the flash-loan premiums."""
    provider_art, cfg_art = artifacts.aave("PoolAddressesProvider"), artifacts.aave("PoolConfigurator")
    symbols = [s.symbol for s in market.RESERVES]
    oracle = await ctx.deploy(artifacts.aave("AaveOracle"), provider,
                              [feeds.tokens[s] for s in symbols], [feeds.sources[s] for s in symbols],
                              ZERO, ZERO, market.PRICE_UNIT)
    await ctx.do(provider, provider_art, "setPriceOracle", oracle)
    data_provider = await ctx.deploy(artifacts.aave("AaveProtocolDataProvider"), provider)
    await ctx.do(provider, provider_art, "setPoolDataProvider", data_provider)

    await ctx.do(configurator, cfg_art, "updateFlashloanPremiumTotal", market.FLASHLOAN_PREMIUM_TOTAL)
    await ctx.do(configurator, cfg_art, "updateFlashloanPremiumToProtocol",
                 market.FLASHLOAN_PREMIUM_TO_PROTOCOL)
    return oracle, data_provider


async def deploy_token_implementations(ctx: DeployContext, pool: str) -> dict[str, str]:
    """The aToken and debt token implementations (they take the Pool proxy), by contract name."""
    impls: dict[str, str] = {}
    for name in ("AToken", "StableDebtToken", "VariableDebtToken"):
        art = artifacts.aave(name)
        impls[name] = await ctx.deploy(art, pool)
        # Initialise the bare implementations so nobody else can.
        if name == "AToken":
            await ctx.do(impls[name], art, "initialize", pool, ZERO, ZERO, ZERO, 0,
                         "ATOKEN_IMPL", "ATOKEN_IMPL", b"")
        else:
            await ctx.do(impls[name], art, "initialize", pool, ZERO, ZERO, 0,
                         "DEBT_IMPL", "DEBT_IMPL", b"")
    return impls


async def deploy_rate_strategies(ctx: DeployContext, provider: str) -> dict[market.RateModel, str]:
    """One interest rate strategy per rate model of the market."""
    strategies: dict[market.RateModel, str] = {}
    irs_art = artifacts.aave("DefaultReserveInterestRateStrategy")
    for model in (market.STABLE_RATES, market.VOLATILE_RATES):
        strategies[model] = await ctx.deploy(irs_art, provider, *model.args())
    return strategies


async def configure_reserves(
    ctx: DeployContext, configurator: str, tokens: dict[str, str], impls: dict[str, str],
    strategies: dict[market.RateModel, str], treasury: str,
) -> None:
    """Initialise every reserve, the eMode categories, then each reserve's risk parameters
    (a new reserve has borrowing and flash loans off and LTV 0)."""
    cfg_art = artifacts.aave("PoolConfigurator")
    inputs = [
        (impls["AToken"], impls["StableDebtToken"], impls["VariableDebtToken"], spec.decimals,
         strategies[spec.rates], tokens[spec.symbol], treasury, ZERO,
         f"Aave Devnet {spec.symbol}", f"aDev{spec.symbol}",
         f"Aave Devnet Variable Debt {spec.symbol}", f"variableDebtDev{spec.symbol}",
         f"Aave Devnet Stable Debt {spec.symbol}", f"stableDebtDev{spec.symbol}", b"")
        for spec in market.RESERVES
    ]
    await ctx.do(configurator, cfg_art, "initReserves", inputs)
    for e in market.EMODES:
        await ctx.do(configurator, cfg_art, "setEModeCategory", e.id, e.ltv, e.liquidation_threshold,
                     e.liquidation_bonus, ZERO, e.label)
    for spec in market.RESERVES:
        await configure_reserve(ctx, configurator, cfg_art, tokens[spec.symbol], spec)


async def configure_reserve(
    ctx: DeployContext, configurator: str, cfg_art: Artifact, asset: str, spec: market.ReserveSpec,
    *, v3_0: bool = True,
) -> None:
    """One reserve's risk parameters, in the order the configurator accepts them. Stable-rate
    borrowing and the per-asset eMode category exist on v3.0 only (3.2 dropped both)."""
    await ctx.do(configurator, cfg_art, "configureReserveAsCollateral", asset, spec.ltv,
                 spec.liquidation_threshold, spec.liquidation_bonus)
    await ctx.do(configurator, cfg_art, "setReserveBorrowing", asset, True)
    await ctx.do(configurator, cfg_art, "setReserveFlashLoaning", asset, True)
    await ctx.do(configurator, cfg_art, "setReserveFactor", asset, spec.reserve_factor)
    await ctx.do(configurator, cfg_art, "setLiquidationProtocolFee", asset,
                 spec.liquidation_protocol_fee)
    if v3_0 and spec.stable_borrowing:
        await ctx.do(configurator, cfg_art, "setReserveStableRateBorrowing", asset, True)
    if v3_0 and spec.emode_category:
        await ctx.do(configurator, cfg_art, "setAssetEModeCategory", asset, spec.emode_category)
    if spec.borrowable_in_isolation:
        await ctx.do(configurator, cfg_art, "setBorrowableInIsolation", asset, True)
    if spec.debt_ceiling:
        await ctx.do(configurator, cfg_art, "setDebtCeiling", asset, spec.debt_ceiling)


async def read_reserve_tokens(
    ctx: DeployContext, data_provider: str, tokens: dict[str, str]
) -> dict[str, tuple[str, str, str]]:
    """(aToken, stable debt token, variable debt token) of every reserve, by symbol."""
    dp_art = artifacts.aave("AaveProtocolDataProvider")
    reserve_tokens: dict[str, tuple[str, str, str]] = {}
    for spec in market.RESERVES:
        a, s, v = await ctx.read(data_provider, dp_art, "getReserveTokensAddresses", tokens[spec.symbol])
        reserve_tokens[spec.symbol] = (str(a).lower(), str(s).lower(), str(v).lower())
    return reserve_tokens


@dataclass(frozen=True)
class Feeds:
    """The reserves' tokens and what prices them, by symbol."""

    tokens: dict[str, str]
    aggregators: dict[str, str]  # the contract that emits AnswerUpdated (may be shared)
    sources: dict[str, str]  # what the AaveOracle reads
    kinds: dict[str, str]


async def deploy_feeds(ctx: DeployContext) -> Feeds:
    """Tokens and price feeds (an aggregator behind a proxy, as on mainnet; wstETH through a
    rate adapter over the WETH feed). Shared by every Aave revision's market."""
    erc20 = artifacts.aave("MintableERC20")
    price_feed, feed_proxy, rate_adapter = (artifacts.ours(n) for n in
                                            ("PriceFeed", "FeedProxy", "RateAdapter"))
    feeds = Feeds({}, {}, {}, {})
    for spec in market.RESERVES:
        feeds.tokens[spec.symbol] = await ctx.deploy(erc20, spec.symbol, spec.symbol, spec.decimals)
    for spec in market.RESERVES:
        if spec.rate_base is None:
            agg = await ctx.deploy(price_feed, 8, f"{spec.symbol} / USD", spec.price)
            feeds.aggregators[spec.symbol] = agg
            feeds.sources[spec.symbol] = await ctx.deploy(feed_proxy, agg)
            feeds.kinds[spec.symbol] = "chainlink"
    for spec in market.RESERVES:
        if spec.rate_base is not None:
            base = spec.rate_base
            feeds.sources[spec.symbol] = await ctx.deploy(
                rate_adapter, feeds.sources[base], spec.rate_at_start, spec.rate_per_second)
            feeds.aggregators[spec.symbol] = feeds.aggregators[base]
            feeds.kinds[spec.symbol] = "rate_adapter"
    return feeds


async def deploy_provider_and_acl(ctx: DeployContext, provider_art: Artifact, acl_art: Artifact) -> tuple[str, str]:
    """The addresses provider gets its ACL admin before the ACLManager's constructor reads it."""
    provider = await ctx.deploy(provider_art, MARKET_ID, ctx.deployer)
    await ctx.do(provider, provider_art, "setACLAdmin", ctx.deployer)
    acl = await ctx.deploy(acl_art, provider)
    await ctx.do(provider, provider_art, "setACLManager", acl)
    await ctx.do(acl, acl_art, "addPoolAdmin", ctx.deployer)
    await ctx.do(acl, acl_art, "addEmergencyAdmin", ctx.deployer)
    return provider, acl


@dataclass(frozen=True)
class Periphery:
    factory: str
    weth9: str
    router: str
    pairs: dict[str, str]
    liquidator: str
    uniswap_v3: UniswapV3Info


async def deploy_periphery(
    ctx: DeployContext, rpc: HttpRpc, oracle: str, tokens: dict[str, str], provider: str
) -> Periphery:
    """Multicall3, Uniswap V2 and V3 pools priced at the oracle, and our flash-loan liquidator."""
    # Multicall3 at its canonical address.
    await rpc.call("anvil_setCode", [MULTICALL3, artifacts.ours_runtime("Multicall3")])

    # Uniswap V2, one pool per pair of reserves, priced at the oracle.
    erc20, oracle_art = artifacts.aave("MintableERC20"), artifacts.aave("AaveOracle")
    symbols = [s.symbol for s in market.RESERVES]
    factory_art, router_art = artifacts.uniswap("UniswapV2Factory"), artifacts.uniswap("UniswapV2Router02")
    factory = await ctx.deploy(factory_art, ctx.deployer)
    weth9 = await ctx.deploy(artifacts.uniswap("WETH9"))
    router = await ctx.deploy(router_art, factory, weth9)
    (prices,) = await ctx.read(oracle, oracle_art, "getAssetsPrices", [tokens[s] for s in symbols])
    price_of = dict(zip(symbols, (int(p) for p in prices), strict=True))
    decimals_of = {s.symbol: s.decimals for s in market.RESERVES}
    pair_art = artifacts.uniswap("UniswapV2Pair")
    pairs: dict[str, str] = {}
    for i, a_sym in enumerate(symbols):
        for b_sym in symbols[i + 1:]:
            await ctx.do(factory, factory_art, "createPair", tokens[a_sym], tokens[b_sym])
            (pair,) = await ctx.read(factory, factory_art, "getPair", tokens[a_sym], tokens[b_sym])
            pair = str(pair).lower()
            for sym in (a_sym, b_sym):
                amount = market.POOL_DEPTH_USD * market.PRICE_UNIT * 10 ** decimals_of[sym] // price_of[sym]
                await ctx.tx.transact(tokens[sym], erc20.abi["mint(address,uint256)"], pair, amount)
            await ctx.do(pair, pair_art, "mint", ctx.deployer)
            pairs["/".join(sorted((a_sym, b_sym)))] = pair

    v3 = await deploy_uniswap_v3(ctx.tx, ctx.deployer, weth9, tokens, price_of)

    # Our flash-loan liquidator, owned by the devnet's keeper account.
    liquidator = await deploy_liquidator(ctx.tx, LiquidatorConfig(
        provider, factory, DEV_ACCOUNTS[1], uniswap_v3_factory=v3.factory))
    return Periphery(factory, weth9, router, pairs, liquidator.lower(), v3)


def reserve_infos(feeds: Feeds, reserve_tokens: dict[str, tuple[str, str, str]],
                  emode_of: dict[str, int] | None = None) -> tuple[ReserveInfo, ...]:
    """The manifest's reserves: addresses from the deploy, parameters from the market."""
    return tuple(
        ReserveInfo(
            symbol=spec.symbol, address=feeds.tokens[spec.symbol], decimals=spec.decimals,
            a_token=reserve_tokens[spec.symbol][0], stable_debt_token=reserve_tokens[spec.symbol][1],
            variable_debt_token=reserve_tokens[spec.symbol][2],
            price_source=feeds.sources[spec.symbol], aggregator=feeds.aggregators[spec.symbol],
            feed_kind=feeds.kinds[spec.symbol], ltv=spec.ltv,
            liquidation_threshold=spec.liquidation_threshold,
            liquidation_bonus=spec.liquidation_bonus, reserve_factor=spec.reserve_factor,
            liquidation_protocol_fee=spec.liquidation_protocol_fee,
            emode_category=(spec.emode_category if emode_of is None
                            else emode_of.get(spec.symbol, 0)),
            debt_ceiling=spec.debt_ceiling, borrowable_in_isolation=spec.borrowable_in_isolation,
        )
        for spec in market.RESERVES
    )
