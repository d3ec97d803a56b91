"""A send waiting for its turn, kept simulated on the chain's newest block.

Sends take consecutive nonces in planning order (``keeper.exec.order``): in a crash hundreds
are simulated, then wait for the ones planned before them. A block mined meanwhile can make a
simulation stale (a kill -9 fault test saw a send wait 54 blocks behind one the node kept
refusing, go out on its old simulation, and revert). Simulated again only once its turn came,
the sends queued across a block went out one simulation after the other: with 600M-gas blocks
in the 10,000-borrower race seven such sends took ~600 ms to go out (one every 20-130 ms, anvil
busy), and the thirty-odd behind them waited for that. So a waiting send is simulated again as
soon as a block passes its simulation, beside the others waiting; when its turn comes it looks
at the head once more (one read shared by the flights asking) and is simulated again only if a
block came after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable

from keeper.exec.admission import Admission
from keeper.exec.first_sends import FirstSends
from keeper.exec.order import Turn
from keeper.exec.reads import ChainReads
from keeper.exec.simulate import Simulation
from keeper.exec.tx import TxOutcome

Checked = Admission | TxOutcome  # how a simulation was judged: sent as admitted, or not


async def simulated_till_turn(
    turn: Turn, reads: ChainReads, first_sends: FirstSends, sim: Simulation, checked: Checked,
    simulate: Callable[[], Awaitable[tuple[Simulation, Checked]]],
) -> tuple[Simulation, Checked, int | None]:
    """Once ``turn`` is due: the newest simulation of its send (``sim`` and what it was
    ``checked`` to, or ``simulate()``'s, run again at each block that passed it), and how
    many of our first sends were out when that one began (None: still ``sim``). Returns at
    once for a turn already due, and early with a simulation judged not to be sent."""
    if turn.due:
        return sim, checked, None
    handed_out: int | None = None
    due = asyncio.ensure_future(turn.wait())
    try:
        while True:
            block = asyncio.ensure_future(reads.next_head(math.inf, since=(sim.head, "")))
            try:
                await asyncio.wait((due, block), return_when=asyncio.FIRST_COMPLETED)
            finally:
                block.cancel()  # the head read it may be in is shared: only this wait ends
            if due.done():
                break
            head = block.result()  # None only at a deadline, and there is none
            if head is None or head[0] <= sim.head:
                # A failed read (it says the last head seen) or a chain gone back: not a
                # block past this simulation; look again a poll later.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(due), reads.poll_interval)
                continue
            handed_out = first_sends.count
            sim, checked = await simulate()
            if isinstance(checked, TxOutcome):
                return sim, checked, handed_out
    finally:
        due.cancel()
    if await reads.past(sim.head):
        handed_out = first_sends.count
        sim, checked = await simulate()
    return sim, checked, handed_out
