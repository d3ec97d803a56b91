"""What planning needs that the book does not hold, read in one JSON-RPC batch per plan.

The batch carries the node's latest header (the next block's timestamp and base fee follow
from it), the AMM reserves of the pairs the user's assets can route through, the Pool's
flash-loan premium and the funding of our contract, and on Aave 3.1+ each of the user's
reserves' liquidation grace period and virtual underlying balance (``PoolLimits``). With
Uniswap V3 configured, the V3 pools of the same pairs (every fee tier) are read alongside, in
one Multicall3 batch by ``V3PoolReader`` (keeper.protocols.uniswap_v3.pool_state).

Why the node's header and not the sync's: the book applies a block some milliseconds (after a
burst, blocks) after the node has it, and a plan must be exact for the second it is mined in
(interest accrues to the second; a full liquidation planned one second early leaves dust and
Aave v3.3+ reverts it, and the gas trace runs at that second). In the same batch it costs no
extra round trip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from keeper.chain.abi import Function
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import hex_to_int
from keeper.domain.amm import sort_tokens
from keeper.domain.fees import next_base_fee
from keeper.domain.liquidation import NO_LIMITS, AaveRules, PoolLimits
from keeper.domain.quote import needed_pairs
from keeper.domain.uniswap_v3.pool import PoolSnapshot
from keeper.errors import RpcError
from keeper.pipeline.pair_search import Funding
from keeper.protocols.erc20 import balance_of
from keeper.protocols.uniswap_v2.pair import Pair, decode_reserves, reserves_calls, sorted_pairs
from keeper.protocols.uniswap_v3.pool_address import UniswapV3Venue
from keeper.protocols.uniswap_v3.pool_state import V3PoolReader

_FLASHLOAN_PREMIUM_TOTAL = "0x074b2e43"  # Pool.FLASHLOAN_PREMIUM_TOTAL()
# Aave 3.1+ Pool views (absent from the v3.0 ABI the keeper ships).
_GRACE_PERIOD = Function("getLiquidationGracePeriod", ("address",), ("uint40",))
_VIRTUAL_BALANCE = Function("getVirtualUnderlyingBalance", ("address",), ("uint128",))

RpcCall = tuple[str, list[Any]]


@dataclass(frozen=True, slots=True)
class Venue:
    """Where planning reads: the Pool, our contract, the AMM and each reserve's aToken."""

    pool: str
    liquidator: str
    uniswap_v2_factory: str
    pair_init_code_hash: bytes
    hubs: tuple[str, ...]
    a_tokens: Mapping[str, str]  # reserve asset -> its aToken (lendable liquidity lives there)
    uniswap_v3: UniswapV3Venue | None = None  # None: plan over Uniswap V2 only
    # The account that sends our liquidations: its nonce, read with the pools, says which of
    # our transactions those reads already show (None: not read).
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class NextBlock:
    """The block a transaction sent now is meant for: its timestamp and base fee."""

    timestamp: int
    base_fee: int


@dataclass(frozen=True, slots=True)
class Gathered:
    """Everything ``plan_liquidation`` takes besides the book's account and market."""

    next_block: NextBlock
    reserves: dict[Pair, tuple[int, int]]
    funding: Funding
    limits: PoolLimits = NO_LIMITS
    v3_pools: tuple[PoolSnapshot, ...] = field(default_factory=tuple)
    header: Mapping[str, Any] | None = None  # the node's latest header it was read with
    sender_nonce: int | None = None  # the venue's sender's mined nonce at the same block


@dataclass(frozen=True, slots=True)
class FundingSource:
    """Where the funding is read: the Pool, our contract, and each debt asset's aToken."""

    pool: str
    liquidator: str
    a_tokens: Mapping[str, str]
    """Debt asset → its aToken (which holds the reserve's lendable underlying)."""


def next_block(header: Mapping[str, Any], *, block_time: int | None, now: float) -> NextBlock:
    """The block after ``header`` (an eth_getBlockByNumber answer), which plans are made for.

    With a known slot time the next block's stamp is exact; without one, anvil-style
    wall-clock stamps (``now``) are the best guess.
    """
    if not isinstance(header, Mapping):
        raise RpcError(f"eth_getBlockByNumber: expected a block, got {header!r}")
    head_ts = int(header["timestamp"], 16)
    timestamp = head_ts + block_time if block_time is not None else max(int(now), head_ts + 1)
    base_fee = next_base_fee(int(header.get("baseFeePerGas", "0x0"), 16),
                             int(header["gasUsed"], 16), int(header["gasLimit"], 16))
    return NextBlock(timestamp, base_fee)


def funding_calls(source: FundingSource, block: str = "latest") -> list[RpcCall]:
    """FLASHLOAN_PREMIUM_TOTAL, then per debt asset (sorted) our balance and its liquidity."""
    calls: list[RpcCall] = [
        ("eth_call", [{"to": source.pool, "data": _FLASHLOAN_PREMIUM_TOTAL}, block])]
    for asset in sorted(source.a_tokens):
        calls.append(balance_of(asset, source.liquidator, block))
        calls.append(balance_of(asset, source.a_tokens[asset], block))
    return calls


def decode_funding(source: FundingSource, results: Sequence[Any]) -> Funding:
    """The answers to ``funding_calls(source)``, in their order."""
    assets = sorted(source.a_tokens)
    values = [int(str(r), 16) for r in results]
    own = {a: values[1 + 2 * i] for i, a in enumerate(assets)}
    liquidity = {a: values[2 + 2 * i] for i, a in enumerate(assets)}
    return Funding(flash_premium_bps=values[0], own_balances=own, flash_liquidity=liquidity)


async def read_funding(rpc: JsonRpc, source: FundingSource, block: str = "latest") -> Funding:
    """FLASHLOAN_PREMIUM_TOTAL, our contract's balances and the reserves' liquidity: one batch."""
    return decode_funding(source, await rpc.batch(funding_calls(source, block)))


def limits_calls(pool: str, assets: Sequence[str], block: str = "latest") -> list[RpcCall]:
    """Per asset (in the given order): its grace period's end, then its virtual balance."""
    return [("eth_call", [{"to": pool, "data": fn.encode_hex(asset)}, block])
            for asset in assets for fn in (_GRACE_PERIOD, _VIRTUAL_BALANCE)]


def decode_limits(assets: Sequence[str], results: Sequence[Any]) -> PoolLimits:
    """The answers to ``limits_calls(pool, assets)``, in their order."""
    values = [int(str(r), 16) for r in results]
    return PoolLimits(
        grace_period_until={a: values[2 * i] for i, a in enumerate(assets)},
        virtual_balances={a: values[2 * i + 1] for i, a in enumerate(assets)})


async def gather(rpc: JsonRpc, venue: Venue, assets: Sequence[str], *,
                 block_time: int | None, rules: AaveRules = AaveRules.V3_0,
                 v3_reader: V3PoolReader | None = None) -> Gathered:
    """What planning a user with ``assets`` needs for the next block: one batch (and, with
    ``venue.uniswap_v3`` and a ``v3_reader``, the V3 pools' Multicall3 batch beside it).

    Only the user's own assets can be seized or repaid, so only their pools, funding and (on
    3.1+) grace periods and virtual balances are read.
    """
    keys = sorted_pairs(needed_pairs(assets, assets, hubs=list(venue.hubs)))
    source = FundingSource(venue.pool, venue.liquidator,
                           {a: venue.a_tokens[a] for a in assets if a in venue.a_tokens})
    limited = list(assets) if rules.has_grace_period else []
    calls: list[RpcCall] = [("eth_getBlockByNumber", ["latest", False])]
    calls += reserves_calls(venue.uniswap_v2_factory, keys, init_code_hash=venue.pair_init_code_hash)
    calls += limits_calls(venue.pool, limited)
    calls += funding_calls(source)
    if venue.sender is not None:
        calls.append(("eth_getTransactionCount", [venue.sender, "latest"]))
    v3 = venue.uniswap_v3
    if v3 is not None and v3_reader is not None:
        # Both reads at "latest" side by side; a block between them is caught like any other
        # change between planning and mining (simulation before sending).
        (header, *results), v3_pools = await asyncio.gather(
            rpc.batch(calls), v3_reader.read(v3.pools(keys)))
    else:
        (header, *results), v3_pools = await rpc.batch(calls), []
    n_pairs, n_limits = len(keys), 2 * len(limited)
    sender_nonce = None
    if venue.sender is not None:
        sender_nonce = hex_to_int(results.pop(), "eth_getTransactionCount")
    return Gathered(
        next_block=next_block(header, block_time=block_time, now=time.time()),
        reserves=decode_reserves(keys, results[:n_pairs]),
        funding=decode_funding(source, results[n_pairs + n_limits:]),
        limits=decode_limits(limited, results[n_pairs:n_pairs + n_limits])
        if limited else NO_LIMITS,
        v3_pools=tuple(v3_pools),
        header=header,
        sender_nonce=sender_nonce,
    )


def narrowed(gathered: Gathered, assets: Sequence[str], hubs: Sequence[str]) -> Gathered:
    """``gathered`` (read for a superset of ``assets``) as a gather for ``assets`` alone would
    have read it: only their pools, funding and limits, so that a plan made on it, and its
    cache key, are the same."""
    wanted = {a.lower() for a in assets}
    keys = needed_pairs(assets, assets, hubs=list(hubs))
    funding = gathered.funding
    limits = gathered.limits
    return replace(
        gathered,
        reserves={p: r for p, r in gathered.reserves.items() if p in keys},
        funding=replace(
            funding,
            own_balances={a: b for a, b in funding.own_balances.items() if a.lower() in wanted},
            flash_liquidity=None if funding.flash_liquidity is None else {
                a: b for a, b in funding.flash_liquidity.items() if a.lower() in wanted}),
        limits=limits if limits is NO_LIMITS else replace(
            limits,
            grace_period_until={a: t for a, t in limits.grace_period_until.items()
                                if a.lower() in wanted},
            virtual_balances=None if limits.virtual_balances is None else {
                a: b for a, b in limits.virtual_balances.items() if a.lower() in wanted}),
        v3_pools=tuple(p for p in gathered.v3_pools if sort_tokens(p.token0, p.token1) in keys))
