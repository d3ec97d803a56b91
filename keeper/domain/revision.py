"""Which Aave V3 release a Pool runs, and the rules that differ between releases.

The keeper reads ``Pool.POOL_REVISION()`` (``keeper.protocols.aave_v3.revision``) and passes one
of these values down to the exact math, the market reader and the book; each rule that changed
after v3.0 is a property here, so the code asks "does this Pool round debt up?", never "is it
3.5?".
"""

from __future__ import annotations

from enum import IntEnum

from keeper.errors import KeeperError


class AaveRevision(IntEnum):
    """An Aave V3 release line; the value is the minor version times ten plus 300."""

    V3_0 = 300
    V3_1 = 310
    V3_2 = 320
    V3_3 = 330
    V3_4 = 340
    V3_5 = 350
    V3_6 = 360

    @property
    def label(self) -> str:
        """``"3.6"`` and so on."""
        return f"3.{(self.value - 300) // 10}"

    @property
    def has_stable_debt(self) -> bool:
        """Stable-rate debt tokens exist (removed in 3.2)."""
        return self < AaveRevision.V3_2

    @property
    def has_liquid_emode(self) -> bool:
        """eMode from per-category collateral/borrowable bitmaps, no eMode price source (3.2+);
        the eMode bits of a reserve's configuration are no longer maintained."""
        return self >= AaveRevision.V3_2

    @property
    def has_virtual_accounting(self) -> bool:
        """Virtual underlying balances and liquidation grace periods (3.1+)."""
        return self >= AaveRevision.V3_1

    @property
    def has_deficit(self) -> bool:
        """Debt left without collateral is burned into a reserve deficit (3.3+)."""
        return self >= AaveRevision.V3_3

    @property
    def has_directed_rounding(self) -> bool:
        """Collateral and aToken balances round down, debt rounds up (3.5+); the health factor
        is ``weightedThreshold.wadDiv(debt) / 1e4`` and interest compounds with the shorter
        series."""
        return self >= AaveRevision.V3_5

    @property
    def has_ltvzero_bitmap(self) -> bool:
        """eMode categories carry an ltv-zero bitmap (read where it exists; 0 elsewhere)."""
        return self >= AaveRevision.V3_2


# POOL_REVISION of each release: 1 for the v3.0 line (@aave/core-v3), then 4, 5, 7, 8, 9, 10
# for 3.1 to 3.6 (6 was a 3.2 patch). Patches between releases keep their release's rules.
_BY_POOL_REVISION = {
    1: AaveRevision.V3_0, 2: AaveRevision.V3_0, 3: AaveRevision.V3_0,
    4: AaveRevision.V3_1, 5: AaveRevision.V3_2, 6: AaveRevision.V3_2,
    7: AaveRevision.V3_3, 8: AaveRevision.V3_4, 9: AaveRevision.V3_5, 10: AaveRevision.V3_6,
}
NEWEST_POOL_REVISION = max(_BY_POOL_REVISION)


class UnknownRevision(KeeperError, ValueError):
    """The Pool answered a revision the keeper cannot map (0, or not a Pool)."""


def from_pool_revision(pool_revision: int) -> AaveRevision:
    """The release of a ``POOL_REVISION()`` value; newer than known → the newest known rules."""
    known = _BY_POOL_REVISION.get(pool_revision)
    if known is not None:
        return known
    if pool_revision > NEWEST_POOL_REVISION:
        return _BY_POOL_REVISION[NEWEST_POOL_REVISION]
    raise UnknownRevision(f"POOL_REVISION {pool_revision} is not an Aave V3 Pool's")
