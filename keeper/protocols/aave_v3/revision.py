"""Which Aave V3 release the Pool runs: ``POOL_REVISION()`` read from the chain.

Read when the keeper starts and again whenever the Pool's proxy emits ``Upgraded``. The answer
picks the market reader's calls, the token math the book applies and the exact health factor
(``keeper.domain.revision.AaveRevision``).
"""

from __future__ import annotations

from keeper.chain.rpc import JsonRpc
from keeper.chain.types import BlockId, block_param
from keeper.domain.revision import NEWEST_POOL_REVISION, AaveRevision, from_pool_revision
from keeper.obs.logging import get_logger
from keeper.protocols.aave_v3 import abis

log = get_logger(__name__)

async def read_revision(rpc: JsonRpc, pool: str, block: BlockId = "latest") -> AaveRevision:
    """``POOL_REVISION()`` of ``pool`` at ``block``, as a release."""
    raw = await rpc.call("eth_call", [{"to": pool, "data": abis.POOL_REVISION.encode_hex()},
                                      block_param(block)])
    (value,) = abis.POOL_REVISION.decode_output(raw)
    revision = from_pool_revision(int(value))
    if int(value) > NEWEST_POOL_REVISION:
        log.warning("pool_revision_newer_than_known", pool_revision=int(value),
                    assumed=revision.label)
    log.info("pool_revision_read", pool=pool, pool_revision=int(value), revision=revision.label)
    return revision
