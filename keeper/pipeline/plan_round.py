"""One block's planning round: reads shared by the accounts planned on it, and the state our
own plans of that block leave behind for the next plan.

Liquidations sent into the same block run one after the other, each on the pool state the
previous one left: a second liquidation selling WETH for USDC gets less than the pool showed
before the first. So the round applies each accepted plan's swap (its whole seized collateral,
along its path, with Uniswap V2's own math) to its snapshot of the reserves, and takes what the
plan spends of our contract's own balance off the funding, before the next account is planned.

Reads are shared too: the accounts of one block that hold the same assets need the same
pools, funding and header, so a round gathers them once per asset set (the next block's
timestamp is recomputed from the header at each use: with wall-clock stamps it moves).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise
from typing import Protocol

from keeper.domain.amm import SwapRevert, get_amount_out, sort_tokens
from keeper.domain.plan import Plan
from keeper.pipeline.gather import Gathered, next_block
from keeper.protocols.uniswap_v2.pair import Pair


class InFlight(Protocol):
    """A plan of ours in the air, and the nonce its transaction took (None before it has one)."""

    @property
    def plan(self) -> Plan: ...

    @property
    def nonce(self) -> int | None: ...


class PlanRound:
    """The planning of the block after ``block`` (the book's block when it began)."""

    def __init__(self, block: int, in_flight: Sequence[InFlight] = (), head: str = "") -> None:
        self.block = block
        self.head = head  # the book's block hash: the reads prefetched for it are this round's
        self.plans = 0  # accepted in this round
        self._gathered: dict[tuple[str, ...], Gathered] = {}
        self._pools: dict[Pair, tuple[int, int]] = {}  # after our plans' swaps
        self._spent: dict[str, int] = {}  # of our contract's own balance, by asset
        # Plans of earlier rounds still in flight: they may be mined ahead of this round's
        # plans. Applied on the first view, unless its reads show them mined already (our
        # sender's nonce there is past theirs): applied twice, a sale would make the pool
        # look better than it is for the trades that buy what it sold.
        self._carried = list(in_flight)

    def cached(self, assets: Sequence[str]) -> Gathered | None:
        """The reads gathered for ``assets`` earlier in this round, if any."""
        return self._gathered.get(tuple(assets))

    def remember(self, assets: Sequence[str], gathered: Gathered) -> None:
        self._gathered[tuple(assets)] = gathered

    def view(self, gathered: Gathered, *, block_time: int | None) -> Gathered:
        """``gathered`` as the next plan must see it: pools after our swaps, funding less
        what our plans spend, and (with wall-clock stamps) the next block's time as of now."""
        carried, self._carried = self._carried, []
        mined_below = gathered.sender_nonce
        for flying in carried:
            nonce = flying.nonce
            if mined_below is not None and nonce is not None and nonce < mined_below:
                continue  # in the reads already
            self.apply(flying.plan, gathered)
            self.plans -= 1  # not this round's
        changed: dict[str, object] = {}
        if self._pools and any(p in self._pools for p in gathered.reserves):
            changed["reserves"] = {p: self._pools.get(p, r) for p, r in gathered.reserves.items()}
        if self._spent:
            own = gathered.funding.own_balances
            left = {a: max(b - self._spent.get(a, 0), 0) for a, b in own.items()}
            changed["funding"] = replace(gathered.funding, own_balances=left)
        if gathered.header is not None and block_time is None:
            changed["next_block"] = next_block(gathered.header, block_time=None, now=time.time())
        return replace(gathered, **changed) if changed else gathered  # type: ignore[arg-type]

    def apply(self, plan: Plan, gathered: Gathered) -> None:
        """``plan`` is accepted for this block: the next plan sees the pools it swaps through
        and the funding it spends as they will be after it (``gathered`` is the view it was
        planned on)."""
        self.plans += 1
        if not plan.use_flash_loan:
            self._spent[plan.debt_asset] = self._spent.get(plan.debt_asset, 0) + plan.debt_to_cover
        amount = plan.collateral_seized
        for token_in, token_out in pairwise(plan.swap_path):
            key = sort_tokens(token_in, token_out)
            reserves = self._pools.get(key) or gathered.reserves.get(key)
            if reserves is None or amount <= 0:
                return
            forward = token_in == key[0]
            reserve_in, reserve_out = reserves if forward else reserves[::-1]
            try:
                out = get_amount_out(amount, reserve_in, reserve_out)
            except SwapRevert:
                return
            after = (reserve_in + amount, reserve_out - out)
            self._pools[key] = after if forward else (after[1], after[0])
            amount = out
