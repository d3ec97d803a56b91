"""A node we start leaves no persisted states behind, however it is stopped.

Past a few hundred blocks anvil moves old states to disk and keeps them when it is stopped by a
signal; a day of tests once filled the disk that way (~/.foundry/anvil/tmp, 66 GB).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil, AnvilOptions

# Enough blocks that anvil 1.7 moves states to disk (it did at ~1,000 here).
BLOCKS = 1_200


async def mine_past_memory(node: Anvil) -> None:
    async with HttpRpc(node.url, timeout=30) as rpc:
        await rpc.call("anvil_mine", [hex(BLOCKS)])
        for _ in range(20):  # single blocks: anvil persists on a new block, not inside anvil_mine
            await rpc.call("evm_mine")


def persisted(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()]


@pytest.mark.parametrize("how", ["stop", "killed"])
async def test_a_nodes_persisted_states_go_with_it(how: str) -> None:
    node = await Anvil.start(AnvilOptions())
    try:
        cache = node.cache_path
        await mine_past_memory(node)
        assert persisted(cache), "anvil did not persist states: the test proves nothing"
        if how == "killed":  # dies under us, as in the fault tests; stop() still reaps and cleans
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(timeout=5)
    finally:
        await node.stop()
    assert not cache.exists()


async def test_a_given_cache_directory_is_emptied_first_and_removed_at_stop(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "stale-state.json").write_text("{}")  # a killed predecessor's
    node = await Anvil.start(AnvilOptions(cache_path=cache))
    try:
        assert node.cache_path == cache and not (cache / "stale-state.json").exists()
    finally:
        await node.stop()
    assert not cache.exists()
