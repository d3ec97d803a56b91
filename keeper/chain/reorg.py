"""Reorg detection from block headers: pure bookkeeping of the last N canonical hashes.

``ReorgTracker`` holds no IO. ``HeadFollower`` (heads.py) fetches blocks and asks the tracker
what it means: a head extends the chain, is one we have, leaves a gap, or forks off it; for a
fork it walks back by parent hash until the tracker recognises an ancestor, then ``rewind``
reports the ``Reorg``. Anvil's ``anvil_reorg`` sends no ``removed: true`` logs, and not every
provider does, so headers are the one source of truth for reorgs.
"""

from __future__ import annotations

import enum
from collections import deque

from keeper.chain.types import Head, Reorg
from keeper.errors import KeeperError, RpcResponseError

DEFAULT_WINDOW = 64


class ReorgTooDeep(KeeperError, RuntimeError):
    """The chain forked below the oldest block we remember; state must be rebuilt."""


# How nodes say that the block a read names is not (or no longer) there: anvil's
# "BlockOutOfRangeError: block height is 343 but requested was 344", "unknown block" and, for a
# hash, "Resource not found" (EIP-1474 code -32001); geth's "header not found"; EIP-1898's
# "block not found" / "requested block ... not found".
_BLOCK_GONE = ("block height is", "unknown block", "header not found", "block not found",
               "blockoutofrange", "block out of range", "resource not found")


def block_gone(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it: a multicall wraps the node's error) is the node
    saying the block a read named does not exist (any more): a reorg or a restore is in
    progress, and the read is tried again once the sync has caught up, not reported as a
    failure."""
    seen: BaseException | None = exc
    for _ in range(5):  # a short chain of causes; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, RpcResponseError):
            m = seen.rpc_message.lower()
            if any(s in m for s in _BLOCK_GONE) or ("not found" in m and "block" in m):
                return True
        seen = seen.__cause__
    return False


class Fit(enum.Enum):
    """How a head relates to the chain we track."""

    FIRST = "first"  # we track nothing yet
    EXTENDS = "extends"  # next number, parent is our tip
    KNOWN = "known"  # same number and hash as one we have
    GAP = "gap"  # higher than tip + 1: the blocks in between are missing
    FORK = "fork"  # its parent is not our block at number - 1 (or it replaces one of ours)


class ReorgTracker:
    """The last ``window`` canonical heads, in order, and the rules to extend or rewind them."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        self.window = window
        self._heads: deque[Head] = deque(maxlen=window)

    @property
    def tip(self) -> Head | None:
        return self._heads[-1] if self._heads else None

    @property
    def oldest(self) -> Head | None:
        return self._heads[0] if self._heads else None

    def __len__(self) -> int:
        return len(self._heads)

    def head_at(self, number: int) -> Head | None:
        """Our head at ``number``, or None outside the window."""
        if not self._heads:
            return None
        i = number - self._heads[0].number
        if 0 <= i < len(self._heads):
            return self._heads[i]
        return None

    def hash_at(self, number: int) -> str | None:
        head = self.head_at(number)
        return None if head is None else head.hash

    def fit(self, head: Head) -> Fit:
        """Classify ``head`` against our chain (does not change it)."""
        tip = self.tip
        if tip is None:
            return Fit.FIRST
        if head.number <= tip.number and self.hash_at(head.number) == head.hash:
            return Fit.KNOWN
        if head.number == tip.number + 1:
            return Fit.EXTENDS if head.parent_hash == tip.hash else Fit.FORK
        if head.number > tip.number + 1:
            return Fit.GAP
        return Fit.FORK

    def links(self, head: Head) -> bool:
        """True when ``head``'s parent is our block at ``head.number - 1``."""
        return self.hash_at(head.number - 1) == head.parent_hash

    def can_walk_below(self, number: int) -> bool:
        """True if a fork search may still look at ``number`` (it is within our window)."""
        oldest = self.oldest
        return oldest is not None and number >= oldest.number

    def push(self, head: Head) -> None:
        """Append the next canonical head; it must extend our tip (or start the chain)."""
        fit = self.fit(head)
        if fit not in (Fit.FIRST, Fit.EXTENDS):
            raise ValueError(f"head {head.number} {head.hash} does not extend the tip ({fit.value})")
        self._heads.append(head)

    def rewind(self, ancestor_number: int) -> Reorg | None:
        """Drop our heads above ``ancestor_number``; the Reorg, or None if nothing was dropped."""
        tip = self.tip
        ancestor = self.head_at(ancestor_number)
        if tip is None or ancestor is None:
            raise ReorgTooDeep(
                f"common ancestor {ancestor_number} is outside the last {self.window} blocks"
            )
        depth = tip.number - ancestor_number
        if depth <= 0:
            return None
        for _ in range(depth):
            self._heads.pop()
        return Reorg(common_ancestor=ancestor, depth=depth, old_tip=tip)

    def reset(self, head: Head | None = None) -> None:
        """Forget everything (after ``ReorgTooDeep``), optionally starting again at ``head``."""
        self._heads.clear()
        if head is not None:
            self._heads.append(head)
