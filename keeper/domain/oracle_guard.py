"""The oracle circuit breaker's decision, per asset and per block: halt, hold or resume.

An asset's liquidations are halted when its oracle price cannot be trusted this block:

* ``stale``: the feed's last update (``latestRoundData`` updatedAt) is older than its heartbeat;
* ``dex``: the oracle price is further than ``max_deviation_bps`` from the price the market
  (the DEX) gives the asset;
* ``jump``: the price moved further than ``max_deviation_bps`` within ``window_blocks`` blocks,
  and no DEX price confirms it.

A real crash moves the DEX with the oracle, so a jump the DEX agrees with is let through: the
keeper earns its money in exactly those minutes. An aggregator that moves alone (a bad report,
a manipulated feed) is held. A halted asset resumes after ``resume_after`` consecutive blocks
with no breach, or when the operator resets it (``reset``): a reset also waives the breaches
present at that moment until they clear once, as the operator has vouched for that price.

Prices are integers in the oracle's base currency (8 decimals for USD markets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

BPS = 10_000


class HaltReason(StrEnum):
    """Why an asset is halted (the ``reason`` label of ``keeper_oracle_guard_halted``)."""

    STALE = "stale"
    DEX = "dex"
    JUMP = "jump"


@dataclass(frozen=True, slots=True)
class GuardParams:
    """One asset's thresholds (``[oracle_guard]`` with its per-asset overrides)."""

    max_deviation_bps: int
    window_blocks: int
    heartbeat: int  # seconds; 0: no staleness check
    resume_after: int  # blocks with no breach before a halted asset resumes

    def __post_init__(self) -> None:
        if self.max_deviation_bps <= 0 or self.window_blocks < 0 or self.heartbeat < 0 \
                or self.resume_after < 1:
            raise ValueError(f"invalid oracle guard parameters: {self}")


@dataclass(frozen=True, slots=True)
class Reading:
    """What one block says about one asset."""

    block: int
    timestamp: int  # the block's
    price: int  # the protocol oracle's
    dex_price: int | None = None  # None: no pool to compare with
    updated_at: int | None = None  # the feed's last update; None: the source does not say


@dataclass(frozen=True, slots=True)
class AssetGuard:
    """One asset's breaker state; ``observe`` returns the next one."""

    history: tuple[tuple[int, int], ...] = ()  # (block, price) within the window
    halted: HaltReason | None = None
    halted_at: int | None = None
    agreeing_since: int | None = None  # first block of the current run without a breach
    waived: bool = False  # after a reset: breaches ignored until one block has none

    @property
    def is_halted(self) -> bool:
        return self.halted is not None


def deviation_bps(a: int, b: int) -> int:
    """|a - b| relative to b, in basis points (rounded up, so a breach is never missed);
    a non-positive reference counts as an infinite deviation."""
    if b <= 0:
        return BPS * BPS if a != b else 0
    return -(-abs(a - b) * BPS // b)


def breach(history: Sequence[tuple[int, int]], reading: Reading,
           params: GuardParams) -> HaltReason | None:
    """The first check ``reading`` fails (stale, then dex, then jump), or None."""
    if (params.heartbeat > 0 and reading.updated_at is not None
            and reading.timestamp - reading.updated_at > params.heartbeat):
        return HaltReason.STALE
    if reading.price <= 0:
        return HaltReason.DEX if reading.dex_price is not None else HaltReason.JUMP
    if reading.dex_price is not None:
        # The market is the witness: with it, only disagreement halts, however large the move.
        if deviation_bps(reading.price, reading.dex_price) > params.max_deviation_bps:
            return HaltReason.DEX
        return None
    oldest = reading.block - params.window_blocks
    for block, price in history:
        if oldest <= block < reading.block and \
                deviation_bps(reading.price, price) > params.max_deviation_bps:
            return HaltReason.JUMP
    return None


def observe(state: AssetGuard, reading: Reading, params: GuardParams) -> AssetGuard:
    """The state after ``reading`` (one per block; a block seen again or an older one after a
    reorg replaces what the history held from it on)."""
    kept = tuple((b, p) for b, p in state.history
                 if reading.block - params.window_blocks <= b < reading.block)
    reason = breach(kept, reading, params)
    history = (*kept, (reading.block, reading.price))
    if state.waived:
        return replace(state, history=history, waived=reason is not None)
    if reason is not None:
        if state.halted is None:
            return AssetGuard(history, reason, reading.block, None, False)
        return replace(state, history=history, halted=reason, agreeing_since=None)
    if state.halted is None:
        return replace(state, history=history)
    since = state.agreeing_since if state.agreeing_since is not None else reading.block
    if since > reading.block:  # a reorg took us back before the run began
        since = reading.block
    if reading.block - since + 1 >= params.resume_after:
        return AssetGuard(history)
    return replace(state, history=history, agreeing_since=since)


def reset(state: AssetGuard) -> AssetGuard:
    """The operator's reset: resume now, and ignore the present breach until it clears once."""
    return AssetGuard(history=(), waived=True) if state.is_halted else AssetGuard(history=())


def dex_price(reserve_asset: int, reserve_other: int, decimals_asset: int,
              decimals_other: int, price_other: int) -> int | None:
    """The asset's price implied by a pool with another asset and that asset's oracle price
    (both reserves in raw token units), or None for an empty pool."""
    if reserve_asset <= 0 or reserve_other <= 0 or price_other <= 0:
        return None
    unit_asset: int = 10**decimals_asset
    unit_other: int = 10**decimals_other
    return (reserve_other * unit_asset * price_other) // (reserve_asset * unit_other)


def median_price(prices: Sequence[int]) -> int | None:
    """The median of the routes' implied prices: one pool or one reference asset that moved
    alone cannot decide (the mean of the middle two for an even count)."""
    if not prices:
        return None
    s = sorted(prices)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2
