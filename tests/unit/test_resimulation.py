"""After waiting its turn, a send is simulated again only if one of ours handed out meanwhile
may change what it does: one that trades in a pool it trades in, or one that says nothing of
what it touches."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from keeper.chain.types import PendingTx
from keeper.domain.amm import sort_tokens
from keeper.domain.fees import Fees, next_base_fee
from keeper.domain.plan import Plan
from keeper.domain.quote import UniswapV2Quoter
from keeper.errors import RpcResponseError
from keeper.exec import simulate as simulate_module
from keeper.exec.executor import _touches
from keeper.exec.sender import Sender
from keeper.exec.simulate import Simulator, state_for
from keeper.exec.tx import Status, TxRequest
from keeper.pipeline.planner import Funding
from keeper.protocols.aave_v3.liquidator import lost_the_race
from tests.integration.test_sender import make_sender
from tests.unit.test_account import USDC, WETH
from tests.unit.test_planner import (
    CONFIG,
    DEEP_WETH_USDC,
    USDC_UNIT,
    devnet_user_plan,
    reserves,
)


def request(shares: frozenset[str] | None) -> TxRequest:
    return TxRequest(to="0x" + "11" * 20, data=b"", expected_profit_native=1, shares=shares)


def sender() -> Sender:
    return make_sender(_NoRpc())  # type: ignore[arg-type]


class _NoRpc:
    async def call(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("no read expected")


def handed(s: Sender, *shares: frozenset[str] | None) -> None:
    for touched in shares:
        s.first_sends.handed_out(touched)


def test_only_a_send_that_touches_the_same_pool_makes_a_simulation_stale() -> None:
    s = sender()
    weth_usdc, wbtc_usdc = frozenset({"weth/usdc"}), frozenset({"wbtc/usdc"})
    since = s.first_sends.count
    assert not s.first_sends.overlap(weth_usdc, since)  # nothing handed out meanwhile
    handed(s, wbtc_usdc, frozenset())  # another pool, and a liquidation that keeps
    assert not s.first_sends.overlap(weth_usdc, since)
    assert not s.first_sends.overlap(frozenset(), since)
    handed(s, weth_usdc)
    assert s.first_sends.overlap(weth_usdc, since)
    assert not s.first_sends.overlap(weth_usdc, s.first_sends.count)  # simulated after it: fresh


def test_a_send_that_says_nothing_of_what_it_touches_overlaps_everything() -> None:
    s = sender()
    since = s.first_sends.count
    handed(s, None)
    assert s.first_sends.overlap(frozenset(), since)
    s2 = sender()
    handed(s2, frozenset({"weth/usdc"}))
    assert s2.first_sends.overlap(None, 0)


def test_a_plan_touches_the_pairs_it_sells_through_and_a_kept_one_none() -> None:
    quoter = UniswapV2Quoter(reserves(DEEP_WETH_USDC))
    sold = devnet_user_plan(quoter)
    assert isinstance(sold, Plan)
    assert _touches(sold, isolated=False) == {"/".join(sort_tokens(WETH, USDC))}
    own = Funding(flash_premium_bps=5, own_balances={USDC: 20_000 * USDC_UNIT})
    kept = devnet_user_plan(UniswapV2Quoter(reserves((WETH, 10**18, USDC, 1_800 * USDC_UNIT))),
                            funding=own, config=replace(CONFIG, keep_collateral=True))
    assert isinstance(kept, Plan) and kept.params.keep_collateral
    assert _touches(kept, isolated=False) == frozenset()
    # An isolated collateral's total debt is one counter every liquidation against it lowers.
    assert _touches(kept, isolated=True) == {f"isolated:{WETH.lower()}"}
    assert state_for(request(_touches(kept, isolated=True))) == "pending"


def test_a_send_that_shares_nothing_is_simulated_at_the_head() -> None:
    # The pending block is built from the node's whole mempool on every call: only a send that
    # may meet ours in a pool (or says nothing of what it touches) is checked on top of them.
    assert state_for(request(frozenset())) == "latest"
    assert state_for(request(frozenset({"weth/usdc"}))) == "pending"
    assert state_for(request(None)) == "pending"
    follower = replace(request(frozenset()), after=PendingTx(
        "0x" + "ab" * 32, "0x" + "22" * 20, "0x" + "33" * 20, b"", 0, 21_000, Fees(1, 1)))
    assert state_for(follower) == "pending"


async def test_a_simulation_at_the_head_reads_the_next_base_fee_from_it() -> None:
    asked: list[tuple[str, list[Any]]] = []
    header = {"number": hex(100), "baseFeePerGas": hex(8 * 10**9), "gasUsed": hex(30_000_000),
              "gasLimit": hex(30_000_000)}

    class Reads:
        async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
            asked.extend(calls)
            return [header, "0x", hex(10**18)]

    req = replace(request(frozenset()), gas_limit=500_000, known_gas=400_000)
    sim = await Simulator(Reads(), "0x" + "44" * 20).simulate(req, "latest")  # type: ignore[arg-type]
    assert sim.reason is None and sim.gas == 400_000
    assert sim.head == 100  # the head itself, not the block after it
    assert sim.base_fee == next_base_fee(8 * 10**9, 30_000_000, 30_000_000) == 9 * 10**9
    assert all("latest" in params and "pending" not in params for _, params in asked)



class _MiningNode:
    """Answers a simulation at the head (header, call at the traced limit, balance): the
    call refused while the node mines ``mined`` blocks (the first ``refusals`` calls), then
    passing; ``eth_blockNumber`` answers the head plus the blocks mined, once ``sealing``
    looks have seen the old head (the block is still being sealed)."""

    def __init__(self, refusals: int, mined: int, sealing: int = 0) -> None:
        self.refusals, self.mined, self.calls, self.numbers = refusals, mined, 0, 0
        self.sealing = sealing

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        if calls[0][0] == "eth_blockNumber":
            self.numbers += 1
            return [hex(100 + (self.mined if self.numbers > self.sealing else 0))]
        self.calls += 1
        header = {"number": hex(100 + (self.mined if self.calls > 1 else 0)),
                  "baseFeePerGas": hex(10**9), "gasUsed": "0x0", "gasLimit": hex(30_000_000)}
        if self.calls <= self.refusals:
            # NothingLiquidated(): every order of a batch failed (an interest update underflowed
            # on the half-mined block).
            return [header, RpcResponseError("eth_call", 3, "execution reverted",
                                             "0x" + "ab" * 4), hex(10**18)]
        return [header, "0x", hex(10**18)]


async def test_a_refusal_while_a_block_came_is_simulated_once_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate_module, "SEALING_WAITS", (0.0, 0.0))
    req = replace(request(frozenset()), gas_limit=500_000, known_gas=400_000)
    node = _MiningNode(refusals=1, mined=1)
    sim = await Simulator(node, "0x" + "44" * 20).simulate(req, "latest")  # type: ignore[arg-type]
    assert sim.reason is None and sim.head == 101 and node.calls == 2
    # The block sealed only by the third look: still seen, still simulated once more.
    node = _MiningNode(refusals=1, mined=1, sealing=2)
    sim = await Simulator(node, "0x" + "44" * 20).simulate(req, "latest")  # type: ignore[arg-type]
    assert sim.reason is None and node.calls == 2 and node.numbers == 3
    # Refused again on the new block: that answer stands (once more only, not a loop).
    node = _MiningNode(refusals=2, mined=1)
    sim = await Simulator(node, "0x" + "44" * 20).simulate(req, "latest")  # type: ignore[arg-type]
    assert sim.reason is not None and node.calls == 2


async def test_a_refusal_with_no_block_since_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate_module, "SEALING_WAITS", (0.0, 0.0))
    req = replace(request(frozenset()), gas_limit=500_000, known_gas=400_000)
    node = _MiningNode(refusals=1, mined=0)
    sim = await Simulator(node, "0x" + "44" * 20).simulate(req, "latest")  # type: ignore[arg-type]
    # Three looks for a block being sealed, none came: the refusal stands.
    assert sim.reason is not None and node.calls == 1 and node.numbers == 3
    # A passing simulation asks nothing more.
    node = _MiningNode(refusals=0, mined=1)
    sim = await Simulator(node, "0x" + "44" * 20).simulate(req, "latest")  # type: ignore[arg-type]
    assert sim.reason is None and node.calls == 1 and node.numbers == 0


def test_a_revert_that_says_the_account_was_taken_first_is_a_lost_race() -> None:
    for reason in ("reverted: 45", "reverted: 46", "reverted: 47",
                   "reverted: CollateralCannotBeLiquidated()",
                   "reverted: HealthFactorNotBelowThreshold()",
                   "reverted: InsufficientProfit(12, 50)"):
        assert lost_the_race(reason), reason
    for reason in ("reverted: panic 0x11", "reverted: 145", "reverted: Loss(3)",
                   "reverted: NotOwner()", "", "execution reverted"):
        assert not lost_the_race(reason), reason


def test_a_lost_race_costs_its_gas_but_not_the_breaker() -> None:
    from keeper.exec.accounting import Accounting
    from keeper.exec.flight import Flight
    from keeper.exec.guards import Guards
    from keeper.exec.nonce import NonceLease
    from keeper.obs.metrics import Metrics

    guards = Guards.from_config(10**18, 2, False)
    accounting = Accounting(guards, Metrics(), dry_run=False)
    receipt = {"transactionHash": "0x" + "ab" * 32, "gasUsed": hex(250_000),
               "effectiveGasPrice": hex(10**9), "status": "0x0", "blockNumber": hex(9)}
    flight = Flight(request(frozenset()), NonceLease(1), 250_000, 300_000)
    for _ in range(3):
        lost = accounting.included(flight, receipt, 0.0, revert="reverted: 46", lost_race=True)
        assert lost.status is Status.REVERTED and lost.reason.endswith("(lost the race)")
    assert not guards.breaker.is_open
    for _ in range(2):
        accounting.included(flight, receipt, 0.0, revert="reverted: panic 0x11")
    assert guards.breaker.is_open
