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
    """A JSON-RPC call failed at the transport level (connection, timeout, bad HTTP status)."""


class RpcTimeout(RpcError, TimeoutError):
    """A JSON-RPC call did not answer within its timeout."""


class RpcResponseError(KeeperError, RuntimeError):
    """The node answered a JSON-RPC call with an error object."""

    def __init__(self, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.rpc_message = message
        self.data = data


class ExecutionReverted(RpcResponseError):
    """An eth_call / eth_estimateGas / transaction reverted."""


class DevnetError(KeeperError, RuntimeError):
    """The local devnet could not be started, deployed or driven."""
