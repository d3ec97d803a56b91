"""The takeover on a real chain (anvil) and real etcd (``-m network``): a new holder carries
on from the previous holder's recorded transactions with no nonce gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from keeper.app.cluster import ClusterNode
from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil, AnvilOptions
from keeper.domain.fees import Fees
from keeper.exec.keys import Signer
from tests.cluster.etcd_procs import EtcdCluster
from tests.cluster.test_lease import CLAIM, opened, replica, until

pytestmark = [pytest.mark.network, pytest.mark.integration,
              pytest.mark.asyncio(loop_scope="session")]

KEY = SecretStr("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
SIGNER = Signer.from_private_key(KEY, 31337)
FEES = Fees(max_fee_per_gas=10 * 10**9, max_priority_fee_per_gas=10**9)


@pytest.fixture
async def anvil() -> AsyncIterator[HttpRpc]:
    node = await Anvil.start(AnvilOptions())
    try:
        async with HttpRpc(node.url, timeout=10) as rpc:
            yield rpc
    finally:
        await node.stop()


async def nonce(rpc: HttpRpc, block: str) -> int:
    return int(await rpc.call("eth_getTransactionCount", [SIGNER.address, block]), 16)


async def test_new_holder_rebroadcasts_and_continues_without_a_gap(
        etcd1: EtcdCluster, anvil: HttpRpc) -> None:
    ca, a, gate_a = replica(etcd1, "a")
    cb, b, gate_b = replica(etcd1, "b")
    async with ca, cb:
        assert await a.campaign()
        await opened(gate_a)
        # a signed nonces 0 and 1 and handed them to *its* node, which our anvil never saw;
        # then a died. Nonce 5 is one a signed but no node will take (behind a gap: never
        # mined), so the new holder must not wait for it.
        for n in (0, 1, 5):
            assert await gate_a.clear_to_send(CLAIM)
            signed = SIGNER.sign_eip1559(31337, n, SIGNER.address, b"", 0, 21_000, FEES)
            await gate_a.record_sent(CLAIM, signed.tx_hash, n, signed.raw)
        held = a.holding_now
        assert held is not None
        await ca.revoke(held.lease)  # a is gone (its lease with it)
        assert await nonce(anvil, "latest") == 0

        node = ClusterNode(cb, b, gate_b, takeover_timeout=5.0)
        task = asyncio.create_task(node.run(anvil, SIGNER.address, interval=0.1))
        try:
            # Well within the takeover timeout: nonce 5 is not waited for.
            took = await until(gate_b.may_send, 10)
            assert took < 3.0, took
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # Both of a's transactions are mined, in order: the new holder's next nonce is 2.
        assert await nonce(anvil, "latest") == 2
        assert await nonce(anvil, "pending") == 2
        content = await anvil.call("txpool_content")
        assert not content.get("queued"), "a transaction behind a gap was handed to the node"
        assert b.failovers == 1 or b.holder_seen == "b"
        # What is mined is forgotten; the unminable nonce 5 stays on record.
        assert [r.nonce for r in await gate_b.sent_records()] == [5]
        assert await gate_b.clear_to_send(CLAIM)
