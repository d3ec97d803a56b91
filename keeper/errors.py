"""The keeper's exception hierarchy.

Every error the keeper raises on purpose derives from ``KeeperError``; IO errors are also
instances of the matching builtin so callers that only know the standard library still catch
them. Messages never carry secrets: callers pass addresses and method names, never keys.
"""

from __future__ import annotations


class KeeperError(Exception):
    """Root of every error the keeper raises on purpose."""


class ConfigError(KeeperError, ValueError):
    """The configuration is invalid; the message names the field and the problem."""


class UsageError(KeeperError, ValueError):
    """A command-line argument is invalid."""


class RpcError(KeeperError, ConnectionError):
    """A JSON-RPC call gave no usable answer, for a reason that is the node's, not the call's:
    no connection, a timeout, a bad HTTP status, a reply that does not parse or has the wrong
    type, an error object that says nothing about the request (overloaded, rate limited).

    Transient by definition: an idempotent read is retried (``keeper.chain.retry``), a task
    waits and goes on, and the circuit breaker never counts it. ``kind`` labels
    ``keeper_rpc_errors_total``.
    """

    kind = "connection"


class RpcTimeout(RpcError, TimeoutError):
    """A JSON-RPC call did not answer within its timeout."""

    kind = "timeout"


class RpcMalformedReply(RpcError):
    """The node answered, but the reply does not parse or its ``result`` has the wrong type for
    the method (checked where it is decoded, ``keeper.chain.decode``)."""

    kind = "malformed"


class RpcNotAvailable(RpcError):
    """The node does not have what was asked for yet (a block above a lagging replica's tip)."""

    kind = "not_available"


class RpcResponseError(KeeperError, RuntimeError):
    """The node answered a JSON-RPC call with an error object about the request itself: a
    definite answer (bad arguments, out of gas, too many results, nonce too low), not retried.

    Error objects that are not about the request are ``RpcErrorReply`` (also an ``RpcError``);
    ``keeper.chain.replies.response_error`` decides which is which.
    """

    kind = "error_reply"

    def __init__(self, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.rpc_message = message
        self.data = data


class ExecutionReverted(RpcResponseError):
    """An eth_call / eth_estimateGas / transaction reverted."""


class RpcErrorReply(RpcResponseError, RpcError):
    """An error object that says the node could not serve the call now (overloaded, rate
    limited, internal error, header not found): transient like any ``RpcError``, and still an
    error object (``code``, ``rpc_message``) for callers that read those."""

    kind = "error_reply"


class DevnetError(KeeperError, RuntimeError):
    """The local devnet could not be started, deployed or driven."""
