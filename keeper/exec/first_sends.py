"""Our first sends as a simulation must see them: how many went out, what each touches
(``TxRequest.shares``: the pools and reserves it trades in), and which the node has not
answered yet. A simulation begun before a send that touches its shares is stale once that send
is handed out; one on the pending state must wait for the node's answer to those sends."""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import islice

_KEPT = 4_096  # sends remembered; a simulation older than that many sends is stale


class FirstSends:
    """The sender's record of its first sends; one per sender."""

    def __init__(self, kept: int = _KEPT) -> None:
        self.count = 0  # first sends handed out so far
        self._shares: deque[frozenset[str] | None] = deque(maxlen=kept)
        self._unanswered: dict[asyncio.Future[None], frozenset[str] | None] = {}

    def handed_out(self, shares: frozenset[str] | None,
                   answer: asyncio.Future[None] | None = None) -> None:
        """A first send touching ``shares`` went out; ``answer`` resolves with the node's."""
        self.count += 1
        self._shares.append(shares)
        if answer is not None:
            self._unanswered[answer] = shares
            answer.add_done_callback(self._unanswered.pop)

    def overlap(self, shares: frozenset[str] | None, since: int) -> bool:
        """Whether a send handed out after the ``since``-th may change what a request touching
        ``shares`` does (None: touches anything)."""
        later = self.count - since
        if later <= 0 or later > len(self._shares) or shares is None:
            return later > 0
        return any(s is None or s & shares for s in islice(reversed(self._shares), later))

    async def answered(self, shares: frozenset[str] | None) -> None:
        """Once the node answered our sends that touch ``shares``: the pending state must hold
        them (a kill -9 fault test saw a send simulated before ours reached the node)."""
        if waiting := [f for f, s in self._unanswered.items() if not f.done()
                       and (shares is None or s is None or s & shares)]:
            await asyncio.wait(waiting)
