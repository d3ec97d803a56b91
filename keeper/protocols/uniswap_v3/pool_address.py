"""The CREATE2 address of a Uniswap V3 pool (PoolAddress.computeAddress): no factory lookup;
and the set of pools (a factory, its fee tiers) planning reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_utils import keccak

from keeper.domain.amm import sort_tokens

UNISWAP_V3_POOL_INIT_CODE_HASH = bytes.fromhex(
    "e34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54"
)
"""keccak256 of UniswapV3Pool's creation code: Uniswap's own factory on every chain, and the npm
@uniswap/v3-core 1.0.1 build the devnet deploys (periphery's POOL_INIT_CODE_HASH)."""

FEE_TIERS = (500, 3000, 10000)
"""The tiers UniswapV3Factory enables at deployment (100 is added by governance on some
chains; pass it in where it exists)."""


def pool_address(factory: str, token_a: str, token_b: str, fee: int,
                 init_code_hash: bytes = UNISWAP_V3_POOL_INIT_CODE_HASH) -> str:
    """The pool of (token_a, token_b, fee) deployed by ``factory``, lower case."""
    token0, token1 = sort_tokens(token_a.lower(), token_b.lower())
    salt = keccak(bytes(12) + bytes.fromhex(token0[2:]) + bytes(12) + bytes.fromhex(token1[2:])
                  + fee.to_bytes(32, "big"))
    digest = keccak(b"\xff" + bytes.fromhex(factory.lower()[2:]) + salt + init_code_hash)
    return "0x" + digest[-20:].hex()


@dataclass(frozen=True, slots=True)
class UniswapV3Venue:
    """Where planning finds Uniswap V3 pools: a factory's CREATE2 pools in these fee tiers."""

    factory: str
    fee_tiers: tuple[int, ...] = FEE_TIERS
    init_code_hash: bytes = UNISWAP_V3_POOL_INIT_CODE_HASH

    def pools(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """Every tier's pool of every pair (existing or not: the reader drops absent ones)."""
        return [pool_address(self.factory, a, b, fee, self.init_code_hash)
                for a, b in pairs for fee in self.fee_tiers]
