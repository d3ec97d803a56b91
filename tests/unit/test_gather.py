"""The gather: the next block after the node's latest, pools and funding, in one batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi import encode as abi_encode

from keeper.domain.fees import next_base_fee
from keeper.errors import RpcError
from keeper.pipeline.gather import Venue, gather, narrowed, next_block
from keeper.protocols.erc20 import balance_of
from keeper.protocols.uniswap_v2.pair import pair_address
from tests.unit.test_account import USDC, WBTC, WETH

GWEI = 10**9
POOL = "0x00000000000000000000000000000000000000a0"
LIQUIDATOR = "0x00000000000000000000000000000000000000cc"
FACTORY = "0x00000000000000000000000000000000000000fa"
A_USDC = "0x00000000000000000000000000000000000000a5"
VENUE = Venue(POOL, LIQUIDATOR, FACTORY, bytes(32), (WETH,), {USDC: A_USDC})
TS = 1_700_000_000
LATEST = {"number": hex(100), "timestamp": hex(TS), "baseFeePerGas": hex(10 * GWEI),
          "gasUsed": hex(20_000_000), "gasLimit": hex(30_000_000)}


def word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


class FakeRpc:
    """Answers a batch from a table keyed by (method, to or block tag); records each batch."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.batches: list[list[tuple[str, Any]]] = []

    async def call(self, method: str, params: Sequence[Any] = (), *,
                   timeout: float | None = None) -> Any:
        raise AssertionError("gather makes no single calls")

    async def batch(self, calls: Sequence[tuple[str, Any]], *, timeout: float | None = None,
                    return_exceptions: bool = False) -> list[Any]:
        self.batches.append(list(calls))
        out = []
        for method, params in calls:
            key = params[0]["to"] + params[0]["data"][10:] if method == "eth_call" else params[0]
            out.append(self.answers[(method, key)])
        return out


def test_next_base_fee_follows_eip1559() -> None:
    assert next_base_fee(8 * GWEI, 15_000_000, 30_000_000) == 8 * GWEI  # at target
    assert next_base_fee(8 * GWEI, 30_000_000, 30_000_000) == 9 * GWEI  # full: +12.5%
    assert next_base_fee(8 * GWEI, 0, 30_000_000) == 7 * GWEI  # empty: -12.5%
    assert next_base_fee(1, 15_000_001, 30_000_000) == 2  # at least one wei up


def test_next_block_is_one_slot_after_the_head_or_now() -> None:
    fee = next_base_fee(10 * GWEI, 20_000_000, 30_000_000)
    assert next_block(LATEST, block_time=12, now=0).timestamp == TS + 12
    assert next_block(LATEST, block_time=12, now=0).base_fee == fee
    assert next_block(LATEST, block_time=None, now=TS + 5.7).timestamp == TS + 5
    assert next_block(LATEST, block_time=None, now=0).timestamp == TS + 1
    pre_london = {k: v for k, v in LATEST.items() if k != "baseFeePerGas"}
    assert next_block(pre_london, block_time=12, now=0).base_fee == next_base_fee(0, 20_000_000, 30_000_000)
    with pytest.raises(RpcError):
        next_block(None, block_time=12, now=0)  # type: ignore[arg-type]


def _answers() -> dict[tuple[str, str], Any]:
    weth_usdc = pair_address(FACTORY, WETH, USDC, bytes(32))
    return {
        ("eth_getBlockByNumber", "latest"): LATEST,
        ("eth_call", weth_usdc): "0x" + abi_encode(["uint112", "uint112", "uint32"],
                                                    [5 * 10**6, 7 * 10**18, 0]).hex(),
        ("eth_call", pair_address(FACTORY, WBTC, USDC, bytes(32))): "0x",  # never created
        ("eth_call", pair_address(FACTORY, WBTC, WETH, bytes(32))): "0x",
        ("eth_call", POOL): word(5),  # FLASHLOAN_PREMIUM_TOTAL
        ("eth_call", USDC + LIQUIDATOR[2:].rjust(64, "0")): word(123),
        ("eth_call", USDC + A_USDC[2:].rjust(64, "0")): word(456),
    }


async def test_one_batch_for_the_header_the_pools_and_the_funding() -> None:
    rpc = FakeRpc(_answers())
    got = await gather(rpc, VENUE, [WBTC, USDC, WETH], block_time=12)
    assert len(rpc.batches) == 1
    assert rpc.batches[0][0] == ("eth_getBlockByNumber", ["latest", False])
    assert got.next_block == next_block(LATEST, block_time=12, now=0)
    # Three pairs asked (WBTC/USDC, WBTC/WETH, USDC/WETH); only the one that exists answers.
    assert got.reserves == {(USDC, WETH): (5 * 10**6, 7 * 10**18)}
    assert got.funding.flash_premium_bps == 5
    assert got.funding.own_balances == {USDC: 123}
    assert got.funding.flash_liquidity == {USDC: 456}


def test_balance_of_is_the_abi_encoding() -> None:
    method, (call, block) = balance_of(USDC, LIQUIDATOR.upper().replace("0X", "0x"), "0x10")
    assert (method, call["to"], block) == ("eth_call", USDC, "0x10")
    assert call["data"] == "0x70a08231" + abi_encode(["address"], [LIQUIDATOR]).hex()


async def test_on_31_and_later_the_batch_reads_each_assets_grace_period_and_virtual_balance(
) -> None:
    from keeper.domain.liquidation import AaveRules
    from keeper.pipeline.gather import decode_limits, limits_calls

    calls = limits_calls(POOL, [USDC, WETH])
    assert [c[1][0]["to"] for c in calls] == [POOL] * 4
    selectors = [c[1][0]["data"][:10] for c in calls]
    assert selectors[0] == selectors[2] and selectors[1] == selectors[3]
    assert selectors[0] != selectors[1]
    assert calls[0][1][0]["data"].endswith(USDC[2:]) and calls[2][1][0]["data"].endswith(WETH[2:])
    limits = decode_limits([USDC, WETH], [word(TS + 60), word(10**12), word(0), word(5 * 10**18)])
    assert limits.grace_period_until == {USDC: TS + 60, WETH: 0}
    assert limits.virtual_balances == {USDC: 10**12, WETH: 5 * 10**18}

    class PoolRpc(FakeRpc):
        async def batch(self, calls: Sequence[tuple[str, Any]], *, timeout: float | None = None,
                        return_exceptions: bool = False) -> list[Any]:
            pool_calls = [c for c in calls if c[0] == "eth_call" and c[1][0]["to"] == POOL
                          and c[1][0]["data"][:10] in selectors]
            rest = [c for c in calls if c not in pool_calls]
            answers = iter(await super().batch(rest))
            self.batches[-1] = list(calls)
            return [word(7) if c in pool_calls else next(answers) for c in calls]

    rpc = PoolRpc(_answers())
    v30 = await gather(rpc, VENUE, [WBTC, USDC, WETH], block_time=12)
    # v3.0 has neither: none asked, nothing checked.
    assert not [c for c in rpc.batches[0] if c[0] == "eth_call" and c[1][0]["to"] == POOL
                and c[1][0]["data"][:10] in selectors]
    assert v30.limits.virtual_balances is None and v30.limits.grace_period_until == {}
    v36 = await gather(rpc, VENUE, [WBTC, USDC, WETH], block_time=12, rules=AaveRules.V3_6)
    assert len(rpc.batches[1]) == len(rpc.batches[0]) + 6
    assert v36.limits.grace_period_until == {WBTC: 7, USDC: 7, WETH: 7}
    assert v36.funding == v30.funding and v36.reserves == v30.reserves


async def test_a_gather_for_more_assets_narrowed_is_the_gather_for_fewer() -> None:
    # The round's reads prefetched for every asset of the market, narrowed to an account's
    # assets, are what reading for those assets alone gives: same pools, funding, header.
    venue = Venue(POOL, LIQUIDATOR, FACTORY, bytes(32), (WETH,),
                  {USDC: A_USDC, WBTC: "0x00000000000000000000000000000000000000b7"})
    answers = _answers() | {
        ("eth_call", WBTC + LIQUIDATOR[2:].rjust(64, "0")): word(9),
        ("eth_call", WBTC + "0x00000000000000000000000000000000000000b7"[2:].rjust(64, "0")):
            word(10),
    }
    everything = await gather(FakeRpc(answers), venue, [WBTC, USDC, WETH], block_time=12)
    assert everything.funding.own_balances == {USDC: 123, WBTC: 9}
    for assets in ([USDC, WETH], [USDC], [WBTC, WETH]):
        alone = await gather(FakeRpc(answers), venue, assets, block_time=12)
        assert narrowed(everything, assets, venue.hubs) == alone, assets
