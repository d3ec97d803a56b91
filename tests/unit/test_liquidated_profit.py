"""Each liquidation's realised profit comes from its own receipt (our contract's ``Liquidated``
event), not from the owner's balance over the block, which counts every liquidation in it."""

from __future__ import annotations

from typing import Any

from eth_abi import encode

from keeper.contracts import artifacts
from keeper.protocols.aave_v3.liquidator import CONTRACT_NAME, liquidated_profit

LIQUIDATOR = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20


def topic(address: str) -> str:
    return "0x" + "00" * 12 + address[2:]


def liquidated_log(user: str, profit: int, address: str = LIQUIDATOR) -> dict[str, Any]:
    event = artifacts.ours(CONTRACT_NAME).abi.event("Liquidated")
    data = encode(["uint256", "uint256", "uint256", "uint8"], [10**6, 2 * 10**6, profit, 1])
    return {"address": address, "topics": [event.topic0, topic(user), topic("0x" + "11" * 20),
                                           topic("0x" + "22" * 20)], "data": "0x" + data.hex()}


def test_the_profit_of_this_users_liquidation_by_our_contract() -> None:
    alice, bob = "0x" + "a1" * 20, "0x" + "b0" * 20
    receipt = {"logs": [{"address": OTHER, "topics": [], "data": "0x"},
                        liquidated_log(bob, 7),
                        liquidated_log(alice, 5, address=OTHER),  # not our contract
                        liquidated_log(alice, 42)]}
    assert liquidated_profit(receipt, LIQUIDATOR.upper().replace("0X", "0x"), alice) == 42
    assert liquidated_profit(receipt, LIQUIDATOR, bob) == 7


def test_no_event_is_none() -> None:
    assert liquidated_profit({"logs": []}, LIQUIDATOR, OTHER) is None
    assert liquidated_profit(None, LIQUIDATOR, OTHER) is None
