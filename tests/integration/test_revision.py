"""The Pool's revision is read from the chain: the v3.0 devnet is 3.0, the v3.6 devnet is 3.6;
the hand-written post-3.0 ABIs match the 3.6 build."""

from __future__ import annotations

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet import lifecycle
from keeper.devnet.origin_build import origin
from keeper.domain.revision import AaveRevision
from keeper.protocols.aave_v3 import abis, events_later
from keeper.protocols.aave_v3.revision import read_revision
from tests.conftest import TEST_STATE_DIR

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("aave", "expected"), [("3.0", AaveRevision.V3_0),
                                                ("3.6", AaveRevision.V3_6)])
async def test_revision_read_from_the_chain(aave: str, expected: AaveRevision) -> None:
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(TEST_STATE_DIR), aave=aave)
    try:
        async with HttpRpc(node.url, timeout=60) as rpc:
            assert await read_revision(rpc, manifest.pool) is expected
    finally:
        await node.stop()


def test_post_v30_abis_match_the_36_build() -> None:
    pool, configurator = origin("PoolInstance").abi, origin("PoolConfiguratorInstance").abi
    for fn in (abis.POOL_REVISION, abis.EMODE_COLLATERAL_CONFIG, abis.EMODE_LABEL,
               abis.EMODE_COLLATERAL_BITMAP, abis.EMODE_BORROWABLE_BITMAP,
               abis.EMODE_LTVZERO_BITMAP, abis.VIRTUAL_UNDERLYING_BALANCE,
               abis.LIQUIDATION_GRACE_PERIOD, abis.RESERVE_DEFICIT):
        assert (pool[fn.name].inputs, pool[fn.name].outputs) == (fn.inputs, fn.outputs)
    builders = {**events_later.pool_builders(), **events_later.configurator_builders()}
    for name, (event, _) in builders.items():
        ref = pool.events.get(name) or configurator.events.get(name)
        if name == "Upgraded":  # the proxy's (ERC-1967), not in the Pool's ABI
            assert event.signature == "Upgraded(address)"
            continue
        assert ref is not None and (ref.topic0, ref.indexed) == (event.topic0, event.indexed)
