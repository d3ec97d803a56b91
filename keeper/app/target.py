"""Where the keeper runs: the endpoints, the market, our contract and the AMM, resolved once.

The commands resolve it (``keeper.commands.target``: from the config, or from a devnet manifest
the config names) and hand it to the composition root; nothing below the commands reads a
manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from keeper.protocols.aave_v3.reader import AaveV3Contracts


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
    symbols: dict[str, str] = field(default_factory=dict)  # asset -> symbol, where known up front
    uniswap_v3_factory: str | None = None
    fork_key: SecretStr | None = None
    """A throwaway key made for a fork rehearsal (it owns the liquidator deployed there); it
    signs instead of the configured account, on the fork only."""

    def symbol(self, asset: str) -> str:
        """The asset's symbol when known, else the start of its address (for reports)."""
        return self.symbols.get(asset, asset[:10])
