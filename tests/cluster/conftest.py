from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.cluster.etcd_procs import ETCD, EtcdCluster

pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd is not installed")


@pytest.fixture
async def etcd1() -> AsyncIterator[EtcdCluster]:
    if ETCD is None:
        pytest.skip("etcd is not installed (Debian etcd-server)")
    cluster = await EtcdCluster.start(1)
    try:
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def etcd3() -> AsyncIterator[EtcdCluster]:
    if ETCD is None:
        pytest.skip("etcd is not installed (Debian etcd-server)")
    cluster = await EtcdCluster.start(3)
    try:
        yield cluster
    finally:
        await cluster.stop()
