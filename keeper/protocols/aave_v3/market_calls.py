"""The parts of the one-call market read that differ by Pool revision.

Each part is a call list built from the hints and a decoder of the same calls' answers, chosen
once per revision (``parts_for``): the reader concatenates the parts, the pipeline never asks
which revision it reads.

* eMode categories: v3.0 ``getEModeCategoryData`` (with its price source); 3.2+ liquid eMode,
  ``getEModeCategoryCollateralConfig`` + label + the collateral, borrowable and ltv-zero
  bitmaps (a Pool without the ltv-zero getter answers a failure: an empty bitmap).
* per reserve: 3.1+ ``getVirtualUnderlyingBalance`` and ``getLiquidationGracePeriod``; 3.3+
  ``getReserveDeficit``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from keeper.chain.abi import Function
from keeper.domain.account import ZERO_ADDRESS, EModeCategory
from keeper.domain.revision import AaveRevision
from keeper.protocols.aave_v3 import abis

Call = tuple[str, Function, tuple[Any, ...]]
Row = tuple[Any, ...] | None


@dataclass(frozen=True, slots=True)
class ReserveExtras:
    """Per-reserve figures of 3.1+ Pools, by asset (empty on older ones)."""

    virtual_balances: dict[str, int]
    grace_periods: dict[str, int]
    deficits: dict[str, int]


@dataclass(frozen=True, slots=True)
class EModePart:
    """How the eMode categories are read: calls per category, and their decoding."""

    fns: tuple[Function, ...]
    decode: Callable[[Sequence[Row]], EModeCategory | None]

    def calls(self, pool: str, ids: Sequence[int]) -> list[Call]:
        return [(pool, fn, (i,)) for i in ids for fn in self.fns]

    def decode_all(self, ids: Sequence[int], rows: Sequence[Row]) -> dict[int, EModeCategory]:
        n, out = len(self.fns), {}
        for k, cid in enumerate(ids):
            category = self.decode(rows[k * n:(k + 1) * n])
            if category is not None:
                out[cid] = category
        return out


def _decode_v30(rows: Sequence[Row]) -> EModeCategory | None:
    (row,) = rows
    if row is None:
        return None
    (e,) = row
    return EModeCategory(ltv=int(e[0]), liquidation_threshold=int(e[1]),
                         liquidation_bonus=int(e[2]), price_source=str(e[3]).lower(),
                         label=str(e[4]))


def _decode_liquid(rows: Sequence[Row]) -> EModeCategory | None:
    config, label, collateral, borrowable, ltvzero = rows
    if config is None or collateral is None or borrowable is None:
        return None
    (c,) = config
    return EModeCategory(
        ltv=int(c[0]), liquidation_threshold=int(c[1]), liquidation_bonus=int(c[2]),
        price_source=ZERO_ADDRESS, label=str(label[0]) if label is not None else "",
        collateral_bitmap=int(collateral[0]), borrowable_bitmap=int(borrowable[0]),
        ltvzero_bitmap=int(ltvzero[0]) if ltvzero is not None else 0,
    )


@dataclass(frozen=True, slots=True)
class ReservePart:
    """The per-reserve calls of a revision, in order, and where each answer goes."""

    fns: tuple[Function, ...]

    def calls(self, pool: str, assets: Sequence[str]) -> list[Call]:
        return [(pool, fn, (a,)) for a in assets for fn in self.fns]

    def decode(self, assets: Sequence[str], rows: Sequence[Row]) -> ReserveExtras:
        out = ReserveExtras({}, {}, {})
        by_fn = {abis.VIRTUAL_UNDERLYING_BALANCE.name: out.virtual_balances,
                 abis.LIQUIDATION_GRACE_PERIOD.name: out.grace_periods,
                 abis.RESERVE_DEFICIT.name: out.deficits}
        n = len(self.fns)
        for k, asset in enumerate(assets):
            for fn, row in zip(self.fns, rows[k * n:(k + 1) * n], strict=True):
                if row is not None:
                    by_fn[fn.name][asset] = int(row[0])
        return out


@dataclass(frozen=True, slots=True)
class RevisionParts:
    """What a market read of one revision asks beyond the v3.0 core."""

    emode: EModePart
    reserves: ReservePart


def parts_for(revision: AaveRevision) -> RevisionParts:
    """The eMode and per-reserve reads of ``revision``."""
    if revision.has_liquid_emode:
        emode = EModePart((abis.EMODE_COLLATERAL_CONFIG, abis.EMODE_LABEL,
                           abis.EMODE_COLLATERAL_BITMAP, abis.EMODE_BORROWABLE_BITMAP,
                           abis.EMODE_LTVZERO_BITMAP), _decode_liquid)
    else:
        emode = EModePart((abis.pool()["getEModeCategoryData"],), _decode_v30)
    fns: tuple[Function, ...] = ()
    if revision.has_virtual_accounting:
        fns += (abis.VIRTUAL_UNDERLYING_BALANCE, abis.LIQUIDATION_GRACE_PERIOD)
    if revision.has_deficit:
        fns += (abis.RESERVE_DEFICIT,)
    return RevisionParts(emode, ReservePart(fns))
