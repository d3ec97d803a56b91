"""Read the devnet's state as its tests and scenarios need it: oracle prices, account data,
token balances, Uniswap pool reserves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keeper.contracts import artifacts
from keeper.devnet.manifest import Manifest
from keeper.devnet.txs import TxSender
from keeper.devnet.users import token_address

_ERC20 = artifacts.aave("MintableERC20").abi
_POOL = artifacts.aave("Pool").abi
_ORACLE = artifacts.aave("AaveOracle").abi
_PAIR = artifacts.uniswap("UniswapV2Pair").abi


@dataclass(frozen=True, slots=True)
class AccountData:
    """Pool.getUserAccountData, in the oracle's base currency (USD, 8 decimals)."""

    user: str
    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    current_liquidation_threshold: int
    ltv: int
    health_factor: int


async def oracle_prices(tx: TxSender, m: Manifest) -> dict[str, int]:
    """Oracle prices by symbol (USD, 8 decimals)."""
    (raw,) = await tx.call(m.oracle, _ORACLE["getAssetsPrices"], [r.address for r in m.reserves])
    return {r.symbol: int(p) for r, p in zip(m.reserves, raw, strict=True)}


async def account_data(
    tx: TxSender, m: Manifest, users: Sequence[str], block: str = "latest"
) -> list[AccountData]:
    """getUserAccountData of every user, in multicalls of 500."""
    out: list[AccountData] = []
    fn = _POOL["getUserAccountData"]
    for i in range(0, len(users), 500):
        chunk = users[i:i + 500]
        rows = await tx.call_many([(m.pool, fn, (u,)) for u in chunk], block)
        out += [AccountData(u, *(int(x) for x in row)) for u, row in zip(chunk, rows, strict=True)]
    return out


async def balance_of(tx: TxSender, m: Manifest, symbol_or_token: str, who: str) -> int:
    (bal,) = await tx.call(token_address(m, symbol_or_token), _ERC20["balanceOf"], who)
    return int(bal)


async def raw_pair_reserves(tx: TxSender, pair: str) -> tuple[str, int, int]:
    """(token0, reserve0, reserve1) of a Uniswap V2 pair."""
    (token0,), (r0, r1, _ts) = await tx.call_many([
        (pair, _PAIR["token0"], ()), (pair, _PAIR["getReserves"], ())])
    return str(token0).lower(), int(r0), int(r1)


async def pair_reserves(tx: TxSender, m: Manifest, a: str, b: str) -> tuple[int, int]:
    """Reserves of the a/b pool as (reserve of a, reserve of b)."""
    token0, r0, r1 = await raw_pair_reserves(tx, m.pair(a, b))
    if token0 == m.reserve(a).address:
        return r0, r1
    return r1, r0
