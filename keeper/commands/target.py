"""The one target resolver of every command (``run``, ``scan``, ``deploy-liquidator``).

A configured ``network.devnet_manifest`` supplies the market's addresses and the node's
endpoints (configured endpoints still win: e.g. a fork of the devnet); without one, the
config's own ``network`` and ``aave`` sections do. Only the commands may read a manifest: the
devnet is a tool, production modules never import it.
"""

from __future__ import annotations

from keeper.app.config import KeeperConfig
from keeper.app.target import Target
from keeper.devnet.manifest import Manifest
from keeper.errors import ConfigError
from keeper.protocols.aave_v3.reader import AaveV3Contracts


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
            uniswap_v3_factory=dex.uniswap_v3_factory
            or (m.uniswap_v3.factory if m.uniswap_v3 else None),
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
        symbols={}, uniswap_v3_factory=dex.uniswap_v3_factory,
    )
