"""The oracle guard from the config: ``[oracle_guard]`` → the pipeline's ``OracleGuard``."""

from __future__ import annotations

from keeper.app.config import KeeperConfig, OracleGuardAsset, OracleGuardConfig
from keeper.app.target import Target
from keeper.chain.rpc import JsonRpc
from keeper.domain.oracle_guard import BPS, GuardParams
from keeper.obs.metrics import Metrics
from keeper.pipeline.guard_resets import resets_dir
from keeper.pipeline.oracle_guard import DexSource, GuardSettings, OracleGuard

BASE_UNIT = 10**8
"""Aave V3 USD markets quote the base currency with 8 decimals."""


def guard_params(section: OracleGuardConfig, asset: OracleGuardAsset | None = None) -> GuardParams:
    """The section's thresholds, with ``asset``'s overrides where it has them."""
    o = asset or OracleGuardAsset()

    def pick(mine: float | int | None, default: float | int) -> float | int:
        return default if mine is None else mine

    return GuardParams(
        max_deviation_bps=max(1, round(pick(o.max_price_deviation, section.max_price_deviation)
                                       * BPS)),
        window_blocks=int(pick(o.deviation_window, section.deviation_window)),
        heartbeat=int(pick(o.heartbeat, section.heartbeat)),
        resume_after=int(pick(o.resume_after, section.resume_after)))


def guard_settings(cfg: KeeperConfig, target: Target) -> GuardSettings:
    """``[oracle_guard]`` resolved against where the keeper runs."""
    g = cfg.oracle_guard
    overrides = {key.strip().lower(): guard_params(g, o) if o.enabled else None
                 for key, o in g.assets.items()}
    refs = tuple(r.strip().lower() for r in g.reference_assets) or tuple(
        h.lower() for h in target.hubs)
    return GuardSettings(default=guard_params(g), overrides=overrides, references=refs,
                         resets=resets_dir(cfg.state.sqlite),
                         min_pool_base=round(g.min_pool_liquidity * BASE_UNIT))


def build_oracle_guard(cfg: KeeperConfig, target: Target, rpc: JsonRpc,
                       metrics: Metrics) -> OracleGuard | None:
    """The guard, or None when ``oracle_guard.enabled`` is false."""
    if not cfg.oracle_guard.enabled:
        return None
    dex = None if target.uniswap_v2_factory is None else DexSource(
        target.uniswap_v2_factory.lower(), target.pair_init_code_hash)
    return OracleGuard(rpc, guard_settings(cfg, target), metrics, dex=dex,
                       symbols=target.symbols)
