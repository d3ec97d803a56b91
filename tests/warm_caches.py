"""Build what the tests read from ``build/`` before they run on several workers, each of
which would otherwise build it at the same moment: our contracts, the test-only contracts, and
the saved devnet state of each Aave revision (which compiles the v3.6 sources). Cheap when the
caches are current: a check of their keys and one anvil start per revision.

``python -m tests.warm_caches`` (``make test`` runs it first).
"""

from __future__ import annotations

import asyncio
import sys

from keeper.devnet import lifecycle
from keeper.devnet.lifecycle import AAVE_VERSIONS
from keeper.errors import KeeperError
from tests.conftest import TEST_STATE_DIR
from tests.contract_fixtures.build import compile_all


async def warm() -> None:
    compile_all()
    for aave in AAVE_VERSIONS:
        node, _, _ = await lifecycle.start(lifecycle.StateDir(TEST_STATE_DIR), aave=aave)
        await node.stop()


def main() -> None:
    try:
        asyncio.run(warm())
    except KeeperError as exc:
        sys.exit(f"warm_caches: {exc}")


if __name__ == "__main__":
    main()
