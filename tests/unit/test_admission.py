"""Fee admission: gas limit, fees and the refusals, in order, from a simulation (no IO)."""

from __future__ import annotations

from keeper.domain.fees import GWEI, FeePolicy, Fees
from keeper.exec.admission import Admission, admit
from keeper.exec.guards import Guards, Refusal
from keeper.exec.simulate import Simulation
from keeper.exec.tx import TxRequest

POLICY = FeePolicy(priority_fee_share_ppm=100_000, max_priority_fee=50 * GWEI, max_fee=500 * GWEI)
ONE_ETH = 10**18
BASE_FEE = 10 * GWEI


def sim(gas: int = 100_000, balance: int = ONE_ETH, checked_limit: int = 0) -> Simulation:
    return Simulation(None, gas, BASE_FEE, balance, 7, "0x", checked_limit)


def guards(budget: int = ONE_ETH) -> Guards:
    return Guards.from_config(budget, 3, kill_switch=False)


def request(**kw: object) -> TxRequest:
    fields: dict[str, object] = {"to": "0x" + "11" * 20, "data": b"",
                                 "expected_profit_native": ONE_ETH // 100} | kw
    return TxRequest(**fields)  # type: ignore[arg-type]


def test_admitted_with_margin_policy_fees_and_expected_cost() -> None:
    got = admit(request(), sim(), POLICY, guards(), gas_margin_percent=20, now=0.0)
    # tip = 10% of 0.01 ETH over 100k gas = 10 gwei; cap = 2 × base fee + tip
    assert got == Admission(gas_limit=120_000, fees=Fees(30 * GWEI, 10 * GWEI),
                            cost=100_000 * 20 * GWEI)


def test_gas_limit_is_at_least_the_hint_and_the_checked_limit() -> None:
    hinted = admit(request(gas_limit=500_000), sim(), POLICY, guards(), gas_margin_percent=20,
                   now=0.0)
    checked = admit(request(gas_limit=100_000), sim(checked_limit=150_000), POLICY, guards(),
                    gas_margin_percent=20, now=0.0)
    assert isinstance(hinted, Admission) and hinted.gas_limit == 500_000
    assert isinstance(checked, Admission) and checked.gas_limit == 150_000


def test_a_limit_checked_on_the_head_gets_room_for_the_including_blocks_updates() -> None:
    # Traced at 100k and checked at 130k on the head: sent with 15% of the traced gas more,
    # for the interest updates the head's call skipped (tests/integration/
    # test_including_block_gas.py shows the miss on the real Pool); at most 200k more.
    got = admit(request(gas_limit=130_000, known_gas=100_000), sim(), POLICY, guards(),
                gas_margin_percent=20, now=0.0)
    assert isinstance(got, Admission) and got.gas_limit == 145_000
    batch = admit(request(gas_limit=3_000_000, known_gas=2_400_000, expected_profit_native=ONE_ETH),
                  sim(2_400_000), POLICY,
                  guards(), gas_margin_percent=20, now=0.0)
    assert isinstance(batch, Admission) and batch.gas_limit == 3_200_000
    # Estimated, not checked at a limit: the estimate's margin, as before.
    estimated = admit(request(gas_limit=100_000), sim(), POLICY, guards(),
                      gas_margin_percent=20, now=0.0)
    assert isinstance(estimated, Admission) and estimated.gas_limit == 120_000


def test_exact_fees_are_bid_as_given_within_caps_and_above_the_base_fee() -> None:
    exact = Fees(40 * GWEI, 3 * GWEI)
    got = admit(request(exact_fees=exact), sim(), POLICY, guards(), gas_margin_percent=0, now=0.0)
    assert isinstance(got, Admission) and got.fees == exact
    low = admit(request(exact_fees=Fees(BASE_FEE - 1, 1)), sim(), POLICY, guards(),
                gas_margin_percent=0, now=0.0)
    assert isinstance(low, Refusal) and low.code == "fee_cap" and "below the base fee" in low.message
    high = admit(request(exact_fees=Fees(600 * GWEI, GWEI)), sim(), POLICY, guards(),
                 gas_margin_percent=0, now=0.0)
    assert isinstance(high, Refusal) and high.code == "fee_cap" and "caps" in high.message


def test_refusals_unprofitable_guard_and_balance() -> None:
    dust = admit(request(expected_profit_native=1000), sim(), POLICY, guards(),
                 gas_margin_percent=20, now=0.0)
    assert isinstance(dust, Refusal) and dust.code == "unprofitable"
    assert dust.message.startswith("unprofitable")
    over = admit(request(), sim(), POLICY, guards(budget=1000), gas_margin_percent=20, now=0.0)
    assert isinstance(over, Refusal) and over.code == "gas_budget"
    poor = admit(request(value=1), sim(balance=120_000 * 30 * GWEI), POLICY, guards(),
                 gas_margin_percent=20, now=0.0)
    assert isinstance(poor, Refusal) and poor.code == "balance"
    exact = admit(request(), sim(balance=120_000 * 30 * GWEI), POLICY, guards(),
                  gas_margin_percent=20, now=0.0)
    assert isinstance(exact, Admission)  # the worst case exactly covered is enough
