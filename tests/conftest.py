"""Shared fixtures: anvil nodes on free ports, started and stopped by the tests themselves.

``devnet`` gives each test its own anvil running the real Aave V3 market: the market is deployed
once per machine into ``build/test-devnet`` (keyed by every deploy input) and each test starts
a fresh node from that saved state in about 0.1 s.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet import lifecycle
from keeper.devnet.anvil import Anvil, AnvilOptions
from keeper.devnet.driver import Devnet

TEST_STATE_DIR = Path(__file__).resolve().parents[1] / "build" / "test-devnet"

# Tests that race a live chain in real time (a daemon against a ticking devnet, latency and
# block bounds, lease timings): ``make test`` runs them one at a time, after the rest ran on
# two workers, so that no other test takes their CPU.
SERIAL_DIRS = ("tests/faults/", "tests/cluster/")
SERIAL_MODULES = ("test_backrun.py", "test_backtest.py", "test_crash_throughput.py",
                  "test_daemon.py", "test_in_flight.py", "test_oracle_guard.py",
                  "test_prometheus.py", "test_risk_alerts.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parents[1]
    for item in items:
        path = item.path.resolve().relative_to(root).as_posix()
        if path.startswith(SERIAL_DIRS) or (path.startswith("tests/e2e/")
                                            and item.path.name in SERIAL_MODULES):
            item.add_marker(pytest.mark.serial)


@pytest.fixture
async def anvil() -> AsyncIterator[Anvil]:
    """A fresh, empty anvil for one test (≈ 0.1 s to start)."""
    node = await Anvil.start(AnvilOptions())
    try:
        yield node
    finally:
        await node.stop()


@contextlib.asynccontextmanager
async def running_devnet(aave: str) -> AsyncIterator[Devnet]:
    """A fresh anvil with the Aave ``aave`` market (deployed once into TEST_STATE_DIR, then
    loaded), stopped on exit."""
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(TEST_STATE_DIR), aave=aave)
    try:
        async with HttpRpc(node.url, timeout=120) as rpc:
            yield Devnet(rpc, manifest)
    finally:
        await node.stop()


@pytest.fixture
async def devnet_node() -> AsyncIterator[tuple[Anvil, Devnet]]:
    """A fresh anvil with the deployed market, and a Devnet handle on it."""
    node, manifest, _ = await lifecycle.start(lifecycle.StateDir(TEST_STATE_DIR), aave="3.0")
    try:
        async with HttpRpc(node.url, timeout=120) as rpc:
            yield node, Devnet(rpc, manifest)
    finally:
        await node.stop()


@pytest.fixture
async def devnet(devnet_node: tuple[Anvil, Devnet]) -> Devnet:
    return devnet_node[1]
