"""``Pool.getUserAccountData``: its calldata, its answer, and a batched read through Multicall3.

The call has one argument and six words of answer, so both ways are written out by hand: the
scanner reads thousands of accounts per block and an ABI codec would cost more than the node.
The unit tests check the selector and the layout against eth-abi.
"""

from __future__ import annotations

from collections.abc import Sequence

from keeper.chain.multicall import MULTICALL3, address_word, aggregate3
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import BlockId
from keeper.domain.account import AccountData

GET_USER_ACCOUNT_DATA_SELECTOR = bytes.fromhex("bf92857c")
"""``getUserAccountData(address)``; the unit tests check it against the keccak of the signature."""

_ANSWER_BYTES = 6 * 32


def get_user_account_data_calldata(user: str) -> bytes:
    """``Pool.getUserAccountData(user)`` calldata, without an ABI encoder (it is one word)."""
    return GET_USER_ACCOUNT_DATA_SELECTOR + address_word(user)


def decode_account_data(data: bytes) -> AccountData:
    """``getUserAccountData``'s six words (``has_zero_ltv_collateral`` is not returned: False)."""
    if len(data) < _ANSWER_BYTES:
        raise ValueError(f"getUserAccountData answer of {len(data)} bytes, expected 192")
    w = [int.from_bytes(data[i : i + 32], "big") for i in range(0, _ANSWER_BYTES, 32)]
    return AccountData(
        total_collateral_base=w[0],
        total_debt_base=w[1],
        available_borrows_base=w[2],
        current_liquidation_threshold=w[3],
        ltv=w[4],
        health_factor=w[5],
        has_zero_ltv_collateral=False,
    )


async def read_account_data(
    rpc: JsonRpc,
    pool: str,
    users: Sequence[str],
    *,
    block: BlockId = "latest",
    chunk: int = 500,
    multicall: str = MULTICALL3,
) -> list[AccountData | None]:
    """``Pool.getUserAccountData`` of every user through Multicall3; None where it reverted."""
    calls = [(pool, get_user_account_data_calldata(u)) for u in users]
    results = await aggregate3(rpc, calls, block=block, chunk=chunk, address=multicall)
    return [
        decode_account_data(data) if ok and len(data) >= _ANSWER_BYTES else None
        for ok, data in results
    ]
