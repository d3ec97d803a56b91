"""Backrunning pending oracle updates: decoding the new answer, the market after it, the fees."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from eth_abi import encode as abi_encode
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.types import PendingTx
from keeper.domain.fees import Fees
from keeper.domain.plan import Plan
from keeper.exec.backrun import backrun_fees, behind
from keeper.exec.executor import Prepared
from keeper.exec.tx import TxRequest
from keeper.pipeline.backrun import (
    TRANSMIT,
    UPDATE_ANSWER,
    Link,
    decode_new_answer,
    decode_ocr2_median,
    liquidatable,
    repriced,
)
from tests.unit.test_account import USDC, WBTC, WETH, WSTETH, account, market, usd

GWEI = 10**9


def ocr2_report(observations: list[int], ts: int = 1_700_000_000) -> bytes:
    return abi_encode(["uint32", "bytes32", "int192[]", "int192"],
                      [ts, bytes(range(32)), observations, 10**18])


def transmit_calldata(report: bytes) -> bytes:
    return TRANSMIT + abi_encode(
        ["bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32"],
        [[b"\x01" * 32, b"\x02" * 32, b"\x03" * 32], report, [b"\x04" * 32] * 2,
         [b"\x05" * 32] * 2, b"\x06" * 32])


# ---- decoding ----------------------------------------------------------------------------
def test_update_answer_decodes_to_its_argument() -> None:
    assert decode_new_answer(UPDATE_ANSWER + abi_encode(["int256"], [190_000_000_000])) \
        == 190_000_000_000
    assert decode_new_answer(UPDATE_ANSWER + abi_encode(["int256"], [-5])) == -5


def test_ocr2_transmit_publishes_the_median_observation() -> None:
    # Transmitters send the observations sorted; the aggregator takes observations[len/2].
    odd = [usd(1890), usd(1895), usd(1900), usd(1904), usd(1910)]
    assert decode_ocr2_median(ocr2_report(odd)) == usd(1900)
    assert decode_new_answer(transmit_calldata(ocr2_report(odd))) == usd(1900)
    even = [usd(10), usd(20), usd(30), usd(40)]
    assert decode_new_answer(transmit_calldata(ocr2_report(even))) == usd(30)
    # int192 is signed: a negative median decodes as such.
    assert decode_new_answer(transmit_calldata(ocr2_report([-3, -2, -1]))) == -2


def test_other_calls_and_garbage_are_not_updates() -> None:
    assert decode_new_answer(b"") is None
    assert decode_new_answer(bytes.fromhex("a9059cbb") + bytes(64)) is None  # transfer
    assert decode_new_answer(UPDATE_ANSWER + b"\x01") is None
    assert decode_new_answer(TRANSMIT + bytes(40)) is None
    assert decode_new_answer(transmit_calldata(ocr2_report([]))) is None
    assert decode_ocr2_median(b"\x00" * 7) is None


def test_pending_tx_from_rpc_eip1559_and_legacy() -> None:
    base = {"hash": "0xAB", "from": "0xF0", "to": "0xC0", "input": "0x" + UPDATE_ANSWER.hex(),
            "value": "0x0", "gas": "0x5208"}
    tx = PendingTx.from_rpc(base | {"maxFeePerGas": hex(3 * GWEI),
                                    "maxPriorityFeePerGas": hex(GWEI), "gasPrice": hex(2 * GWEI)})
    assert tx.fees == Fees(3 * GWEI, GWEI)
    assert (tx.tx_hash, tx.sender, tx.to, tx.data, tx.gas) == ("0xab", "0xf0", "0xc0",
                                                              UPDATE_ANSWER, 21_000)
    legacy = PendingTx.from_rpc(base | {"gasPrice": hex(2 * GWEI)})
    assert legacy.fees == Fees(2 * GWEI, 2 * GWEI)
    assert tx.call() == {"from": "0xf0", "to": "0xc0", "input": "0x" + UPDATE_ANSWER.hex(),
                         "value": "0x0", "gas": "0x5208"}


# ---- the market after the update -----------------------------------------------------------
def test_direct_sources_take_the_answer_and_a_rate_adapter_scales_with_its_base() -> None:
    prices = {WETH: usd(2000), WSTETH: usd(2300), USDC: usd(1)}
    links = {WETH: Link.DIRECT, WSTETH: Link.SCALED}
    out = repriced(prices, links, old_answer=usd(2000), new_answer=usd(1900))
    # wstETH = base × rate: the rate (2300/2000 = 1.15) holds, the base moves 2000 → 1900.
    assert out == {WETH: usd(1900), WSTETH: usd(2185), USDC: usd(1)}
    assert prices[WETH] == usd(2000)  # the input is left alone


def test_scaled_price_without_an_old_answer_is_left_alone() -> None:
    prices = {WSTETH: usd(2300)}
    assert repriced(prices, {WSTETH: Link.SCALED}, 0, usd(1900)) == prices
    assert repriced(prices, {WBTC: Link.SCALED}, usd(1), usd(2)) == prices  # unknown asset


@given(st.integers(1, 10**12), st.integers(1, 10**12))
def test_scaling_a_price_equal_to_its_base_gives_the_answer(old: int, new: int) -> None:
    assert repriced({WETH: old}, {WETH: Link.SCALED}, old, new)[WETH] == new


def test_liquidatable_at_the_new_prices_most_debt_first() -> None:
    # HF 1.10 at $2000 (test_account); 0.99 at $1800. The smaller one is at HF 1.03.
    big = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})
    small = account({WETH: 10**18}, {USDC: 1_600 * 10**6})
    healthy = account({WETH: 10**18}, {USDC: 100 * 10**6})
    saver = account({USDC: 1_000 * 10**6}, {})
    users = [("0xb", big), ("0xs", small), ("0xh", healthy), ("0xz", saver)]
    assert liquidatable(users, market()) == []
    assert liquidatable(users, market({WETH: usd(1900)})) == ["0xs"]
    assert liquidatable(users, market({WETH: usd(1800)})) == ["0xb", "0xs"]


# ---- fees --------------------------------------------------------------------------------
@given(st.integers(0, 500 * GWEI), st.integers(0, 50 * GWEI))
def test_backrun_bids_exactly_the_leaders_fees(cap: int, tip: int) -> None:
    # Fee ordering compares effective tips, min(tip, cap - base fee): with both fields equal
    # ours is never above the leader's at any base fee (it would go first and revert) nor
    # below (it would fall behind other transactions); equal bids keep arrival order.
    leader = Fees(max(cap, tip), tip)
    assert backrun_fees(leader) == leader


def test_a_prepared_liquidation_follows_the_leader_at_its_fees() -> None:
    leader = PendingTx("0xabc", "0xf0", "0xc0", UPDATE_ANSWER, 0, 50_000, Fees(30 * GWEI, 2 * GWEI))
    request = TxRequest(to="0xcc", data=b"\x01", expected_profit_native=10**18,
                        label="liquidate 0xb")
    plan = cast(Plan, object())  # carried along untouched
    prepared = Prepared("0xb", plan, request, 600_000, market())
    got = behind(prepared, leader)
    assert got.request == replace(request, after=leader, exact_fees=leader.fees,
                                  label="backrun 0xb")
    assert (got.user, got.plan, got.predicted_gas, got.market) == (
        "0xb", plan, 600_000, prepared.market)
