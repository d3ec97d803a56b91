"""Compile the test-only Solidity in ``sol/`` with the project's solc-js and settings, cached in
``build/test-contracts.json`` (rebuilt when a source changes)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from keeper.contracts import solc
from keeper.contracts.artifacts import Artifact

SOURCES = Path(__file__).resolve().parent / "sol"
OUT = solc.PROJECT_ROOT / "build" / "test-contracts.json"


@functools.cache
def _compiled() -> dict[str, Artifact]:
    sources = {f"tests/contract_fixtures/sol/{p.name}": p.read_text()
               for p in sorted(SOURCES.glob("*.sol"))}
    solc_dir = solc.PROJECT_ROOT / "node_modules" / "solc"
    digest = hashlib.sha256(json.dumps([solc.solc_version(solc_dir), solc.SETTINGS, sources],
                                       sort_keys=True).encode()).hexdigest()
    std_in = {"language": "Solidity",
              "sources": {name: {"content": text} for name, text in sources.items()},
              "settings": solc.SETTINGS}
    contracts = solc.compile_cached(std_in, solc_dir=solc_dir, root=solc.PROJECT_ROOT, out=OUT,
                                    digest=digest, keep=lambda source, _name: True)
    return {name: Artifact(name, tuple(c["abi"]), c["bytecode"]) for name, c in contracts.items()}


def test_contract(name: str) -> Artifact:
    """A contract of tests/contract_fixtures/sol by name."""
    return _compiled()[name]


test_contract.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def compile_all() -> int:
    """Compile (or load the cached build of) every test-only contract; how many there are."""
    return len(_compiled())
