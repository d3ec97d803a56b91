"""The devnet manifest: every address and reserve parameter, as one JSON document.

Written by ``keeper devnet up`` next to the saved chain state, read by the keeper's devnet
config, the scenario drivers and the tests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keeper.errors import DevnetError

MULTICALL3 = "0xca11bde05977b3631167028862be2a173976ca11"


@dataclass(frozen=True, slots=True)
class ReserveInfo:
    symbol: str
    address: str
    decimals: int
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    price_source: str  # what the AaveOracle reads (a FeedProxy, or a RateAdapter)
    aggregator: str  # the contract that emits AnswerUpdated for this price (may be shared)
    feed_kind: str  # "chainlink" | "rate_adapter"
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    reserve_factor: int
    liquidation_protocol_fee: int
    emode_category: int
    debt_ceiling: int
    borrowable_in_isolation: bool


@dataclass(frozen=True, slots=True)
class EModeInfo:
    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str
    # v3.2+ (liquid eMode): which reserves count as collateral / may be borrowed in the
    # category, by symbol. Empty on v3.0, where a reserve belongs to one category only
    # (ReserveInfo.emode_category).
    collateral: tuple[str, ...] = ()
    borrowable: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UniswapV3Info:
    """The devnet's Uniswap V3: its contracts and pools ("A/B/fee", sorted symbols -> pool)."""

    factory: str
    router: str  # SwapRouter
    position_manager: str  # NonfungiblePositionManager
    quoter: str  # QuoterV2
    pools: dict[str, str] = field(default_factory=dict)

    def pool(self, a: str, b: str, fee: int) -> str:
        key = "/".join(sorted((a, b))) + f"/{fee}"
        try:
            return self.pools[key]
        except KeyError:
            raise DevnetError(f"no Uniswap V3 pool {key} on the devnet") from None


@dataclass(frozen=True, slots=True)
class Manifest:
    chain_id: int
    rpc_url: str
    ws_url: str
    deployer: str
    keeper: str  # the devnet's liquidator account (anvil account 1)
    deploy_block: int
    pool_addresses_provider: str
    pool: str
    pool_configurator: str
    acl_manager: str
    oracle: str
    data_provider: str
    treasury: str
    uniswap_factory: str
    uniswap_router: str
    weth9: str
    multicall3: str
    reserves: tuple[ReserveInfo, ...]
    emodes: tuple[EModeInfo, ...]
    pairs: dict[str, str] = field(default_factory=dict)  # "A/B" (sorted symbols) -> pair
    liquidator: str = ""  # our FlashLiquidator, owned by ``keeper``
    aave_version: str = "3.0"  # the market's Aave release: "3.0" or "3.6"
    pool_revision: int = 1  # Pool.POOL_REVISION() as deployed
    # v3.1+: reserves deployed with a liquidation grace period, symbol -> unix time it ends.
    grace_period_until: dict[str, int] = field(default_factory=dict)
    uniswap_v3: UniswapV3Info | None = None

    def reserve(self, symbol: str) -> ReserveInfo:
        for r in self.reserves:
            if r.symbol == symbol:
                return r
        raise DevnetError(f"no reserve {symbol} on the devnet")

    def pair(self, a: str, b: str) -> str:
        key = "/".join(sorted((a, b)))
        try:
            return self.pairs[key]
        except KeyError:
            raise DevnetError(f"no Uniswap pair {key} on the devnet") from None

    def with_urls(self, rpc_url: str, ws_url: str) -> Manifest:
        d = self.to_json()
        d["rpc_url"], d["ws_url"] = rpc_url, ws_url
        return Manifest.from_json(d)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> Manifest:
        try:
            fields = dict(d)
            fields["reserves"] = tuple(ReserveInfo(**r) for r in d["reserves"])
            fields["emodes"] = tuple(
                EModeInfo(**{**e, "collateral": tuple(e.get("collateral", ())),
                             "borrowable": tuple(e.get("borrowable", ()))})
                for e in d["emodes"])
            fields["grace_period_until"] = dict(d.get("grace_period_until", {}))
            fields["pairs"] = dict(d.get("pairs", {}))
            v3 = d.get("uniswap_v3")
            fields["uniswap_v3"] = UniswapV3Info(**{**v3, "pools": dict(v3.get("pools", {}))}) \
                if v3 else None
            return Manifest(**fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise DevnetError(f"malformed devnet manifest: {exc}") from exc

    def save(self, path: Path) -> None:
        """Write atomically: a reader never sees half a manifest."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> Manifest:
        try:
            return Manifest.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise DevnetError(f"no devnet manifest at {path}: run `keeper devnet up`") from None
        except json.JSONDecodeError as exc:
            raise DevnetError(f"devnet manifest {path} is not valid JSON: {exc}") from exc
        except UnicodeDecodeError:
            raise DevnetError(f"devnet manifest {path} is not UTF-8 text") from None
        except OSError as exc:  # a directory, no permission, ...
            raise DevnetError(f"cannot read devnet manifest {path}: {exc.strerror}") from None
