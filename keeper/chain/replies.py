"""What a JSON-RPC reply means: a ``result`` checked against its method's type, or an error
object turned into the right exception. The one place that classifies what the node sends.

- ``check_result(method, params, result)``: the result, or ``RpcMalformedReply`` when it has the
  wrong type for the method (decoders in ``keeper.chain.decode``). Methods without a check pass.
- ``response_error(method, error)``: ``ExecutionReverted`` for a revert; ``RpcResponseError`` for
  a definite answer about the request (bad arguments, out of gas, too many results, a signed
  transaction refused); ``RpcErrorReply`` (transient, an ``RpcError``) for everything else:
  overloaded, rate limited, internal error, a block the replica does not have yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keeper.chain import decode
from keeper.errors import ExecutionReverted, RpcErrorReply, RpcMalformedReply, RpcResponseError

_REVERT_CODES = frozenset({3, -32015})

# The request itself is wrong: asking again changes nothing.
_DEFINITE_CODES = frozenset({-32700, -32600, -32601, -32602})

# Wording used by geth, erigon, nethermind, reth, anvil and the large providers (Infura,
# Alchemy, QuickNode) for "ask eth_getLogs for less"; matched in lowercase.
_TOO_MANY_HINTS = (
    "query returned more than",
    "too many",
    "response size",
    "response is too big",
    "limit exceeded",
    "exceeds the limit",
    "block range",
    "range is too large",
    "max results",
)
_TOO_MANY_CODES = frozenset({-32005})

# Error messages (lowercase substrings) that are answers about this very request, whatever the
# code: the same call fails the same way again, so it is neither retried nor a node problem.
_DEFINITE_MESSAGES = (
    "out of gas", "outofgas", "sentryoog", "gas required exceeds", "intrinsic gas", "exceeds block gas limit",
    "nonce too low", "nonce too high", "already known", "known transaction",
    "replacement transaction underpriced", "underpriced", "insufficient funds", "fee cap",
    "invalid sender", "invalid signature", "invalid chain id", "exceeds the configured cap",
    "tx fee", "fee per gas", "tip above", "oversized data",
)


def is_too_many_results(exc: RpcResponseError) -> bool:
    """True when the node refused an ``eth_getLogs`` because the answer would be too large."""
    text = exc.rpc_message.lower()
    return exc.code in _TOO_MANY_CODES or any(h in text for h in _TOO_MANY_HINTS)


def response_error(method: str, error: object) -> RpcResponseError:
    """The typed exception for a JSON-RPC error object (see the module docstring)."""
    obj: Mapping[str, Any] = error if isinstance(error, Mapping) else {"message": repr(error)}
    code = obj.get("code", 0)
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    message = str(obj.get("message", ""))
    payload = obj.get("data")
    lowered = message.lower()
    if code in _REVERT_CODES or "revert" in lowered:
        return ExecutionReverted(method, code, message, payload)
    definite = RpcResponseError(method, code, message, payload)
    if code in _DEFINITE_CODES or any(m in lowered for m in _DEFINITE_MESSAGES) \
            or (method == "eth_getLogs" and is_too_many_results(definite)):
        return definite
    return RpcErrorReply(method, code, message, payload)


def _optional(check: Callable[[object], object]) -> Callable[[object, Sequence[Any]], None]:
    def run(result: object, _: Sequence[Any]) -> None:
        if result is not None:
            check(result)
    return run


def _always(check: Callable[[object], object]) -> Callable[[object, Sequence[Any]], None]:
    def run(result: object, _: Sequence[Any]) -> None:
        check(result)
    return run


_BLOCK_TAGS = frozenset({"latest", "pending", "safe", "finalized", "earliest"})


def _block_by_number(result: object, params: Sequence[Any]) -> None:
    which = params[0] if params else None
    if result is None:
        # A tag always names a block the node has; null for one is not an answer.
        if isinstance(which, str) and which in _BLOCK_TAGS:
            raise RpcMalformedReply(f"eth_getBlockByNumber({which}): null block")
        return
    decode.check_block(result, pending=which == "pending")


def _string(result: object) -> str:
    if isinstance(result, str) and result:
        return result
    raise RpcMalformedReply(f"expected a string, got {type(result).__name__}")


def _list(result: object) -> list[Any]:
    return decode.sequence(result, "results")


def _trace(result: object) -> None:
    decode.quantity(decode.field(decode.mapping(result, "a trace"), "gasUsed", "trace"), "gasUsed")


_CHECKS: dict[str, Callable[[object, Sequence[Any]], None]] = {
    **{m: _always(decode.quantity) for m in (
        "eth_blockNumber", "eth_chainId", "eth_gasPrice", "eth_maxPriorityFeePerGas",
        "eth_getBalance", "eth_getTransactionCount", "eth_estimateGas")},
    **{m: _always(decode.data) for m in ("eth_call", "eth_getCode", "eth_getStorageAt")},
    "eth_sendRawTransaction": _always(decode.hash32),
    "eth_getBlockByNumber": _block_by_number,
    "eth_getBlockByHash": _optional(decode.check_block),
    "eth_getTransactionReceipt": _optional(decode.check_receipt),
    "eth_getTransactionByHash": _optional(decode.check_transaction),
    "eth_getLogs": _always(decode.check_logs),
    "eth_feeHistory": _always(decode.check_fee_history),
    "eth_subscribe": _always(_string),
    "eth_simulateV1": _always(_list),
    "debug_traceCall": _always(_trace),
}


def check_result(method: str, params: Sequence[Any], result: object) -> Any:
    """``result`` if it has the type ``method`` answers with; else ``RpcMalformedReply``."""
    check = _CHECKS.get(method)
    if check is not None:
        try:
            check(result, params)
        except RpcMalformedReply as exc:
            raise RpcMalformedReply(f"{method}: {exc}") from None
    return result
