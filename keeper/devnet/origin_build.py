"""Aave v3.6 for the devnet: compiled from npm ``@aave-dao/aave-v3-origin`` with solc-js 0.8.27.

The package ships Solidity sources only. We compile the contracts a market needs with the
protocol's own settings (optimizer 200 runs, evm shanghai, no metadata hash, no via-IR) and
cache the output in ``build/aave-v3-origin.json``, keyed by the compiler, the settings, the
entry files and the exact versions and integrity hashes of the source packages in the npm lock
file (the lock pins every file the compiler may import).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from keeper.contracts.artifacts import Artifact, ArtifactError
from keeper.contracts.solc import CompileError, compile_cached

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = PROJECT_ROOT / "node_modules"
SOLC_DIR = NODE_MODULES / "solc-0.8.27"  # npm alias: our own contracts keep their solc
ORIGIN = "@aave-dao/aave-v3-origin/src/contracts/"
BUILD_FILE = PROJECT_ROOT / "build" / "aave-v3-origin.json"

# Every package whose files the compiler may read.
SOURCE_PACKAGES = ("@aave-dao/aave-v3-origin", "@bgd-labs/solidity-utils",
                   "@openzeppelin/contracts", "@openzeppelin/contracts-upgradeable")

# Entry files; the compiler pulls in their imports (libraries, proxies, OpenZeppelin).
ENTRIES = (
    "protocol/configuration/PoolAddressesProvider.sol",
    "protocol/configuration/ACLManager.sol",
    "misc/DefaultReserveInterestRateStrategyV2.sol",
    "misc/AaveOracle.sol",
    "instances/PoolInstance.sol",
    "instances/PoolConfiguratorInstance.sol",
    "instances/ATokenInstance.sol",
    "instances/VariableDebtTokenInstance.sol",
    "helpers/AaveProtocolDataProvider.sol",
)

# The contracts whose bytecode we keep; solc generates code only for these.
POOL_LIBRARIES = ("BorrowLogic", "FlashLoanLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic")
CONTRACTS = ("PoolAddressesProvider", "ACLManager", "DefaultReserveInterestRateStrategyV2",
             "AaveOracle", "PoolInstance", "PoolConfiguratorInstance", "ATokenInstance",
             "VariableDebtTokenInstance", "AaveProtocolDataProvider", "ConfiguratorLogic",
             *POOL_LIBRARIES)

# As the protocol's foundry.toml builds it.
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "shanghai",
    "viaIR": False,
    "metadata": {"bytecodeHash": "none"},
    "remappings": [
        "openzeppelin-contracts-upgradeable/contracts/=@openzeppelin/contracts-upgradeable/",
        "openzeppelin-contracts/contracts/=@openzeppelin/contracts/",
        "solidity-utils/=@bgd-labs/solidity-utils/src/",
    ],
    "outputSelection": {"*": {name: ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences",
                                     "evm.deployedBytecode.object"] for name in CONTRACTS}},
}


def _locked_packages(lock_file: Path) -> dict[str, Any]:
    packages = json.loads(lock_file.read_text())["packages"]
    out: dict[str, Any] = {}
    for name in (*SOURCE_PACKAGES, "solc-0.8.27"):
        entry = packages.get(f"node_modules/{name}")
        if entry is None:
            raise CompileError(f"{name} is not in {lock_file}: the v3.6 devnet needs it")
        out[name] = {"version": entry.get("version"), "integrity": entry.get("integrity")}
    return out


def input_hash(lock_file: Path = PROJECT_ROOT / "package-lock.json") -> str:
    """The build's key: compiler, settings, entries and the locked source packages."""
    h = hashlib.sha256()
    h.update(json.dumps({"settings": SETTINGS, "entries": ENTRIES,
                         "packages": _locked_packages(lock_file)}, sort_keys=True).encode())
    return h.hexdigest()


def compile_origin(*, out: Path = BUILD_FILE, force: bool = False) -> dict[str, Any]:
    """Compile Aave v3.6 (or reuse the cached build): ``{contract name: {abi, bytecode, ...}}``."""
    digest = input_hash()
    if not (SOLC_DIR / "solc.js").exists():
        raise CompileError(f"solc-js 0.8.27 not found at {SOLC_DIR}: run `npm ci` (or `make setup`)")
    std_in = {
        "language": "Solidity",
        "sources": {ORIGIN + e: {"content": (NODE_MODULES / ORIGIN / e).read_text()}
                    for e in ENTRIES},
        "settings": SETTINGS,
    }
    return compile_cached(std_in, solc_dir=SOLC_DIR, root=PROJECT_ROOT, out=out, digest=digest,
                          force=force, keep=lambda _source, name: name in CONTRACTS)


@functools.cache
def _build() -> dict[str, Any]:
    return compile_origin()


@functools.cache
def origin(name: str) -> Artifact:
    """A contract of Aave v3.6 by name (e.g. ``"PoolInstance"``), with its link references."""
    contracts = _build()
    if name not in contracts:
        raise ArtifactError(f"no Aave v3.6 contract named {name} in the build")
    c = contracts[name]
    return Artifact(name, tuple(c["abi"]), c["bytecode"], c.get("linkReferences", {}))


def main() -> None:
    """``python -m keeper.devnet.origin_build``: build (timed) and list the contracts."""
    t0 = time.perf_counter()
    contracts = compile_origin(force=True)
    took = time.perf_counter() - t0
    for name, c in contracts.items():
        print(f"{name:40s} {len(c['deployedBytecode']) // 2 - 1:6d} bytes")
    print(f"compiled {len(contracts)} contracts in {took:.1f}s")


if __name__ == "__main__":
    main()
