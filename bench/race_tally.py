"""Who liquidated what in the race, from the chain itself: the Pool's ``LiquidationCall`` logs
and every receipt from the crash block to the end, valued at the crash block's oracle prices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet.manifest import Manifest

LIQUIDATION_CALL = artifacts.aave("Pool").abi.event("LiquidationCall")
BASE_UNIT = 10**8  # the oracle's USD unit


@dataclass(slots=True)
class Side:
    """One keeper's share of the race, as the chain records it."""

    liquidations: int = 0
    debt_usd: float = 0.0
    bonus_usd: float = 0.0  # collateral received minus debt repaid, at the oracle's prices
    gas_usd: float = 0.0
    paid: int = 0  # liquidations whose bonus paid their transaction's gas
    # Its transactions (hashes) holding a liquidation whose bonus did not pay its gas share.
    at_a_loss: set[str] = field(default_factory=set)
    txs: int = 0
    reverted: int = 0
    # Gas its transactions used in the blocks after the crash block, to the last liquidation.
    block_gas: int = 0
    first_block: dict[str, int] = field(default_factory=dict)  # user -> first liquidation block

    def blocks_after(self, crash_block: int) -> list[int]:
        return sorted(b - crash_block for b in self.first_block.values())


@dataclass(frozen=True, slots=True)
class Tally:
    sides: dict[str, Side]
    others: int  # liquidations by anyone else (none expected)
    last_block: int  # of the last liquidation, or the crash block
    space: int = 0  # the block gas limits of the blocks after the crash block to last_block
    used: int = 0  # the gas all transactions used in them


async def tally(rpc: HttpRpc, m: Manifest, crash_block: int, end_block: int,
                senders: dict[str, set[str]], prices: dict[str, int]) -> Tally:
    """``senders``: keeper name -> the addresses that act for it (its EOA, its contract)."""
    sides = {name: Side() for name in senders}
    owner = {a.lower(): name for name, addrs in senders.items() for a in addrs}
    price = {r.address: (prices[r.symbol], 10**r.decimals) for r in m.reserves}
    logs = await rpc.call("eth_getLogs", [{"address": m.pool, "fromBlock": hex(crash_block),
                                           "toBlock": hex(end_block),
                                           "topics": [LIQUIDATION_CALL.topic0]}], timeout=120)
    others, last = 0, crash_block
    bonus_by_tx: dict[str, list[tuple[Side, float]]] = {}
    for lg in logs:
        ev = LIQUIDATION_CALL.decode(lg["topics"], lg["data"])
        side = sides.get(owner.get(str(ev["liquidator"]).lower(), ""))
        if side is None:
            others += 1
            continue
        block = int(lg["blockNumber"], 16)
        last = max(last, block)
        debt_p, debt_unit = price[str(ev["debtAsset"]).lower()]
        coll_p, coll_unit = price[str(ev["collateralAsset"]).lower()]
        debt = int(ev["debtToCover"]) * debt_p / debt_unit / BASE_UNIT
        side.liquidations += 1
        side.debt_usd += debt
        bonus = int(ev["liquidatedCollateralAmount"]) * coll_p / coll_unit / BASE_UNIT - debt
        side.bonus_usd += bonus
        bonus_by_tx.setdefault(str(lg["transactionHash"]).lower(), []).append((side, bonus))
        side.first_block.setdefault(str(ev["user"]).lower(), block)
    eth_usd = prices["WETH"] / BASE_UNIT
    space = used = 0
    for block in range(crash_block, end_block + 1):
        window = crash_block < block <= last
        if window:
            header = await rpc.call("eth_getBlockByNumber", [hex(block), False])
            space += int(header["gasLimit"], 16)
            used += int(header["gasUsed"], 16)
        for r in await rpc.call("eth_getBlockReceipts", [hex(block)]) or []:
            sender = sides.get(owner.get(str(r["from"]).lower(), ""))
            gas_usd = _count_receipt(sender, r, eth_usd)
            if sender is not None and window:
                sender.block_gas += int(r["gasUsed"], 16)
            tx_hash = str(r["transactionHash"]).lower()
            paid = bonus_by_tx.get(tx_hash, [])
            for side, bonus in paid:
                pays = bonus > gas_usd / len(paid)
                side.paid += pays
                if not pays:
                    side.at_a_loss.add(tx_hash)
    return Tally(sides, others, last, space, used)


def _count_receipt(side: Side | None, r: dict[str, Any], eth_usd: float) -> float:
    """The receipt's gas in USD, counted to ``side`` when it is one of the racers'."""
    gas_usd = int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16) / 1e18 * eth_usd
    if side is not None:
        side.txs += 1
        side.reverted += int(r["status"], 16) == 0
        side.gas_usd += gas_usd
    return gas_usd


def percentile(values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    xs = sorted(values)
    rank = max(1, -(-len(xs) * q // 100))
    return float(xs[int(rank) - 1])
