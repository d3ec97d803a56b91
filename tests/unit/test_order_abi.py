"""The liquidator's orders written word by word give eth-abi's bytes, for any order; a value
that does not fit its type is left to eth-abi, which refuses it as before."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.exceptions import EncodingError
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.protocols.aave_v3.liquidator import _abi
from keeper.protocols.aave_v3.order_abi import encode_order, encode_orders

LIQUIDATE, BATCH = _abi()["liquidate"], _abi()["liquidateBatch"]

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()) \
    | st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex().upper())
u256 = st.integers(0, 2**256 - 1)
u24 = st.integers(0, 2**24 - 1)
u8 = st.integers(0, 255)
hops = st.lists(st.tuples(u8, addresses, u24), max_size=4)
legs = st.lists(st.tuples(u256, hops), max_size=3)
orders = st.tuples(addresses, addresses, addresses, u256, legs, u256, u8, addresses, u24, u256)


@settings(max_examples=300, deadline=None)
@given(orders)
def test_an_order_is_eth_abis_bytes(order: tuple[Any, ...]) -> None:
    assert encode_order(LIQUIDATE.selector, order) == LIQUIDATE.encode(order)


@settings(max_examples=100, deadline=None)
@given(st.lists(orders, max_size=4))
def test_a_batch_of_orders_is_eth_abis_bytes(many: list[tuple[Any, ...]]) -> None:
    assert encode_orders(BATCH.selector, many) == BATCH.encode(many)


GOOD = ("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, 10**18,
        [(5, [(1, "0x" + "44" * 20, 3000)])], 7, 1, "0x" + "00" * 20, 500, 0)


@pytest.mark.parametrize(("field", "value"), [
    (3, -1), (3, 2**256), (3, True), (3, 1.0), (6, 256), (8, 2**24), (0, "0x" + "11" * 19),
    (0, "0x" + "g1" * 20), (0, "11" * 21), (0, b"\x11" * 20), (0, "0x" + "1 " * 20),
])
def test_a_value_that_does_not_fit_its_type_is_left_to_eth_abi(field: int, value: Any) -> None:
    order = list(GOOD)
    order[field] = value
    assert encode_order(LIQUIDATE.selector, tuple(order)) is None
    if isinstance(value, bytes):
        return  # eth-abi takes an address as 20 bytes as well
    with pytest.raises((EncodingError, TypeError, ValueError)):
        LIQUIDATE.encode(tuple(order))


@pytest.mark.parametrize("mixed", ["0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x" + "aA" * 20])
def test_a_mixed_case_address_is_left_to_eth_abi_which_takes_it(mixed: str) -> None:
    order = (mixed, *GOOD[1:])
    assert encode_order(LIQUIDATE.selector, order) is None
    assert LIQUIDATE.encode(order) == LIQUIDATE.encode((mixed.lower(), *GOOD[1:]))


def test_a_hop_venue_out_of_range_is_left_to_eth_abi() -> None:
    order = (*GOOD[:4], [(5, [(256, "0x" + "44" * 20, 3000)])], *GOOD[5:])
    assert encode_order(LIQUIDATE.selector, order) is None
    with pytest.raises(EncodingError):
        LIQUIDATE.encode(order)
