"""Uniswap V2 pairs: their CREATE2 address (no lookup) and their reserves, read in one batch.

The quoting math over those reserves is pure and lives in keeper.domain (amm, quote); this
module is the only place that knows how to find a pair and ask it for ``getReserves``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eth_utils import keccak

from keeper.chain.rpc import JsonRpc
from keeper.domain.amm import sort_tokens

UNISWAP_V2_PAIR_INIT_CODE_HASH = bytes.fromhex(
    "96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"
)
"""keccak256 of UniswapV2Pair's creation code, as UniswapV2Library.pairFor hard-codes it: Uniswap
V2's own factory on every chain, and the npm @uniswap/v2-core build the devnet deploys. Forks
(Sushi, ...) have their own."""

_GET_RESERVES = "0x" + keccak(text="getReserves()")[:4].hex()

Pair = tuple[str, str]
RpcCall = tuple[str, list[Any]]


def pair_address(factory: str, token_a: str, token_b: str,
                 init_code_hash: bytes = UNISWAP_V2_PAIR_INIT_CODE_HASH) -> str:
    """The CREATE2 address of a Uniswap V2 pair (UniswapV2Library.pairFor), lower case."""
    token0, token1 = sort_tokens(token_a.lower(), token_b.lower())
    salt = keccak(bytes.fromhex(token0[2:]) + bytes.fromhex(token1[2:]))
    digest = keccak(b"\xff" + bytes.fromhex(factory.lower()[2:]) + salt + init_code_hash)
    return "0x" + digest[-20:].hex()


def sorted_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    """The distinct pairs, each keyed ``(token0, token1)`` as getReserves answers, in order."""
    return sorted({sort_tokens(a.lower(), b.lower()) for a, b in pairs})


def reserves_calls(factory: str, keys: Sequence[Pair], *, init_code_hash: bytes,
                   block: str = "latest") -> list[RpcCall]:
    """One ``getReserves`` eth_call per pair of ``keys`` (from ``sorted_pairs``)."""
    return [("eth_call", [{"to": pair_address(factory, a, b, init_code_hash),
                           "data": _GET_RESERVES}, block])
            for a, b in keys]


def decode_reserves(keys: Sequence[Pair], results: Sequence[Any]) -> dict[Pair, tuple[int, int]]:
    """The reserves of every pair that exists, keyed sorted.

    A pair that was never created has no code, so its eth_call returns empty data: it is left
    out (the quoter then has no route through it).
    """
    out: dict[Pair, tuple[int, int]] = {}
    for key, raw in zip(keys, results, strict=True):
        data = bytes.fromhex(str(raw).removeprefix("0x"))
        if len(data) < 64:
            continue
        out[key] = (int.from_bytes(data[0:32], "big"), int.from_bytes(data[32:64], "big"))
    return out


async def load_pair_reserves(
    rpc: JsonRpc,
    factory: str,
    pairs: Iterable[Pair],
    *,
    init_code_hash: bytes = UNISWAP_V2_PAIR_INIT_CODE_HASH,
    block: str = "latest",
) -> dict[Pair, tuple[int, int]]:
    """``getReserves`` of every pair that exists, in one JSON-RPC batch, keyed sorted."""
    keys = sorted_pairs(pairs)
    calls = reserves_calls(factory, keys, init_code_hash=init_code_hash, block=block)
    return decode_reserves(keys, await rpc.batch(calls))
