"""Single-word ABI values read from their words equal eth-abi's decoding, value for value, and
anything they do not read exactly is left to eth-abi (same values, same errors)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.chain.abi import Event
from keeper.chain.abi_words import decode_words

WORD_TYPES = ["address", "bool", "uint256", "uint8", "uint128", "int256", "int24", "int8",
              "bytes32", "bytes4", "bytes1"]


def _value(typ: str) -> st.SearchStrategy[Any]:
    if typ == "address":
        return st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
    if typ == "bool":
        return st.booleans()
    if typ.startswith("uint"):
        return st.integers(0, 2 ** int(typ[4:]) - 1)
    if typ.startswith("int"):
        bits = int(typ[3:])
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    size = int(typ[5:])
    return st.binary(min_size=size, max_size=size)


typed_values = st.lists(st.sampled_from(WORD_TYPES), min_size=1, max_size=8).flatmap(
    lambda types: st.tuples(st.just(types), st.tuples(*[_value(t) for t in types])))


@settings(max_examples=300)
@given(typed_values)
def test_words_decode_as_eth_abi_does(case: tuple[list[str], tuple[Any, ...]]) -> None:
    types, values = case
    raw = abi_encode(types, list(values))
    assert decode_words(types, raw) == list(abi_decode(types, raw))


@settings(max_examples=200)
@given(st.sampled_from(WORD_TYPES), st.binary(min_size=32, max_size=32))
def test_a_word_it_reads_is_what_eth_abi_reads_and_one_it_refuses_eth_abi_refuses(
        typ: str, word: bytes) -> None:
    ours = decode_words([typ], word)
    try:
        theirs = list(abi_decode([typ], word))
    except DecodingError:
        assert ours is None
        return
    assert ours == theirs


@pytest.mark.parametrize(("types", "raw"), [
    (["string"], abi_encode(["string"], ["a dynamic type"])),
    (["uint256[]"], abi_encode(["uint256[]"], [[1, 2]])),
    (["uint256"], abi_encode(["uint256", "uint256"], [1, 2])),  # more data than the types
    (["uint256", "uint256"], abi_encode(["uint256"], [1])),  # less
])
def test_what_is_not_exactly_words_is_left_to_eth_abi(types: list[str], raw: bytes) -> None:
    assert decode_words(types, raw) is None


def test_an_event_decodes_its_topics_and_data_as_before() -> None:
    ev = Event("LiquidationCall",
               ("address", "address", "address", "uint256", "uint256", "address", "bool"),
               (True, True, True, False, False, False, False),
               ("collateralAsset", "debtAsset", "user", "debtToCover", "liquidatedCollateral",
                "liquidator", "receiveAToken"))
    a, b, c, d = ("0x" + f"{i:02x}" * 20 for i in (0xA1, 0xB2, 0xC3, 0xD4))
    topics = ["0x" + "00" * 32] + ["0x" + abi_encode(["address"], [x]).hex() for x in (a, b, c)]
    data = "0x" + abi_encode(["uint256", "uint256", "address", "bool"], [5, 7, d, True]).hex()
    assert ev.decode(topics, data) == {
        "collateralAsset": a, "debtAsset": b, "user": c, "debtToCover": 5,
        "liquidatedCollateral": 7, "liquidator": d, "receiveAToken": True}
    # A dynamic field: the whole data goes through eth-abi.
    named = Event("Named", ("address", "string"), (True, False), ("who", "name"))
    out = named.decode(topics[:2], "0x" + abi_encode(["string"], ["keeper"]).hex())
    assert out == {"who": a, "name": "keeper"}
