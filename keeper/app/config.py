"""Configuration: a TOML file per network, validated at start-up, overridden by environment.

Environment variables with the prefix ``KEEPER_`` override the file; nested fields use ``__``
(``KEEPER_EXECUTOR__DRY_RUN=true``). Secrets (the signing key, the keystore password) are never
read from the TOML file: only from the environment or from a file named in the environment.
Every validation problem becomes one ``ConfigError`` line naming the field.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)

from keeper.errors import ConfigError

ENV_PREFIX = "KEEPER_"
SECRET_KEYS = ("private_key", "keystore_password")


def _address(v: str) -> str:
    s = v.lower()
    if len(s) != 42 or not s.startswith("0x") or any(c not in "0123456789abcdef" for c in s[2:]):
        raise ValueError(f"not a 0x-prefixed 20-byte hex address: {v!r}")
    return s


def _url(v: str) -> str:
    if not v.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError(f"not an http(s):// or ws(s):// URL: {v!r}")
    return v


Address = Annotated[str, AfterValidator(_address)]
Url = Annotated[str, AfterValidator(_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkConfig(_Section):
    name: str = "devnet"
    chain_id: int = Field(31337, gt=0)
    rpc_urls: list[Url] = Field(default_factory=list)
    ws_url: Url | None = None
    request_timeout: float = Field(10.0, gt=0, le=300)
    # Seconds between blocks: plans are computed for the next block's timestamp.
    block_time: int = Field(12, ge=1, le=600)
    # devnet only: read the RPC URL and every address from `keeper devnet up`'s manifest
    devnet_manifest: Path | None = None


class AaveConfig(_Section):
    pool_addresses_provider: Address | None = None
    start_block: int = Field(0, ge=0)
    rules: Literal["v3.0", "v3.3"] = "v3.0"


class DexConfig(_Section):
    """Where liquidated collateral is swapped: a Uniswap V2-style factory (or a fork's)."""

    uniswap_v2_factory: Address | None = None
    # The factory's pair init-code hash (Uniswap V2's by default; forks differ).
    pair_init_code_hash: str = "0x96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"
    # Intermediate tokens for two-hop routes (e.g. WETH, USDC).
    hubs: list[Address] = Field(default_factory=list)
    # The reserve whose oracle price prices the native coin (WETH on Ethereum).
    native_asset: Address | None = None


class ScannerConfig(_Section):
    backfill_chunk_blocks: int = Field(5_000, gt=0, le=1_000_000)
    poll_interval: float = Field(1.0, gt=0, le=60)
    confirm_batch_size: int = Field(500, gt=0, le=5_000)


class ExecutorConfig(_Section):
    dry_run: bool = False
    kill_switch: bool = False
    liquidator: Address | None = None
    min_profit_usd: float = Field(1.0, ge=0)
    # How much worse than planned the on-chain profit may come out before the contract reverts.
    profit_tolerance_bps: int = Field(100, ge=0, le=10_000)
    priority_fee_share: float = Field(0.1, ge=0, le=1)
    max_priority_fee_gwei: float = Field(50.0, ge=0)
    max_fee_gwei: float = Field(500.0, gt=0)
    gas_budget_per_hour_eth: float = Field(0.5, ge=0)
    max_consecutive_failures: int = Field(5, gt=0)
    receipt_timeout: float = Field(60.0, gt=0)
    replace_after_blocks: int = Field(3, gt=0)
    # Blocks on top of the receipt before a transaction counts as mined (1: no reorg check).
    confirmations: int = Field(2, ge=1, le=64)
    poll_interval: float = Field(0.5, gt=0, le=60)
    gas_margin_percent: int = Field(20, ge=0, le=200)
    relay_blocks_ahead: int = Field(1, ge=1, le=25)
    # Backrun pending oracle updates seen in the mempool (needs a WebSocket URL): liquidate in
    # the same block as the price move, right after it.
    backrun_oracle_updates: bool = False
    private_relay_url: Url | None = None


class AccountConfig(_Section):
    keystore: Path | None = None


class MetricsConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)


class StateConfig(_Section):
    sqlite: Path = Path("state/keeper.sqlite")


class Secrets(_Section):
    """Read from the environment only; never printed (SecretStr)."""

    private_key: SecretStr | None = None
    keystore_password: SecretStr | None = None


class KeeperConfig(_Section):
    network: NetworkConfig = NetworkConfig()
    aave: AaveConfig = AaveConfig()
    dex: DexConfig = DexConfig()
    scanner: ScannerConfig = ScannerConfig()
    executor: ExecutorConfig = ExecutorConfig()
    account: AccountConfig = AccountConfig()
    metrics: MetricsConfig = MetricsConfig()
    state: StateConfig = StateConfig()
    secrets: Secrets = Secrets()


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """KEEPER_SECTION__FIELD=value → {"section": {"field": value}}; lists as comma lists."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, field = key[len(ENV_PREFIX):].lower().partition("__")
        if section == "secrets":
            continue
        parsed: Any = value
        if field in ("rpc_urls", "hubs"):
            parsed = [v.strip() for v in value.split(",") if v.strip()]
        out.setdefault(section, {})[field] = parsed
    return out


def _read_secret(environ: dict[str, str], name: str) -> str | None:
    env = ENV_PREFIX + name.upper()
    if environ.get(env):
        return environ[env]
    file_var = env + "_FILE"
    if environ.get(file_var):
        path = Path(environ[file_var])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{file_var}: cannot read {path}: {exc.strerror}") from None
    return None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _deep_merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif "input" in err and not isinstance(err["input"], dict):
        msg += f" (got {err['input']!r})"
    more = len(exc.errors()) - 1
    return f"{loc}: {msg}" + (f" (and {more} more)" if more else "")


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> KeeperConfig:
    """Load, merge with the environment and validate; raise ConfigError with one line."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if "secrets" in data or any(k in SECRET_KEYS for s in data.values() if isinstance(s, dict) for k in s):
        raise ConfigError(f"{path}: secrets are read only from the environment "
                          "(KEEPER_PRIVATE_KEY, KEEPER_KEYSTORE_PASSWORD[_FILE]), never from the config file")
    data = _deep_merge(data, _env_overrides(env))
    data["secrets"] = {k: v for k in SECRET_KEYS if (v := _read_secret(env, k)) is not None}
    try:
        cfg = KeeperConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    return cfg
