"""The liquidator's ``Order`` in ABI words, written directly: the encoding eth-abi gives.

``Order = (address collateral, address debt, address user, uint256 debtToCover,
(uint256 amountIn, (uint8 venue, address tokenOut, uint24 fee)[] hops)[] legs,
uint256 minProfit, uint8 flashSource, address pairToken, uint24 fee, uint256 maxBlock)``.

eth-abi validates and encodes each value through its generic coders: ~190 us for an order
with two hops, measured here (the send path's prepare encodes one, a crash's batches a few
thousand); here each field is checked against its type and written as its word: ~14 us for
the same call, the order built from the plan included. A value that does not fit its type
returns None and the caller encodes with eth-abi, which then raises its own error; property
tests hold the two to the same bytes (tests/unit/test_order_abi.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_WORD = 32
_U256 = 1 << 256
_U24 = 1 << 24
_U8 = 1 << 8


class _Unfit(Exception):
    """A value outside its ABI type: eth-abi encodes (and refuses) it instead."""


def _uint(value: Any, bound: int) -> bytes:
    if type(value) is not int or not 0 <= value < bound:
        raise _Unfit
    return value.to_bytes(_WORD, "big")


def _address(value: Any) -> bytes:
    # Mixed case is a checksum for eth-abi to verify: only one-case hex is written here.
    if type(value) is not str or len(value) != 42 or value[:2] != "0x" \
            or not (value.islower() or value[2:].isupper() or value[2:].isdigit()):
        raise _Unfit
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise _Unfit from None
    if len(raw) != 20:  # fromhex skips spaces
        raise _Unfit
    return bytes(12) + raw


def _legs(legs: Sequence[Any]) -> bytes:
    """``(uint256, (uint8, address, uint24)[])[]``: length, each leg's offset, the legs."""
    bodies = []
    for amount_in, hops in legs:
        body = [_uint(amount_in, _U256), _uint(2 * _WORD, _U256), _uint(len(hops), _U256)]
        for venue, token_out, fee in hops:
            body += (_uint(venue, _U8), _address(token_out), _uint(fee, _U24))
        bodies.append(b"".join(body))
    return _with_offsets(bodies)


def _with_offsets(bodies: list[bytes]) -> bytes:
    """A dynamic array of dynamic elements: length, offsets (from after the length), bodies."""
    head, at = [_uint(len(bodies), _U256)], len(bodies) * _WORD
    for body in bodies:
        head.append(at.to_bytes(_WORD, "big"))
        at += len(body)
    return b"".join(head) + b"".join(bodies)


def _order(order: Sequence[Any]) -> bytes:
    (collateral, debt, user, debt_to_cover, legs, min_profit, flash_source, pair_token, fee,
     max_block) = order
    head = (_address(collateral) + _address(debt) + _address(user)
            + _uint(debt_to_cover, _U256) + (10 * _WORD).to_bytes(_WORD, "big")
            + _uint(min_profit, _U256) + _uint(flash_source, _U8) + _address(pair_token)
            + _uint(fee, _U24) + _uint(max_block, _U256))
    return head + _legs(legs)


def encode_order(selector: bytes, order: Sequence[Any]) -> bytes | None:
    """Calldata of ``f(Order)``, or None when a value does not fit its type."""
    try:
        return selector + _WORD.to_bytes(_WORD, "big") + _order(order)
    except (_Unfit, ValueError, TypeError):
        return None


def encode_orders(selector: bytes, orders: Sequence[Sequence[Any]]) -> bytes | None:
    """Calldata of ``f(Order[])``, or None when a value does not fit its type."""
    try:
        return selector + _WORD.to_bytes(_WORD, "big") + _with_offsets(
            [_order(order) for order in orders])
    except (_Unfit, ValueError, TypeError):
        return None
