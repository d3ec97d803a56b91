"""EIP-1559 fees for a liquidation: the priority-fee policy and the replacement rule.

Pure integer math in wei. The policy bids a configured share of the expected profit per unit of
gas as the priority fee (what a block builder is paid to include us first), capped by
``max_priority_fee``; the fee cap is ``2 × base fee + tip`` so that the transaction stays
includable while the base fee rises for a block or two (it may rise 12.5% per block), capped by
``max_fee``.

A replacement (same nonce) must raise both the fee cap and the tip by at least 10%: that is
geth's txpool rule (``PriceBump = 10``). Anvil accepts less, real nodes do not, so we follow geth.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

GWEI = 10**9
PPM = 1_000_000
REPLACEMENT_BUMP_PERCENT = 10
"""geth's ``txpool.pricebump``: a same-nonce replacement raises fee cap and tip by ≥ 10%."""


def gwei_to_wei(gwei: float) -> int:
    """Config values are gwei floats; money inside the keeper is integer wei.

    Goes through ``Decimal(str(x))`` so that 1.1 gwei is exactly 1_100_000_000 wei.
    """
    return int(Decimal(str(gwei)) * GWEI)


@dataclass(frozen=True, slots=True)
class Fees:
    """The two EIP-1559 fee fields of a transaction, in wei per gas."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def __post_init__(self) -> None:
        if self.max_fee_per_gas < 0 or self.max_priority_fee_per_gas < 0:
            raise ValueError("fees must be non-negative")
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            raise ValueError("priority fee above the fee cap is invalid under EIP-1559")

    def effective_price(self, base_fee: int) -> int:
        """What one unit of gas costs when mined in a block with ``base_fee``."""
        return min(self.max_fee_per_gas, base_fee + self.max_priority_fee_per_gas)


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """How much to bid. ``priority_fee_share_ppm`` is parts per million of profit per gas."""

    priority_fee_share_ppm: int
    max_priority_fee: int
    max_fee: int
    min_priority_fee: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.priority_fee_share_ppm <= PPM:
            raise ValueError("priority_fee_share_ppm must be within 0..1_000_000")
        if self.max_fee <= 0 or self.max_priority_fee < 0 or self.min_priority_fee < 0:
            raise ValueError("fee caps must be positive")

    @classmethod
    def from_config(
        cls, priority_fee_share: float, max_priority_fee_gwei: float, max_fee_gwei: float,
        min_priority_fee_gwei: float = 0.0,
    ) -> FeePolicy:
        """Build from the executor config's float fields (share in 0..1, caps in gwei)."""
        return cls(
            priority_fee_share_ppm=int(Decimal(str(priority_fee_share)) * PPM),
            max_priority_fee=gwei_to_wei(max_priority_fee_gwei),
            max_fee=gwei_to_wei(max_fee_gwei),
            min_priority_fee=min(gwei_to_wei(min_priority_fee_gwei),
                                 gwei_to_wei(max_priority_fee_gwei)),
        )

    def allows(self, fees: Fees) -> bool:
        """True when ``fees`` stay within both configured caps."""
        return (
            fees.max_fee_per_gas <= self.max_fee
            and fees.max_priority_fee_per_gas <= self.max_priority_fee
        )


def priority_fee(policy: FeePolicy, expected_profit: int, gas: int) -> int:
    """The tip: ``share × profit / gas``, floored, within ``[min_priority_fee, max_priority_fee]``."""
    if gas <= 0:
        raise ValueError("gas must be positive")
    share = max(expected_profit, 0) * policy.priority_fee_share_ppm // PPM // gas
    return min(max(share, policy.min_priority_fee), policy.max_priority_fee)


def initial_fees(policy: FeePolicy, base_fee: int, expected_profit: int, gas: int) -> Fees:
    """Fees for a first send into a block whose base fee is ``base_fee``.

    The tip never exceeds the fee cap: when ``max_fee`` is the binding constraint the tip
    shrinks with it (the transaction may then wait for the base fee to fall).
    """
    tip = priority_fee(policy, expected_profit, gas)
    cap = min(2 * base_fee + tip, policy.max_fee)
    return Fees(max_fee_per_gas=cap, max_priority_fee_per_gas=min(tip, cap))


def _raise_by(value: int, percent: int) -> int:
    # Round up, and raise by at least 1 wei, so that a 0 tip is raised too and the result
    # always clears a node's "≥ old × 1.1" check computed in integers.
    return max(value + 1, -(-value * (100 + percent) // 100))


def bump(fees: Fees, percent: int = REPLACEMENT_BUMP_PERCENT) -> Fees:
    """Replacement fees: both fee cap and tip raised by ≥ ``percent``% (and ≥ 1 wei)."""
    return Fees(
        max_fee_per_gas=_raise_by(fees.max_fee_per_gas, percent),
        max_priority_fee_per_gas=_raise_by(fees.max_priority_fee_per_gas, percent),
    )


def replacement_fees(
    policy: FeePolicy, old: Fees, base_fee: int, expected_profit: int, gas: int
) -> Fees:
    """Fees for a same-nonce replacement: at least ``bump(old)`` and at least what a first
    send would bid now (the base fee may have run away from the old cap)."""
    bumped = bump(old)
    tip = max(bumped.max_priority_fee_per_gas, priority_fee(policy, expected_profit, gas))
    # Above the policy cap only when the bump itself is; the caller checks policy.allows().
    cap = max(bumped.max_fee_per_gas, min(2 * base_fee + tip, policy.max_fee), tip)
    return Fees(max_fee_per_gas=cap, max_priority_fee_per_gas=tip)


def outbid_fees(policy: FeePolicy, held: Fees, fees: Fees, base_fee: int, expected_profit: int,
                gas: int) -> Fees | None:
    """Fees at least ``fees`` that replace ``held`` (a transaction the node holds at the same
    nonce), or None when that is over the caps or does not pay."""
    raised = replacement_fees(policy, held, base_fee, expected_profit, gas)
    raised = Fees(max_fee_per_gas=max(raised.max_fee_per_gas, fees.max_fee_per_gas),
                  max_priority_fee_per_gas=max(raised.max_priority_fee_per_gas,
                                               fees.max_priority_fee_per_gas))
    if not policy.allows(raised) or not is_profitable(expected_profit, gas, raised, base_fee):
        return None
    return raised


def is_valid_replacement(old: Fees, new: Fees, percent: int = REPLACEMENT_BUMP_PERCENT) -> bool:
    """geth's check: both new fields ≥ old × (100 + percent) / 100."""
    return (
        new.max_fee_per_gas * 100 >= old.max_fee_per_gas * (100 + percent)
        and new.max_priority_fee_per_gas * 100 >= old.max_priority_fee_per_gas * (100 + percent)
    )


def gas_cost(gas: int, fees: Fees, base_fee: int) -> int:
    """Wei paid for ``gas`` units in a block with ``base_fee``."""
    return gas * fees.effective_price(base_fee)


def is_profitable(expected_profit: int, gas: int, fees: Fees, base_fee: int) -> bool:
    """True when the profit (gross of gas) beats the gas the transaction would pay now."""
    return expected_profit > gas_cost(gas, fees, base_fee)


def next_base_fee(base_fee: int, gas_used: int, gas_limit: int) -> int:
    """EIP-1559: the base fee of the block after one with these figures."""
    target = gas_limit // 2
    if target == 0 or gas_used == target:
        return base_fee
    if gas_used > target:
        return base_fee + max(1, base_fee * (gas_used - target) // target // 8)
    return max(0, base_fee - base_fee * (target - gas_used) // target // 8)
