"""Contract artifacts: the real protocol builds from npm, and ours from ``build/contracts.json``.

Aave's hardhat artifacts carry library placeholders (``__$<34 hex>$__``) that must be replaced
with deployed library addresses at the byte offsets given in ``linkReferences``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeper.chain.abi import Abi
from keeper.contracts.solc import compile_contracts
from keeper.errors import KeeperError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = PROJECT_ROOT / "node_modules"
AAVE_ARTIFACTS = NODE_MODULES / "@aave" / "core-v3" / "artifacts" / "contracts"
UNISWAP_CORE = NODE_MODULES / "@uniswap" / "v2-core" / "build"
UNISWAP_PERIPHERY = NODE_MODULES / "@uniswap" / "v2-periphery" / "build"
UNISWAP_V3_ARTIFACTS = (NODE_MODULES / "@uniswap" / "v3-core" / "artifacts" / "contracts",
                        NODE_MODULES / "@uniswap" / "v3-periphery" / "artifacts" / "contracts")


class ArtifactError(KeeperError):
    """An artifact is missing or cannot be linked."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi_json: tuple[Mapping[str, Any], ...]
    bytecode: str  # 0x-hex, may hold link placeholders
    link_references: Mapping[str, Mapping[str, list[Mapping[str, int]]]] = field(default_factory=dict)

    @functools.cached_property
    def abi(self) -> Abi:
        return Abi(self.abi_json)

    def linked(self, libraries: Mapping[str, str]) -> bytes:
        """Creation bytecode with every library placeholder replaced by its address."""
        code = self.bytecode[2:] if self.bytecode.startswith("0x") else self.bytecode
        chars = list(code)
        for _source, libs in self.link_references.items():
            for lib, sites in libs.items():
                if lib not in libraries:
                    raise ArtifactError(f"{self.name} needs library {lib} linked")
                addr = libraries[lib].lower().removeprefix("0x")
                for site in sites:
                    start = site["start"] * 2
                    chars[start:start + 40] = addr
        linked = "".join(chars)
        if "__$" in linked:
            raise ArtifactError(f"{self.name}: unlinked placeholders remain")
        return bytes.fromhex(linked)

    def deploy_data(self, *args: Any, libraries: Mapping[str, str] | None = None) -> bytes:
        """Creation bytecode + ABI-encoded constructor arguments."""
        return self.linked(libraries or {}) + self.abi.encode_constructor(*args)


@functools.cache
def _aave_index() -> dict[str, Path]:
    if not AAVE_ARTIFACTS.exists():
        raise ArtifactError(f"{AAVE_ARTIFACTS} not found: run `npm ci` (or `make setup`)")
    index: dict[str, Path] = {}
    for path in sorted(AAVE_ARTIFACTS.rglob("*.json")):
        if path.name.endswith(".dbg.json") or path.parent.name.endswith(".sol") is False:
            continue
        # Prefer protocol/ over mocks/ when a name appears twice.
        if path.stem not in index or "/mocks/" in str(index[path.stem]):
            index[path.stem] = path
    return index


@functools.cache
def aave(name: str) -> Artifact:
    """An artifact of npm ``@aave/core-v3`` by contract name (e.g. ``"Pool"``)."""
    path = _aave_index().get(name)
    if path is None:
        raise ArtifactError(f"no @aave/core-v3 artifact named {name}")
    d = json.loads(path.read_text())
    return Artifact(name, tuple(d["abi"]), d["bytecode"], d.get("linkReferences", {}))


@functools.cache
def uniswap(name: str) -> Artifact:
    """An artifact of npm ``@uniswap/v2-core`` or ``v2-periphery`` (e.g. ``"UniswapV2Pair"``)."""
    for folder in (UNISWAP_CORE, UNISWAP_PERIPHERY):
        path = folder / f"{name}.json"
        if path.exists():
            d = json.loads(path.read_text())
            code = d.get("bytecode") or d["evm"]["bytecode"]["object"]
            return Artifact(name, tuple(d["abi"]), code if code.startswith("0x") else "0x" + code)
    raise ArtifactError(f"no Uniswap V2 artifact named {name}")


@functools.cache
def uniswap_v3(name: str) -> Artifact:
    """An artifact of npm ``@uniswap/v3-core`` or ``v3-periphery`` (e.g. ``"QuoterV2"``)."""
    for folder in UNISWAP_V3_ARTIFACTS:
        for path in sorted(folder.rglob(f"{name}.json")):
            d = json.loads(path.read_text())
            return Artifact(name, tuple(d["abi"]), d["bytecode"], d.get("linkReferences", {}))
    raise ArtifactError(f"no Uniswap V3 artifact named {name}")


@functools.cache
def ours(name: str) -> Artifact:
    """One of our contracts, compiled from contracts/ (cached in build/contracts.json)."""
    contracts = compile_contracts()
    if name not in contracts:
        raise ArtifactError(f"no contract {name} in contracts/")
    c = contracts[name]
    return Artifact(name, tuple(c["abi"]), c["bytecode"])


@functools.cache
def ours_runtime(name: str) -> str:
    """Runtime (deployed) bytecode of one of our contracts, 0x-hex."""
    return str(compile_contracts()[name]["deployedBytecode"])
