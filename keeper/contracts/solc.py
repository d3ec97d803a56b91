"""Compile our Solidity (contracts/**/*.sol) with solc-js from node_modules, reproducibly.

One standard-JSON compilation of every source with fixed settings; the output (ABI, creation
and runtime bytecode per contract) goes to ``build/contracts.json`` together with a hash of
the inputs, so a second build with unchanged sources is a file read.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keeper.errors import KeeperError
from keeper.obs.logging import get_logger

log = get_logger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = PROJECT_ROOT / "contracts"
BUILD_FILE = PROJECT_ROOT / "build" / "contracts.json"

# Fixed compiler settings: the build is reproducible only if these never drift silently.
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 10_000},
    "evmVersion": "shanghai",
    "viaIR": False,
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object",
                                    "evm.gasEstimates"]}},
}


class CompileError(KeeperError):
    """solc reported errors."""


def _sources(contracts_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(contracts_dir.parent)): p.read_text()
        for p in sorted(contracts_dir.rglob("*.sol"))
    }


def solc_version(solc_dir: Path) -> str:
    """The version of the solc-js package in ``solc_dir`` (e.g. node_modules/solc)."""
    pkg = json.loads((solc_dir / "package.json").read_text())
    return str(pkg["version"])


def _input_hash(sources: dict[str, str], version: str) -> str:
    h = hashlib.sha256()
    h.update(version.encode())
    h.update(json.dumps(SETTINGS, sort_keys=True).encode())
    for name, text in sources.items():
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def compile_contracts(
    *, contracts_dir: Path = CONTRACTS_DIR, out: Path = BUILD_FILE, force: bool = False
) -> dict[str, Any]:
    """Compile (or reuse the cached build) and return ``{contract name: {abi, bytecode, ...}}``."""
    root = contracts_dir.parent
    node_modules = root / "node_modules"
    solc_dir = node_modules / "solc"
    if not (solc_dir / "solc.js").exists():
        # A runtime image ships build/contracts.json without node: use it as built.
        if out.exists() and not force:
            return dict(json.loads(out.read_text())["contracts"])
        raise CompileError(f"solc-js not found at {solc_dir}: run `npm ci` (or `make setup`)")
    sources = _sources(contracts_dir)
    version = solc_version(solc_dir)
    std_in = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    return compile_cached(std_in, solc_dir=solc_dir, root=root, out=out,
                          digest=_input_hash(sources, version), force=force,
                          keep=lambda source, _name: source.startswith("contracts/"))


def compile_cached(
    std_in: dict[str, Any], *, solc_dir: Path, root: Path, out: Path, digest: str,
    keep: Callable[[str, str], bool], force: bool = False,
) -> dict[str, Any]:
    """Compile a standard-JSON input with the solc-js in ``solc_dir``, or reuse ``out`` when it
    was built from the same ``digest`` (a hash of every input, which the caller knows best).
    Imports not in ``std_in`` resolve against ``root`` and ``root/node_modules``. Returns
    ``{contract name: {source, abi, bytecode, deployedBytecode, linkReferences}}`` for the
    contracts ``keep(source, name)`` selects."""
    if out.exists() and not force:
        cached = json.loads(out.read_text())
        if cached.get("inputHash") == digest:
            return dict(cached["contracts"])
    version = solc_version(solc_dir)
    log.info("solc_compile_started", solc=version, entries=len(std_in["sources"]), out=str(out))
    started = time.perf_counter()
    # Output to a file, not a pipe: solc-js exits as soon as it has written, and node cuts a
    # large piped write (> 64 KiB) short.
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.run(
            ["node", str(solc_dir / "solc.js"), "--standard-json", "--base-path", str(root),
             "--include-path", str(root / "node_modules")],
            input=json.dumps(std_in).encode(), stdout=stdout, stderr=subprocess.PIPE, cwd=root,
            check=False,
        )
        stdout.seek(0)
        text = stdout.read().decode()
    if proc.returncode != 0:
        raise CompileError(f"solc-js failed: {proc.stderr.decode(errors='replace')[:500]}")
    # solc-js may print warnings before the JSON document.
    try:
        result = json.loads(text[text.index("{"):])
    except ValueError as exc:
        raise CompileError(f"solc-js printed no valid JSON ({len(text)} bytes): {exc}") from None
    errors = [e for e in result.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("; ".join(e.get("formattedMessage", e.get("message", "")).strip()
                                     for e in errors)[:2000])
    contracts: dict[str, Any] = {}
    for source, by_name in sorted(result.get("contracts", {}).items()):
        for name, c in sorted(by_name.items()):
            if not keep(source, name):
                continue  # e.g. interfaces pulled in from node_modules
            contracts[name] = {
                "source": source,
                "abi": c["abi"],
                "bytecode": "0x" + c["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
            }
            links = c["evm"]["bytecode"].get("linkReferences")
            if links:
                contracts[name]["linkReferences"] = links
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"solc": version, "inputHash": digest, "contracts": contracts},
                              indent=1, sort_keys=True))
    tmp.replace(out)
    log.info("solc_compile_finished", solc=version, contracts=len(contracts),
             seconds=round(time.perf_counter() - started, 1))
    return contracts


def main() -> None:
    """`python -m keeper.contracts.solc`: build and list what was compiled."""
    contracts = compile_contracts(force=True)
    for name, c in contracts.items():
        print(f"{name:24s} {len(c['deployedBytecode']) // 2 - 1:6d} bytes  {c['source']}")


if __name__ == "__main__":
    main()
