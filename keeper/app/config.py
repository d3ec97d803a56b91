"""Configuration: a TOML file per network, validated at start-up, overridden by environment.

Built on pydantic-settings: the sources are, highest priority first, the secrets (environment
only), the environment (``KEEPER_`` prefix, nested fields with ``__``:
``KEEPER_EXECUTOR__DRY_RUN=true``; lists as comma lists) and the TOML file. Secrets (the signing
key, the keystore password) are never read from the TOML file: only from the environment or
from a file named in the environment. Every problem becomes one ``ConfigError`` line naming the
field (or the file); values that make no sense (an infinite profit, a 1e-9 s timeout, a chain id
past EIP-2294's bound) are refused, and off the devnet the chain id must be given.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from keeper.app.cluster_config import ClusterConfig
from keeper.app.config_sources import (
    ENV_PREFIX,
    EnvSource,
    SecretsSource,
    TomlFileSource,
    one_line,
)
from keeper.app.config_types import (
    Address,
    FilePath,
    Float,
    Int,
    Url,
)
from keeper.app.config_types import comma_list as _comma_list
from keeper.app.config_types import hash32 as _hash32
from keeper.app.config_types import sqlite_file as _sqlite_file
from keeper.errors import ConfigError

DEVNET_CHAIN_ID = 31337
# EIP-2294: the largest chain id that signs safely (floor(MAX_UINT64 / 2) - 36).
MAX_CHAIN_ID = 9_223_372_036_854_775_771
# Block numbers are SQLite INTEGER keys in the checkpoint's journal.
MAX_BLOCK = 2**63 - 1
class _Section(BaseModel):
    # No inf/nan anywhere: a float of the config ends up in integer money or a timeout.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describes_devnet(data: Mapping[str, Any]) -> bool:
    """The devnet is named "devnet" and reached through its manifest or on this machine."""
    if data.get("name", "devnet") != "devnet":
        return False
    if data.get("devnet_manifest"):
        return True
    urls = _comma_list(data.get("rpc_urls", []))
    urls = (urls if isinstance(urls, list) else []) + ([data["ws_url"]] if data.get("ws_url") else [])
    return all(isinstance(u, str) and _is_loopback(u) for u in urls)


class NetworkConfig(_Section):
    name: str = Field("devnet", min_length=1, max_length=64)
    # Required off the devnet (see _devnet_chain_id): a default would sign for the wrong chain.
    chain_id: Int = Field(gt=0, le=MAX_CHAIN_ID)
    rpc_urls: Annotated[list[Url], NoDecode] = Field(default_factory=list)
    ws_url: Url | None = None
    request_timeout: Float = Field(10.0, ge=0.1, le=300)
    # Seconds between blocks: plans are computed for the next block's timestamp.
    block_time: Int = Field(12, ge=1, le=600)
    # devnet only: read the RPC URL and every address from `keeper devnet up`'s manifest
    devnet_manifest: FilePath | None = None

    @model_validator(mode="before")
    @classmethod
    def _devnet_chain_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "chain_id" not in data and _describes_devnet(data):
            return {**data, "chain_id": DEVNET_CHAIN_ID}
        return data

    _split_urls = field_validator("rpc_urls", mode="before")(_comma_list)


class AaveConfig(_Section):
    pool_addresses_provider: Address | None = None
    start_block: Int = Field(0, ge=0, le=MAX_BLOCK)
    # "auto": the rules of the Pool's POOL_REVISION, read at start; a version overrides it.
    rules: Literal["auto", "v3.0", "v3.1", "v3.2", "v3.3", "v3.4", "v3.5", "v3.6"] = "auto"


class DexConfig(_Section):
    """Where liquidated collateral is swapped: a Uniswap V2-style factory (or a fork's)."""

    uniswap_v2_factory: Address | None = None
    # The factory's pair init-code hash (Uniswap V2's by default; forks differ).
    pair_init_code_hash: Annotated[str, AfterValidator(_hash32)] = (
        "0x96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f")
    # Intermediate tokens for two-hop routes (e.g. WETH, USDC).
    hubs: Annotated[list[Address], NoDecode] = Field(default_factory=list)
    # The reserve whose oracle price prices the native coin (WETH on Ethereum).
    native_asset: Address | None = None
    # Uniswap V3: the factory (the devnet manifest supplies its own) and its pool init-code hash.
    uniswap_v3_factory: Address | None = None
    uniswap_v3_pool_init_code_hash: Annotated[str, AfterValidator(_hash32)] = (
        "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54")
    # Plan with V3 pools (every tier of uniswap_v3_fee_tiers) and splits: only with a
    # liquidator contract that swaps through V3, so off until that contract is deployed.
    route_uniswap_v3: bool = False
    uniswap_v3_fee_tiers: Annotated[list[Int], NoDecode] = Field(
        default_factory=lambda: [500, 3000, 10000])

    _split_hubs = field_validator("hubs", mode="before")(_comma_list)
    _split_tiers = field_validator("uniswap_v3_fee_tiers", mode="before")(_comma_list)


class ScannerConfig(_Section):
    backfill_chunk_blocks: Int = Field(5_000, gt=0, le=1_000_000)
    poll_interval: Float = Field(1.0, ge=0.01, le=60)
    confirm_batch_size: Int = Field(500, gt=0, le=5_000)
    # Accounts of the book read from the contracts per block, in turn, while nothing is to be
    # liquidated, and restored where the book is wrong (keeper.app.audit_task); 0: no audit.
    audit_accounts_per_block: Int = Field(50, ge=0, le=100_000)


class ExecutorConfig(_Section):
    dry_run: bool = False
    kill_switch: bool = False
    liquidator: Address | None = None
    min_profit_usd: Float = Field(1.0, ge=0, le=1e9)
    # Also weigh liquidating from the contract's own balance and keeping the collateral (sent
    # to the owner unsold) against selling it: for an owner who holds inventory. Valued at the
    # oracle's price; the collateral's price risk is the owner's.
    keep_collateral: bool = False
    # How much worse than planned the on-chain profit may come out before the contract reverts.
    profit_tolerance_bps: Int = Field(100, ge=0, le=10_000)
    priority_fee_share: Float = Field(0.1, ge=0, le=1)
    # Fee caps in gwei: 100,000 gwei is far past any fee a liquidation could pay for.
    max_priority_fee_gwei: Float = Field(50.0, ge=0, le=100_000)
    # The least tip of any send (planning prices gas at it, so an account that cannot pay it
    # is not sent): a block builder takes one sender's transactions in nonce order, so one
    # low tip at a low nonce holds back every liquidation of ours behind it.
    min_priority_fee_gwei: Float = Field(0.0, ge=0, le=100_000)
    max_fee_gwei: Float = Field(500.0, gt=0, le=100_000)
    gas_budget_per_hour_eth: Float = Field(0.5, ge=0, le=10_000)
    max_consecutive_failures: Int = Field(5, gt=0, le=10_000)
    receipt_timeout: Float = Field(60.0, ge=1, le=3_600)
    replace_after_blocks: Int = Field(3, gt=0, le=1_000)
    # Blocks on top of the receipt before a transaction counts as mined (1: no reorg check).
    # Unset: from the chain (1 where it mines on demand, 2 elsewhere; keeper.app.preflight).
    confirmations: Int | None = Field(None, ge=1, le=64)
    poll_interval: Float = Field(0.5, ge=0.01, le=60)
    gas_margin_percent: Int = Field(20, ge=0, le=200)
    # Liquidations in flight at once, with consecutive nonces (1 with a private relay: its
    # bundles do not chain nonces across blocks). A slot is held until the receipt is final.
    # Accounts, not transactions: a batch carries several.
    max_in_flight: Int = Field(32, ge=1, le=8_192)
    # Liquidations that keep their collateral sent together, up to this many in one
    # ``liquidateBatch`` transaction (each order undone alone if it fails); 1: each alone.
    # A single process only (a keeper network claims each account on its own).
    batch_size: Int = Field(1, ge=1, le=64)
    relay_blocks_ahead: Int = Field(1, ge=1, le=25)
    # Backrun pending oracle updates seen in the mempool (needs a WebSocket URL): liquidate in
    # the same block as the price move, right after it.
    backrun_oracle_updates: bool = False
    private_relay_url: Url | None = None


class OracleGuardAsset(_Section):
    """One asset's overrides of ``[oracle_guard]`` (``[oracle_guard.assets.WETH]``, by symbol
    or address); a field left out takes the section's value."""

    enabled: bool = True
    max_price_deviation: Float | None = Field(None, gt=0, le=10)
    deviation_window: Int | None = Field(None, ge=0, le=100_000)
    heartbeat: Int | None = Field(None, ge=0, le=10_000_000)
    resume_after: Int | None = Field(None, ge=1, le=100_000)


class OracleGuardConfig(_Section):
    """The oracle circuit breaker (keeper.domain.oracle_guard): halts an asset's liquidations
    while its oracle price disagrees with the DEX by more than ``max_price_deviation`` (a
    fraction), or moved that much within ``deviation_window`` blocks with no DEX price to
    confirm it, or its feed is older than ``heartbeat`` seconds (0: no check); resumes after
    ``resume_after`` blocks without a breach, or on ``keeper breaker reset``."""

    enabled: bool = True
    max_price_deviation: Float = Field(0.25, gt=0, le=10)
    deviation_window: Int = Field(10, ge=0, le=100_000)
    # Chainlink's longest usual heartbeat is a day; an hour of slack for a late round.
    heartbeat: Int = Field(90_000, ge=0, le=10_000_000)
    resume_after: Int = Field(3, ge=1, le=100_000)
    # The assets whose Uniswap V2 pools price the others (symbols or addresses; default: the
    # dex hubs). Three or more, so that the median outvotes one whose oracle moved alone.
    reference_assets: Annotated[list[str], NoDecode] = Field(default_factory=list, max_length=32)
    # A pool whose reference side is worth less than this (in the market's base currency, USD)
    # is no witness: drained or tiny pools say nothing about the market.
    min_pool_liquidity: Float = Field(100_000, ge=0, le=1e15)
    assets: dict[str, OracleGuardAsset] = Field(default_factory=dict)

    _split_refs = field_validator("reference_assets", mode="before")(_comma_list)


class AccountConfig(_Section):
    keystore: FilePath | None = None


class MetricsConfig(_Section):
    host: str = Field("127.0.0.1", min_length=1, max_length=253)
    port: Int = Field(9108, ge=0, le=65535)


class RiskConfig(_Section):
    """``keeper risk`` and the daemon's stress gauges (see the README's "Risk lab")."""

    # Daemon gauges every N blocks (0: off).
    refresh_blocks: Int = Field(25, ge=0, le=1_000_000)
    levels: Annotated[list[Float], NoDecode] = Field(
        default_factory=lambda: [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6])
    # Assets that do not move with the others in the joint shock (empty: priced within 5% of 1).
    stables: Annotated[list[Address], NoDecode] = Field(default_factory=list)
    horizon_days: Float = Field(7.0, gt=0, le=3650)
    paths: Int = Field(10_000, ge=100, le=10_000_000)
    seed: Int = Field(1, ge=0, le=2**32 - 1)
    # Student-t tails with this many degrees of freedom (> 2); unset: normal.
    tail_df: Float | None = Field(None, gt=2, le=1000)
    # How far back the oracle's AnswerUpdated history is read for volatility (blocks).
    history_blocks: Int = Field(200_000, ge=0, le=50_000_000)
    # Annualised volatility used where the oracle history is too short to estimate one.
    default_vol: Float = Field(0.8, gt=0, le=20)
    pass_through: Float = Field(1.0, ge=0, le=1)
    gas_per_liquidation: Int = Field(600_000, gt=0, le=30_000_000)
    gas_price_gwei: Float = Field(20.0, ge=0, le=100_000)
    profit_accounts: Int = Field(2_000, ge=1, le=1_000_000)

    _split_levels = field_validator("levels", "stables", mode="before")(_comma_list)

    @field_validator("levels")
    @classmethod
    def _levels_are_drops(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < x < 1 for x in v):
            raise ValueError("levels are price drops between 0 and 1 (0.2 = -20%)")
        return v


class StateConfig(_Section):
    sqlite: Annotated[Path, AfterValidator(_sqlite_file)] = Path("state/keeper.sqlite")


class Secrets(_Section):
    """Read from the environment only; never printed (SecretStr)."""

    private_key: SecretStr | None = None
    keystore_password: SecretStr | None = None


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What one ``load_config`` call reads: the file and the environment."""

    path: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


_inputs: ContextVar[_Inputs | None] = ContextVar("keeper_config_inputs", default=None)


class KeeperConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False,
        extra="forbid", frozen=True,
    )

    # The devnet, as chain_id may be left out there.
    network: NetworkConfig = NetworkConfig.model_validate({})
    aave: AaveConfig = AaveConfig()
    dex: DexConfig = DexConfig()
    scanner: ScannerConfig = ScannerConfig()
    executor: ExecutorConfig = ExecutorConfig()
    account: AccountConfig = AccountConfig()
    oracle_guard: OracleGuardConfig = OracleGuardConfig()
    metrics: MetricsConfig = MetricsConfig()
    state: StateConfig = StateConfig()
    risk: RiskConfig = RiskConfig()
    cluster: ClusterConfig = ClusterConfig()
    secrets: Secrets = Secrets()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest priority first: arguments, secrets, environment, the TOML file."""
        inputs = _inputs.get() or _Inputs()
        return (init_settings, SecretsSource(settings_cls, inputs.environ),
                EnvSource(settings_cls, inputs.environ),
                TomlFileSource(settings_cls, toml_file=inputs.path))

def _loc_part(p: object) -> str:
    s = str(p)
    return s if s.isprintable() and s.strip() == s and s else repr(s)


def _first_error(exc: ValidationError) -> str:
    # A bad value first: a missing chain id is often the consequence (a typo in ws_url makes
    # the network look like it is not the devnet), seldom the cause.
    errors = sorted(exc.errors(), key=lambda e: e["type"] == "missing")
    err = errors[0]
    loc = ".".join(_loc_part(p) for p in err["loc"]) or "(root)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required" + (" off the devnet: the id of the chain the keeper signs for"
                            if loc == "network.chain_id" else "")
    elif ("input" in err and not isinstance(err["input"], dict | Path)
          and loc.split(".")[0] != "secrets" and repr(str(err["input"])) not in msg):
        msg += f" (got {one_line(repr(err['input']), 80)})"
    more = len(errors) - 1
    return one_line(f"{loc}: {msg}", 400) + (f" (and {more} more)" if more else "")


@contextmanager
def _reading(inputs: _Inputs) -> Iterator[None]:
    token = _inputs.set(inputs)
    try:
        yield
    finally:
        _inputs.reset(token)


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> KeeperConfig:
    """Load, merge with the environment and validate; raise ConfigError with one line."""
    if path is not None:
        # The TOML source skips what is not a file; a missing or odd path is an error here.
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        if not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ConfigError(f"cannot read config file {path}: {kind}")
    env = dict(os.environ if environ is None else environ)
    try:
        with _reading(_Inputs(path, env)):
            return KeeperConfig()
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(one_line(str(exc))) from None
