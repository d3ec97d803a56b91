"""Where signed transactions go (``Submitter``), the public mempool, and how to read a refusal.

A private relay is another ``Submitter``: see ``keeper.exec.relay``.
"""

from __future__ import annotations

from typing import Protocol

from keeper.chain.rpc import JsonRpc
from keeper.errors import RpcResponseError
from keeper.exec.keys import SignedTx


class Submitter(Protocol):
    """Where signed transactions go: the public mempool or a private relay."""

    route: str
    resubmits: bool  # True when it must be told of every block (a relay's bundles expire)

    async def submit(self, signed: SignedTx, head: int) -> None:
        """Hand out a signed tx; raise RpcResponseError if refused, RpcError if unknown."""
        ...

    async def on_block(self, signed: SignedTx, head: int) -> None:
        """Called on each new head while ``signed`` is not included."""
        ...


class PublicSubmitter:
    """``eth_sendRawTransaction`` to the node: the public mempool. Never retried (a write)."""

    route = "public"
    resubmits = False

    def __init__(self, rpc: JsonRpc, timeout: float = 10.0) -> None:
        self.rpc = rpc
        self.timeout = timeout

    async def submit(self, signed: SignedTx, head: int) -> None:
        await self.rpc.call("eth_sendRawTransaction", [signed.raw_hex], timeout=self.timeout)

    async def on_block(self, signed: SignedTx, head: int) -> None:
        return None


def is_already_known(exc: RpcResponseError) -> bool:
    """The node already holds this exact transaction: the send did happen."""
    m = exc.rpc_message.lower()
    return "already known" in m or "known transaction" in m or "already imported" in m


def is_nonce_error(exc: RpcResponseError) -> bool:
    """The node refused the nonce: our counter is out of step with it."""
    m = exc.rpc_message.lower()
    return "nonce too low" in m or "nonce too high" in m or "invalid nonce" in m


def is_nonce_taken(exc: RpcResponseError) -> bool:
    """The node holds another transaction of the account at the nonce, at fees ours does not
    outbid (one given up after a rollback, or another sender's on this key)."""
    m = exc.rpc_message.lower()
    return ("replacement" in m and "underpriced" in m) or "replacement fee too low" in m
