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
import shutil
from dataclasses import dataclass
from pathlib import Path

from keeper.chain.rpc import HttpRpc
from keeper.contracts.solc import compile_contracts
from keeper.devnet import deploy as deploy_module
from keeper.devnet import deploy_v36, market_v36, origin_build, uniswap_v3
from keeper.devnet import market as market_module
from keeper.devnet.anvil import PROJECT_ROOT, Anvil, AnvilOptions, is_anvil_pid, stop_pid
from keeper.devnet.manifest import Manifest
from keeper.errors import DevnetError

DEFAULT_STATE_DIR = Path(".devnet")
RECENT_BLOCKS = 64  # the book's reorg window
AAVE_VERSIONS = ("3.0", "3.6")
DEFAULT_AAVE_VERSION = "3.6"
"""What `keeper devnet up` deploys: the Aave production markets run (3.0 on request)."""


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
    def node_cache(self) -> Path:
        """Where the detached node persists old states; removed by ``down``."""
        return self.root / "anvil-cache"

    def saved_state(self, aave: str = DEFAULT_AAVE_VERSION) -> Path:
        return self.root / f"deployed-state{_suffix(aave)}.json"

    def saved_manifest(self, aave: str = DEFAULT_AAVE_VERSION) -> Path:
        return self.root / f"deployed-manifest{_suffix(aave)}.json"

    def saved_key(self, aave: str = DEFAULT_AAVE_VERSION) -> Path:
        return self.root / f"deployed-state{_suffix(aave)}.key"

    @property
    def population(self) -> Path:
        return self.root / "population.json"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_anvil_pid(pid) else None


def _suffix(aave: str) -> str:
    # v3.0 keeps the file names it always had; each other revision saves its own state beside.
    return "" if aave == "3.0" else f"-v{aave}"


def state_dir(path: str | os.PathLike[str] | None = None) -> StateDir:
    env = os.environ.get("KEEPER_DEVNET_DIR")
    return StateDir(Path(path or env or DEFAULT_STATE_DIR).resolve())


def deploy_key(aave: str = DEFAULT_AAVE_VERSION) -> str:
    """Changes whenever anything that shapes the deployed chain changes."""
    _check_version(aave)
    h = hashlib.sha256()
    build = compile_contracts()
    h.update(json.dumps({k: v["bytecode"] for k, v in sorted(build.items())}).encode())
    for path in (PROJECT_ROOT / "package-lock.json", Path(deploy_module.__file__),
                 Path(market_module.__file__), Path(uniswap_v3.__file__)):
        h.update(path.read_bytes())
    if aave != "3.0":
        # The v3.6 build's own key covers compiler, settings and source packages; hashing it
        # rather than its output keeps an ``up`` from saved state from reading the build.
        h.update(aave.encode() + origin_build.input_hash().encode())
        for path in (Path(deploy_v36.__file__), Path(market_v36.__file__),
                     Path(origin_build.__file__)):
            h.update(path.read_bytes())
    return h.hexdigest()


def _check_version(aave: str) -> None:
    if aave not in AAVE_VERSIONS:
        raise DevnetError(f"unknown Aave version {aave!r}: one of {', '.join(AAVE_VERSIONS)}")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


async def start(
    sd: StateDir, *, port: int | None = None, fresh: bool = False, detach: bool = False,
    aave: str = DEFAULT_AAVE_VERSION,
) -> tuple[Anvil, Manifest, bool]:
    """Start an anvil with the market of Aave ``aave`` ("3.0" or "3.6"): from saved state when
    its key matches, else deploy and save. Returns the node, its manifest and whether it came
    from saved state."""
    sd.root.mkdir(parents=True, exist_ok=True)
    key = deploy_key(aave)
    state, saved_manifest, saved_key = sd.saved_state(aave), sd.saved_manifest(aave), sd.saved_key(aave)
    saved = (not fresh and state.exists() and saved_manifest.exists()
             and saved_key.exists() and saved_key.read_text().strip() == key)
    opts = AnvilOptions(port=port, load_state=state if saved else None,
                        cache_path=sd.node_cache if detach else None)
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
                manifest = Manifest.load(saved_manifest).with_urls(node.url, node.ws_url)
                # A loaded node keeps the old blocks but not their state: put a reorg window
                # of fresh blocks on top so a keeper's first reads near the tip have state.
                await rpc.call("anvil_mine", [hex(RECENT_BLOCKS)])
                if manifest.grace_period_until:
                    manifest = await deploy_v36.rearm_grace_period(rpc, manifest)
            else:
                deploy = deploy_module.deploy_all if aave == "3.0" else deploy_v36.deploy_all
                manifest = await deploy(rpc, node.url, node.ws_url)
                dump = await rpc.call("anvil_dumpState")
                _atomic_write(state, gzip.decompress(bytes.fromhex(dump[2:])))
                manifest.save(saved_manifest)
                _atomic_write(saved_key, key.encode())
    except BaseException:
        await node.stop()
        raise
    return node, manifest, saved


async def up(
    sd: StateDir, *, port: int | None = None, fresh: bool = False, aave: str | None = None,
) -> tuple[Manifest, bool]:
    """Start the detached devnet (or find it running). Returns the manifest and whether it was
    loaded from saved state (False when it deployed or was already running). ``aave`` picks
    the revision (default 3.6); asking for another one than the running devnet's is an error."""
    if aave is not None:
        _check_version(aave)
    if sd.running_pid() is not None:
        running = Manifest.load(sd.manifest)
        if aave is not None and running.aave_version != aave:
            raise DevnetError(f"the devnet in {sd.root} runs Aave {running.aave_version}, not "
                              f"{aave}: `keeper devnet down` first")
        return running, False
    node, manifest, saved = await start(sd, port=port, fresh=fresh, detach=True,
                                        aave=aave or DEFAULT_AAVE_VERSION)
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
    shutil.rmtree(sd.node_cache, ignore_errors=True)
    return stopped


def running_manifest(sd: StateDir) -> Manifest:
    """The manifest of the running devnet, or a clear error when it is not up."""
    if sd.running_pid() is None:
        raise DevnetError(f"the devnet is not running (state dir {sd.root}): run `keeper devnet up`")
    return Manifest.load(sd.manifest)
