"""The send gate: the one hook a keeper network has on the sending path.

``SendGate.clear_to_send(claim)`` is asked right before each signed transaction (first send,
replacement, resend, cancel) is handed to a node or relay; ``record_sent`` is told what went
out, and ``release`` when the opportunity is over. A single-process keeper uses ``OpenGate``
(always clear, remembers nothing); ``keeper run --cluster`` uses the etcd gate
(``keeper.cluster.gate``), which is clear only for the holder of the sender lease.

The gate sits in the sending path as a ``Submitter`` wrapper (``GatedSubmitter``), so the
executor's state machine does not change; the claim being worked on is set around one
liquidation with ``claiming(claim)`` (a context variable: it follows the task, and any task
created under it). A refusal raises ``NotClearToSend``, an ``RpcResponseError`` (the send did
not happen: every path of the sender handles that as a refused hand-out) that is also an
``RpcError`` (not the keeper's failure: breakers do not count it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from keeper.domain.claim import Claim, nonce_of
from keeper.errors import RpcError, RpcResponseError
from keeper.exec.keys import SignedTx
from keeper.exec.submit import Submitter, is_already_known
from keeper.obs.logging import get_logger

log = get_logger(__name__)

_current: ContextVar[Claim | None] = ContextVar("keeper_claim", default=None)


class NotClearToSend(RpcResponseError, RpcError):
    """The gate refused: this replica may not send now (it does not hold the sender lease)."""

    kind = "not_clear_to_send"

    def __init__(self, why: str) -> None:
        super().__init__("eth_sendRawTransaction", -1, f"not clear to send: {why}")


class SendGate(Protocol):
    """Whether this process may hand out a signed transaction now, and what it did."""

    def may_send(self) -> bool:
        """A local guess, no IO: False while this process surely may not send (a standby),
        so that it does not plan what it could not send. ``clear_to_send`` decides."""
        ...

    async def clear_to_send(self, claim: Claim | None) -> bool:
        """Asked right before a signed transaction goes to a node; False: do not send.
        ``claim`` is None for a send outside any ``claiming`` (none in the daemon)."""
        ...

    async def record_sent(self, claim: Claim | None, tx_hash: str, nonce: int,
                          raw: bytes) -> None:
        """A signed transaction for ``claim`` was handed out (the raw bytes let a new holder
        broadcast it again)."""
        ...

    async def release(self, claim: Claim) -> None:
        """The opportunity is over (mined, dropped, refused): its records may go."""
        ...


class OpenGate:
    """The single-process keeper's gate: always clear, records nothing."""

    def may_send(self) -> bool:
        return True

    async def clear_to_send(self, claim: Claim | None) -> bool:
        return True

    async def record_sent(self, claim: Claim | None, tx_hash: str, nonce: int,
                          raw: bytes) -> None:
        return None

    async def release(self, claim: Claim) -> None:
        return None


@contextmanager
def claiming(claim: Claim) -> Iterator[Claim]:
    """Mark the sends made inside as ``claim``'s."""
    token = _current.set(claim)
    try:
        yield claim
    finally:
        _current.reset(token)


def current_claim() -> Claim | None:
    return _current.get()


class GatedSubmitter:
    """A ``Submitter`` that asks ``gate`` before handing anything to ``inner``."""

    def __init__(self, inner: Submitter, gate: SendGate) -> None:
        self.inner = inner
        self.gate = gate
        self.route = inner.route
        self.resubmits = inner.resubmits

    async def submit(self, signed: SignedTx, head: int) -> None:
        claim = _current.get()
        if not await self.gate.clear_to_send(claim):
            raise NotClearToSend("this replica does not hold the sender lease")
        # Written before the send: a replica killed mid-send leaves a record of what may be
        # out there (its hand-out line and the record in the store come after the node answers).
        log.info("tx_cleared_to_send", tx_hash=signed.tx_hash, nonce=nonce_of(signed.raw),
                 head=head)
        try:
            await self.inner.submit(signed, head)
        except RpcResponseError as exc:
            # Recorded unless plainly refused: a node that already has it, or an answer that
            # leaves the outcome unknown, may still get it mined.
            if isinstance(exc, RpcError) or is_already_known(exc):
                await self._record(claim, signed)
            raise
        except RpcError:
            await self._record(claim, signed)
            raise
        await self._record(claim, signed)

    async def _record(self, claim: Claim | None, signed: SignedTx) -> None:
        await self.gate.record_sent(claim, signed.tx_hash, nonce_of(signed.raw), signed.raw)

    async def on_block(self, signed: SignedTx, head: int) -> None:
        # A relay's resubmission of the same signed bytes for the next block: the same
        # transaction, so it is fenced like a send.
        if await self.gate.clear_to_send(_current.get()):
            await self.inner.on_block(signed, head)
