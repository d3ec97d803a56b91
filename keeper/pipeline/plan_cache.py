"""Remember why an account got no plan, keyed by everything the decision read.

Planning one account costs ~10 ms (mostly the profit optimiser); in a crash most flagged
accounts do not pay and were re-planned every few blocks for nothing. A ``PlanKey`` holds the
inputs of one decision: the account's balances and eMode in the book, the oracle prices of its
assets, the reserves of the pools its routes may use, the gas price band and the funding of
our contract in its assets. The same key gives the same verdict (``plan_liquidation`` is pure),
so a cached rejection is returned as is until one of those changes.

Not cached: a grace period (it ends at a known time), missing data (a read may fill it) and
healthy (cheap, and interest accrual, which no input of the key shows, can flip it);
plans are never cached (they are sent, and the account is then in flight or re-scanned).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from keeper.domain.account import Market, UserAccount
from keeper.domain.plan import GasPrice, Rejection, RejectionReason
from keeper.pipeline.pair_search import Funding

# A band is 1/8 of a doubling wide (~9%): a base fee wobbling by a few percent from block to
# block does not re-plan everyone, a move that could flip a verdict does.
_BANDS_PER_DOUBLING = 8
# HEALTHY is cheap to decide and interest alone can flip it, which no key input shows.
_NOT_CACHED = frozenset({RejectionReason.GRACE_PERIOD, RejectionReason.MISSING_DATA,
                         RejectionReason.HEALTHY})


def gas_band(price: GasPrice) -> int:
    """The band of ``price.per_gas`` on a logarithmic scale (0 for a free block)."""
    wei = price.per_gas
    if wei <= 0:
        return 0
    exponent = wei.bit_length() - 1
    # The next 3 bits below the leading one split each doubling into 8 bands.
    fraction = (wei << 3 >> exponent) & 0b111 if exponent >= 0 else 0
    return exponent * _BANDS_PER_DOUBLING + fraction


@dataclass(frozen=True, slots=True)
class PlanKey:
    """The inputs of one planning decision (see the module doc)."""

    account: tuple[object, ...]
    prices: tuple[tuple[str, int], ...]
    pools: tuple[tuple[tuple[str, str], tuple[int, int]], ...]
    gas_band: int
    funding: tuple[object, ...]
    v3_pools: tuple[object, ...] = ()
    """The Uniswap V3 pools' snapshots (price, liquidity, ticks), when V3 routing is on."""


def plan_key(account: UserAccount, market: Market,
             pools: Mapping[tuple[str, str], tuple[int, int]], gas_price: GasPrice,
             funding: Funding, v3_pools: tuple[object, ...] = ()) -> PlanKey:
    """The key of planning ``account`` on these inputs."""
    assets = sorted(account.reserves)
    positions = tuple((a, account.reserves[a]) for a in assets)
    own = funding.own_balances
    return PlanKey(
        account=(account.configuration, account.emode_category, positions),
        prices=tuple((a, market.prices.get(a, 0)) for a in assets),
        pools=tuple(sorted(pools.items())),
        gas_band=gas_band(gas_price),
        funding=(funding.flash_premium_bps, tuple((a, own.get(a, 0)) for a in assets)),
        v3_pools=v3_pools,
    )


class PlanCache:
    """The last rejection of each account and the key it was decided on (LRU-bounded)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[PlanKey, Rejection]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user: str, key: PlanKey) -> Rejection | None:
        """The cached rejection of ``user`` if it was decided on ``key``."""
        entry = self._entries.get(user)
        if entry is None or entry[0] != key:
            self.misses += 1
            return None
        self._entries.move_to_end(user)
        self.hits += 1
        return entry[1]

    def put(self, user: str, key: PlanKey, verdict: object) -> None:
        """Remember ``verdict`` when it is a rejection worth remembering; forget ``user``
        otherwise (a plan: the account's state is about to change)."""
        if not isinstance(verdict, Rejection) or verdict.reason in _NOT_CACHED:
            self._entries.pop(user, None)
            return
        self._entries[user] = (key, verdict)
        self._entries.move_to_end(user)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, user: str) -> None:
        self._entries.pop(user, None)
