"""``keeper devnet up|down|status``: a detached anvil with the market deployed, in a state dir.

The first ``up`` deploys everything and saves the chain state (``anvil_dumpState``) with a key
derived from every input of the deploy (our contracts, the npm lock file, the market and deploy
code). Later ``up``s with the same key start anvil with ``--load-state``: ready in well under a
second instead of redeploying.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from keeper.chain.rpc import HttpRpc
from keeper.contracts.solc import compile_contracts
from keeper.devnet import deploy as deploy_module
from keeper.devnet import market as market_module
from keeper.devnet.anvil import PROJECT_ROOT, Anvil, AnvilOptions, is_anvil_pid, stop_pid
from keeper.devnet.manifest import Manifest
from keeper.errors import DevnetError

DEFAULT_STATE_DIR = Path(".devnet")
RECENT_BLOCKS = 64  # the book's reorg window


@dataclass(frozen=True, slots=True)
class StateDir:
    root: Path

    @property
    def pid(self) -> Path:
        return self.root / "anvil.pid"

    @property
    def log(self) -> Path:
        return self.root / "anvil.log"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def saved_state(self) -> Path:
        return self.root / "deployed-state.json"

    @property
    def saved_manifest(self) -> Path:
        return self.root / "deployed-manifest.json"

    @property
    def saved_key(self) -> Path:
        return self.root / "deployed-state.key"

    @property
    def population(self) -> Path:
        return self.root / "population.json"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_anvil_pid(pid) else None


def state_dir(path: str | os.PathLike[str] | None = None) -> StateDir:
    env = os.environ.get("KEEPER_DEVNET_DIR")
    return StateDir(Path(path or env or DEFAULT_STATE_DIR).resolve())


def deploy_key() -> str:
    """Changes whenever anything that shapes the deployed chain changes."""
    h = hashlib.sha256()
    build = compile_contracts()
    h.update(json.dumps({k: v["bytecode"] for k, v in sorted(build.items())}).encode())
    for path in (PROJECT_ROOT / "package-lock.json", Path(deploy_module.__file__),
                 Path(market_module.__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


async def start(
    sd: StateDir, *, port: int | None = None, fresh: bool = False, detach: bool = False
) -> tuple[Anvil, Manifest, bool]:
    """Start an anvil with the market: from saved state when its key matches, else deploy and
    save. Returns the node, its manifest and whether it came from saved state."""
    sd.root.mkdir(parents=True, exist_ok=True)
    key = deploy_key()
    saved = (not fresh and sd.saved_state.exists() and sd.saved_manifest.exists()
             and sd.saved_key.exists() and sd.saved_key.read_text().strip() == key)
    opts = AnvilOptions(port=port, load_state=sd.saved_state if saved else None)
    node = await Anvil.start(opts, log_path=sd.log if detach else None, detach=detach)
    try:
        async with HttpRpc(node.url, timeout=60) as rpc:
            # Node config, not chain state, so set on every start: scenario users are
            # impersonated; each block is one second after the last, as on a chain with a
            # fixed slot time (wall-clock stamps put several blocks in one second, and which
            # second a liquidation lands in changes its interest and its gas).
            await rpc.call("anvil_autoImpersonateAccount", [True])
            await rpc.call("anvil_setBlockTimestampInterval", [1])
            if saved:
                manifest = Manifest.load(sd.saved_manifest).with_urls(node.url, node.ws_url)
                # A loaded node keeps the old blocks but not their state: put a reorg window
                # of fresh blocks on top so a keeper's first reads near the tip have state.
                await rpc.call("anvil_mine", [hex(RECENT_BLOCKS)])
            else:
                manifest = await deploy_module.deploy_all(rpc, node.url, node.ws_url)
                dump = await rpc.call("anvil_dumpState")
                _atomic_write(sd.saved_state, gzip.decompress(bytes.fromhex(dump[2:])))
                manifest.save(sd.saved_manifest)
                _atomic_write(sd.saved_key, key.encode())
    except BaseException:
        await node.stop()
        raise
    return node, manifest, saved


async def up(sd: StateDir, *, port: int | None = None, fresh: bool = False) -> tuple[Manifest, bool]:
    """Start the detached devnet (or find it running). Returns the manifest and whether it was
    loaded from saved state (False when it deployed or was already running)."""
    if sd.running_pid() is not None:
        return Manifest.load(sd.manifest), False
    node, manifest, saved = await start(sd, port=port, fresh=fresh, detach=True)
    try:
        manifest.save(sd.manifest)
        _atomic_write(sd.pid, str(node.pid).encode())
    except BaseException:
        await node.stop()
        raise
    return manifest, saved


async def down(sd: StateDir) -> bool:
    """Stop the devnet's anvil if it runs. Returns whether one was stopped."""
    pid = sd.running_pid()
    stopped = await stop_pid(pid) if pid is not None else False
    for path in (sd.pid, sd.manifest):
        path.unlink(missing_ok=True)
    return stopped


def running_manifest(sd: StateDir) -> Manifest:
    """The manifest of the running devnet, or a clear error when it is not up."""
    if sd.running_pid() is None:
        raise DevnetError(f"the devnet is not running (state dir {sd.root}): run `keeper devnet up`")
    return Manifest.load(sd.manifest)
