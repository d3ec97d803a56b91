"""Decoding of Aave V3 logs into typed events, and the scaled change each token event means."""

from __future__ import annotations

from eth_abi import encode

from keeper.chain.types import Log
from keeper.domain.wadray import RAY, ray_div, ray_mul
from keeper.protocols.aave_v3 import abis, decoding
from keeper.protocols.aave_v3 import events as ev

TOKEN = "0x" + "aa" * 20
ALICE = "0x" + "01" * 20
BOB = "0x" + "02" * 20


def _topic(addr: str) -> str:
    return "0x" + "00" * 12 + addr[2:]


def _log(topic0: str, topics: list[str], data: bytes, address: str = TOKEN) -> Log:
    return Log(address, (topic0, *topics), "0x" + data.hex(), 7, "0x" + "11" * 32,
               "0x" + "22" * 32, 3)


def _mint(value: int, increase: int, index: int) -> ev.ScaledMint:
    t0 = abis.a_token().event("Mint").topic0
    e = decoding.decode_log(_log(t0, [_topic(ALICE), _topic(BOB)],
                           encode(["uint256"] * 3, [value, increase, index])))
    assert isinstance(e, ev.ScaledMint)
    return e


def test_mint_of_an_amount_adds_its_ray_div() -> None:
    index = RAY * 1_234_567 // 1_000_000
    e = _mint(1_000 + 17, 17, index)
    assert (e.caller, e.on_behalf_of, e.key) == (ALICE, BOB, (7, 3))
    assert e.scaled_delta == ray_div(1_000, index)


def test_mint_emitted_by_a_small_burn_subtracts() -> None:
    # _burnScaled of 5 with 17 of interest accrued emits Mint(value = 17 - 5).
    index = RAY * 3 // 2
    assert _mint(12, 17, index).scaled_delta == -ray_div(5, index)


def test_interest_only_mint_of_a_transfer_changes_nothing() -> None:
    assert _mint(17, 17, RAY * 2).scaled_delta == 0


def test_burn_subtracts_amount_plus_interest() -> None:
    t0 = abis.a_token().event("Burn").topic0
    index = RAY * 11 // 10
    e = decoding.decode_log(_log(t0, [_topic(ALICE), _topic(BOB)],
                           encode(["uint256"] * 3, [990, 10, index])))
    assert isinstance(e, ev.ScaledBurn)
    assert e.scaled_delta == -ray_div(1_000, index)
    # A full withdrawal of balanceOf burns exactly the scaled balance.
    scaled = 123_456_789
    assert ray_div(ray_mul(scaled, index), index) == scaled


def test_pool_event_and_unknown_logs() -> None:
    supply = abis.pool().event("Supply")
    data = encode(["address", "uint256"], [ALICE, 5])
    e = decoding.decode_log(_log(supply.topic0, [_topic(TOKEN), _topic(BOB), "0x" + "00" * 32], data))
    assert e == ev.Supply(TOKEN, 7, 3, TOKEN, ALICE, BOB, 5)
    assert decoding.decode_log(_log("0x" + "ff" * 32, [], b"")) is None
    # Right topic0, wrong number of indexed topics (an ERC-721-like twin): not ours.
    assert decoding.decode_log(_log(supply.topic0, [], data)) is None


def test_topic_groups_are_disjoint_where_it_matters() -> None:
    t = decoding.topics()
    assert abis.price_feed().event("AnswerUpdated").topic0 in t.feeds
    assert not set(t.feeds) & set(t.positions)
    assert len(set(t.all)) == len(t.all)
