"""The send gate hook (``keeper.exec.gate``) and the claim's nonce reader, without etcd."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from keeper.app.config import load_config
from keeper.domain.claim import Claim, nonce_of
from keeper.domain.fees import Fees
from keeper.exec.gate import GatedSubmitter, NotClearToSend, OpenGate, claiming, current_claim
from keeper.exec.keys import SignedTx, Signer

KEY = SecretStr("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
SIGNER = Signer.from_private_key(KEY, 31337)
CLAIM = Claim("0x" + "AA" * 20, "0x" + "bb" * 20, 12)


def _signed(nonce: int, data: bytes = b"") -> SignedTx:
    return SIGNER.sign_eip1559(31337, nonce, "0x" + "11" * 20, data, 0, 100_000,
                               Fees(max_fee_per_gas=10**9, max_priority_fee_per_gas=10**8))


@given(st.integers(min_value=0, max_value=2**64 - 2), st.binary(max_size=300))
def test_nonce_of_reads_the_signed_nonce(nonce: int, data: bytes) -> None:
    assert nonce_of(_signed(nonce, data).raw) == nonce


def test_nonce_of_refuses_a_legacy_transaction() -> None:
    with pytest.raises(ValueError):
        nonce_of(b"\xf8\x6b" + b"\x00" * 107)


def test_claim_key_is_lower_case() -> None:
    assert CLAIM.key == f"0x{'aa' * 20}/0x{'bb' * 20}/12"


class FakeGate:
    def __init__(self, clear: bool) -> None:
        self.clear = clear
        self.asked: list[Claim | None] = []
        self.sent: list[tuple[Claim | None, str, int]] = []

    def may_send(self) -> bool:
        return self.clear

    async def clear_to_send(self, claim: Claim | None) -> bool:
        self.asked.append(claim)
        return self.clear

    async def record_sent(self, claim: Claim | None, tx_hash: str, nonce: int,
                          raw: bytes) -> None:
        self.sent.append((claim, tx_hash, nonce))

    async def release(self, claim: Claim) -> None:
        return None


class FakeSubmitter:
    route = "public"
    resubmits = False

    def __init__(self) -> None:
        self.submitted: list[str] = []

    async def submit(self, signed: SignedTx, head: int) -> None:
        self.submitted.append(signed.tx_hash)

    async def on_block(self, signed: SignedTx, head: int) -> None:
        return None


async def test_gated_submitter_asks_then_records_under_the_claim() -> None:
    gate, inner = FakeGate(clear=True), FakeSubmitter()
    submitter = GatedSubmitter(inner, gate)
    signed = _signed(41)
    with claiming(CLAIM):
        assert current_claim() == CLAIM
        await submitter.submit(signed, 100)
    assert current_claim() is None
    assert gate.asked == [CLAIM]
    assert inner.submitted == [signed.tx_hash]
    assert gate.sent == [(CLAIM, signed.tx_hash, 41)]
    assert submitter.route == "public"


async def test_gated_submitter_refused_sends_nothing() -> None:
    gate, inner = FakeGate(clear=False), FakeSubmitter()
    with claiming(CLAIM), pytest.raises(NotClearToSend) as info:
        await GatedSubmitter(inner, gate).submit(_signed(1), 100)
    assert inner.submitted == [] and gate.sent == []
    # An RpcResponseError that is also an RpcError: refused, and not the keeper's failure.
    from keeper.errors import RpcError, RpcResponseError
    assert isinstance(info.value, RpcResponseError) and isinstance(info.value, RpcError)


async def test_open_gate_is_always_clear() -> None:
    gate = OpenGate()
    assert gate.may_send()
    assert await gate.clear_to_send(None) and await gate.clear_to_send(CLAIM)


def test_cluster_config_from_environment() -> None:
    cfg = load_config(None, {"KEEPER_CLUSTER__ENABLED": "true",
                             "KEEPER_CLUSTER__ENDPOINTS": "http://e1:2379, http://e2:2379",
                             "KEEPER_CLUSTER__REPLICA_ID": "keeper-0",
                             "KEEPER_CLUSTER__LEASE_TTL": "5"})
    assert cfg.cluster.enabled and cfg.cluster.endpoints == ["http://e1:2379", "http://e2:2379"]
    assert (cfg.cluster.replica_id, cfg.cluster.lease_ttl) == ("keeper-0", 5)
    assert not load_config(None, {}).cluster.enabled


def test_cluster_cli_errors_are_one_line() -> None:
    from tests.unit.test_cli_errors import assert_one_line_error, run_keeper

    devnet = "config/devnet.toml"
    assert_one_line_error(run_keeper("run", "-c", devnet, "--cluster", "--once"), "--once")
    assert_one_line_error(run_keeper("run", "-c", devnet, "--cluster"), "cluster.endpoints")
