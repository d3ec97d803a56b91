"""Revert reasons in words, and the verdict on a backrun's pair simulation."""

from __future__ import annotations

from eth_abi import encode as abi_encode

from keeper.errors import RpcResponseError, RpcTimeout
from keeper.exec.simulate import pair_failure, revert_reason


def reverted(data: object, message: str = "execution reverted") -> RpcResponseError:
    return RpcResponseError("eth_call", 3, message, data)


def test_error_string_panic_selector_and_plain_messages() -> None:
    error = "0x08c379a0" + abi_encode(["string"], ["45"]).hex()
    panic = "0x4e487b71" + abi_encode(["uint256"], [0x11]).hex()
    assert revert_reason(reverted(error)) == "reverted: 45"
    assert revert_reason(reverted({"data": error})) == "reverted: 45"
    assert revert_reason(reverted(panic)) == "reverted: panic 0x11"
    assert revert_reason(reverted("0xdeadbeef")) == "execution reverted (error selector 0xdeadbeef)"
    assert revert_reason(reverted(None, "insufficient funds")) == "insufficient funds"
    # A malformed Error(string) payload falls back to the selector, never raises.
    assert "0x08c379a0" in revert_reason(reverted("0x08c379a0zz"))


def test_pair_failure() -> None:
    ok = {"status": "0x1", "gasUsed": "0x5208", "returnData": "0x"}
    bad = {"status": "0x0", "error": {"message": "execution reverted"}, "returnData": "0x",
           "gasUsed": "0x1"}
    assert pair_failure([{"calls": [ok, ok]}]) is None
    assert (pair_failure([{"calls": [ok, bad]}]) or "").startswith("ours fails in the pair")
    assert (pair_failure([{"calls": [bad, ok]}]) or "").startswith("the transaction to follow")
    assert pair_failure([{"calls": [ok]}]) == "eth_simulateV1: 1 call results for 2 calls"
    refused = RpcResponseError("eth_simulateV1", -32601, "method not found")
    assert pair_failure(refused) == "eth_simulateV1: method not found"
    assert (pair_failure(RpcTimeout("slow")) or "").startswith("eth_simulateV1: RpcTimeout")
    assert (pair_failure({"weird": 1}) or "").startswith("eth_simulateV1: unexpected answer")


def test_aave_custom_errors_are_named() -> None:
    from eth_utils import keccak

    dust = "0x" + keccak(text="MustNotLeaveDust()")[:4].hex()
    grace = "0x" + keccak(text="LiquidationGraceSentinelCheckFailed()")[:4].hex()
    emode = "0x" + keccak(text="InvalidDebtInEmode(address,uint256)")[:4].hex() + abi_encode(
        ["address", "uint256"], ["0x" + "11" * 20, 2]).hex()
    assert revert_reason(reverted(dust)) == "reverted: MustNotLeaveDust"
    assert revert_reason(reverted({"data": grace})) == "reverted: LiquidationGraceSentinelCheckFailed"
    assert revert_reason(reverted(emode)) == (
        "reverted: InvalidDebtInEmode(0x1111111111111111111111111111111111111111, 2)")
