"""ERC-20 reads the keeper makes: ``balanceOf`` as a JSON-RPC eth_call ready for a batch, and the
symbols of a market's tokens for reports."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak

_BALANCE_OF = keccak(text="balanceOf(address)")[:4]
_SYMBOL = keccak(text="symbol()")[:4]


def balance_of(token: str, holder: str, block: str = "latest") -> tuple[str, list[Any]]:
    """The eth_call of ``token.balanceOf(holder)`` at ``block``; its result is a hex uint256.

    Encoded by hand (selector and one padded address word): it runs on the path from a head
    to a send, where an ABI encoder costs tens of microseconds a call.
    """
    data = _BALANCE_OF + bytes(12) + bytes.fromhex(holder.lower().removeprefix("0x"))
    return ("eth_call", [{"to": token, "data": "0x" + data.hex()}, block])


def symbol_call(token: str) -> tuple[str, list[Any]]:
    """The eth_call of ``token.symbol()`` at the tip."""
    return ("eth_call", [{"to": token, "data": "0x" + _SYMBOL.hex()}, "latest"])


def decode_symbol(result: object) -> str | None:
    """A ``symbol()`` result: an ABI string, or a bytes32 as some old tokens (MKR) return;
    None when it is neither (a report then shows the address)."""
    if not isinstance(result, str) or not result.startswith("0x"):
        return None
    try:
        raw = bytes.fromhex(result[2:])
    except ValueError:
        return None
    if len(raw) == 32:  # bytes32, zero-padded on the right
        text = raw.rstrip(b"\0")
    elif len(raw) >= 64:
        offset = int.from_bytes(raw[:32], "big")
        if offset + 32 > len(raw):
            return None
        length = int.from_bytes(raw[offset:offset + 32], "big")
        text = raw[offset + 32:offset + 32 + length]
        if len(text) != length:
            return None
    else:
        return None
    try:
        symbol = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return symbol if symbol.isprintable() and 0 < len(symbol) <= 32 else None
