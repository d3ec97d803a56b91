"""Which applied blocks left an account alone: what a liquidation in flight needs to know
before it asks the node again whether it would still succeed.

A liquidation that keeps the collateral depends on its account and the prices of that
account's assets (our contract's balance is ours to spend: the planning round accounts for it).
On a block that touched neither, the answer of the last check stands, and the per-block
``eth_call`` of every flight is skipped: 256 flights waiting their turn for block space in the
10,000-borrower crash made ~250 such calls a block. Anything not seen for sure (a block the
book has not applied yet, a rollback, a reserve's parameters changed) is not quiet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from keeper.protocols.aave_v3.book import PositionBook
from keeper.protocols.aave_v3.book_state import BlockUpdate

KEPT_BLOCKS = 256  # more than a flight waits for block space


@dataclass(frozen=True, slots=True)
class _Seen:
    touched: frozenset[str]
    moved: frozenset[str]
    everyone: bool  # reserve parameters or price sources changed


class QuietBlocks:
    """The applied blocks' changes, by number (fed by the sync's ``on_update``)."""

    def __init__(self, book: Callable[[], PositionBook]) -> None:
        self._book = book
        self._blocks: OrderedDict[int, _Seen] = OrderedDict()

    def record(self, update: BlockUpdate) -> None:
        if update.rollback:
            self._blocks.clear()  # what the undone blocks said no longer holds
            return
        self._blocks[update.block.number] = _Seen(
            update.touched_users, update.moved_assets,
            update.market_changed or update.sources_changed)
        while len(self._blocks) > KEPT_BLOCKS:
            self._blocks.popitem(last=False)

    def quiet(self, user: str, after: int, head: int) -> bool:
        """True when every block in ``(after, head]`` is applied and touched neither ``user``
        nor the price of an asset it holds."""
        if head <= after:
            return True
        assets: frozenset[str] | None = None
        for number in range(after + 1, head + 1):
            seen = self._blocks.get(number)
            if seen is None or seen.everyone or user in seen.touched:
                return False
            if seen.moved:
                if assets is None:
                    assets = frozenset(self._book().account(user).reserves)
                if assets & seen.moved:
                    return False
        return True
