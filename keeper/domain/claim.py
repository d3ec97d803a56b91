"""A claim on one liquidation opportunity, and the nonce a signed transaction carries.

A keeper network (``keeper run --cluster``) records per-opportunity claims so that a new lease
holder neither repeats what the previous one sent nor skips what it dropped; the single-process
keeper makes them too and lets them go (``keeper.exec.gate.OpenGate``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Claim:
    """Liquidating ``account``'s ``debt_asset`` debt, planned at ``block``."""

    account: str
    debt_asset: str
    block: int

    @property
    def key(self) -> str:
        """A path segment that names the claim (lower-case hex addresses, decimal block)."""
        return f"{self.account.lower()}/{self.debt_asset.lower()}/{self.block}"


def _item(raw: bytes, at: int) -> tuple[int, int]:
    """(start, end) of the payload of the RLP string at ``at``."""
    b = raw[at]
    if b < 0x80:
        return at, at + 1
    if b <= 0xB7:
        return at + 1, at + 1 + (b - 0x80)
    n = b - 0xB7
    length = int.from_bytes(raw[at + 1:at + 1 + n], "big")
    return at + 1 + n, at + 1 + n + length


def nonce_of(raw: bytes) -> int:
    """The nonce of a signed typed transaction (EIP-2718: type byte, then the RLP list
    ``[chain_id, nonce, ...]``, as EIP-2930 and EIP-1559 transactions are)."""
    if len(raw) < 3 or raw[0] > 0x7F:
        raise ValueError("not a typed transaction")
    head = raw[1]
    if head < 0xC0:
        raise ValueError("typed transaction payload is not an RLP list")
    at = 2 if head <= 0xF7 else 2 + (head - 0xF7)
    _, at = _item(raw, at)  # chain id
    start, end = _item(raw, at)
    return int.from_bytes(raw[start:end], "big")
