"""The mutable state of one request in flight: every signed tx for its nonce, and where it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keeper.domain.fees import Fees
from keeper.exec.keys import SignedTx
from keeper.exec.nonce import NonceLease
from keeper.exec.tx import SendAttempt, TxRequest


@dataclass(slots=True)
class Flight:
    """Owned by ``Sender.execute`` for the life of one request (one nonce)."""

    req: TxRequest
    lease: NonceLease
    gas: int  # simulated gas
    gas_limit: int
    attempts: list[SendAttempt] = field(default_factory=list)
    signed: dict[str, SignedTx] = field(default_factory=dict)  # by hash: receipts to check
    current: SignedTx | None = None
    current_fees: Fees | None = None
    sent_block: int = 0
    # The last head this flight's watch looked at (at first the number it was sent at).
    seen_head: tuple[int, str] = (-1, "")
    cancel_hash: str | None = None
    receipt: dict[str, Any] | None = None
    reorgs: int = 0
    foreign_nonce_strikes: int = 0
    abandoned: str = ""  # why a lost transaction was given up instead of cancelled

    @property
    def replacements(self) -> int:
        return sum(1 for a in self.attempts if a.kind in ("replace", "cancel"))

    @property
    def hashes(self) -> list[str]:
        return [a.tx_hash for a in self.attempts]

    def handed_out(self, kind: str, signed: SignedTx, fees: Fees, gas_limit: int,
                   head: int) -> None:
        """``signed`` (a send, replace, resend or cancel) is now the one to watch for."""
        self.attempts.append(SendAttempt(kind, signed.tx_hash, fees, gas_limit, head))
        self.current, self.current_fees, self.sent_block = signed, fees, head
        if kind == "cancel":
            self.cancel_hash = signed.tx_hash
