"""Which Aave V3 release the Pool runs: ``POOL_REVISION()`` read from the chain.

Read when the keeper starts and again whenever the Pool's proxy emits ``Upgraded``. The answer
picks the market reader's calls, the token math the book applies and the exact health factor
(``keeper.domain.revision.AaveRevision``).
"""

from __future__ import annotations

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import BlockId, block_param
from keeper.domain.revision import AaveRevision
from keeper.errors import KeeperError
from keeper.obs.logging import get_logger
from keeper.protocols.aave_v3 import abis

log = get_logger(__name__)

# POOL_REVISION of each release: 1 for the v3.0 line (@aave/core-v3), then 4, 5, 7, 8, 9, 10
# for 3.1 to 3.6 (6 was a 3.2 patch). Patches between releases keep their release's rules.
_BY_POOL_REVISION = {
    1: AaveRevision.V3_0, 2: AaveRevision.V3_0, 3: AaveRevision.V3_0,
    4: AaveRevision.V3_1, 5: AaveRevision.V3_2, 6: AaveRevision.V3_2,
    7: AaveRevision.V3_3, 8: AaveRevision.V3_4, 9: AaveRevision.V3_5, 10: AaveRevision.V3_6,
}


class UnknownRevision(KeeperError, ValueError):
    """The Pool answered a revision the keeper cannot map (0, or not a Pool)."""


def from_pool_revision(pool_revision: int) -> AaveRevision:
    """The release of a ``POOL_REVISION()`` value; newer than known → the newest known rules."""
    known = _BY_POOL_REVISION.get(pool_revision)
    if known is not None:
        return known
    newest = max(_BY_POOL_REVISION)
    if pool_revision > newest:
        log.warning("pool_revision_newer_than_known", pool_revision=pool_revision,
                    assumed=_BY_POOL_REVISION[newest].label)
        return _BY_POOL_REVISION[newest]
    raise UnknownRevision(f"POOL_REVISION {pool_revision} is not an Aave V3 Pool's")


async def read_revision(rpc: JsonRpc, pool: str, block: BlockId = "latest") -> AaveRevision:
    """``POOL_REVISION()`` of ``pool`` at ``block``, as a release."""
    raw = await rpc.call("eth_call", [{"to": pool, "data": abis.POOL_REVISION.encode_hex()},
                                      block_param(block)])
    (value,) = abis.POOL_REVISION.decode_output(raw)
    revision = from_pool_revision(int(value))
    log.info("pool_revision_read", pool=pool, pool_revision=int(value), revision=revision.label)
    return revision
