"""Slither over contracts/, offline: fails on any finding of medium or higher impact.

The sources are compiled by the project's solc-js with the project's settings (one standard-JSON
input written to build/slither-input.json, crytic-compile's `solc-json` platform, and the
`ops/static/solc-js` wrapper as `solc`). Slither runs from its own venv (``$SLITHER``, by
default .venv-slither/bin/slither, which `make static` creates). A finding is accepted only where the source explains
it: a `// slither-disable-next-line <detector> <reason>` comment, and every such comment must
give a reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from keeper.contracts.solc import CONTRACTS_DIR, SETTINGS  # noqa: E402

FAILING = {"High", "Medium"}
DISABLE = re.compile(r"//\s*slither-disable-(?:next-line|start|end)\s+([A-Za-z0-9_,-]+)(.*)$")


def standard_json() -> Path:
    sources = {str(p.relative_to(ROOT)): {"content": p.read_text()}
               for p in sorted(CONTRACTS_DIR.rglob("*.sol"))}
    settings = {k: v for k, v in SETTINGS.items() if k != "outputSelection"}
    out = ROOT / "build" / "slither-input.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"language": "Solidity", "sources": sources, "settings": settings},
                              indent=1))
    return out


def unexplained_disables() -> list[str]:
    bad = []
    for path in sorted(CONTRACTS_DIR.rglob("*.sol")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = DISABLE.search(line)
            if m and not m.group(2).strip() and "slither-disable-end" not in line:
                bad.append(f"{path.relative_to(ROOT)}:{n}: slither-disable without a reason")
    return bad


def main() -> int:
    target = standard_json()
    proc = subprocess.run(
        [os.environ.get("SLITHER", str(ROOT / ".venv-slither" / "bin" / "slither")), str(target),
         "--compile-force-framework", "solc-json", "--solc", str(ROOT / "ops" / "static" / "solc-js"),
         "--json", "-", "--exclude-dependencies"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
        return 2
    if not report.get("success"):
        print(report.get("error"), proc.stderr[-4000:], sep="\n", file=sys.stderr)
        return 2
    findings = report.get("results", {}).get("detectors", [])
    failing = [f for f in findings if f.get("impact") in FAILING]
    for f in findings:
        mark = "FAIL" if f in failing else "    "
        print(f"{mark} [{f['impact']}/{f['confidence']}] {f['check']}: "
              f"{f['description'].strip().splitlines()[0]}")
    problems = unexplained_disables()
    for p in problems:
        print(f"FAIL {p}")
    print(f"slither: {len(findings)} findings, {len(failing)} of medium or high impact")
    return 1 if failing or problems else 0


if __name__ == "__main__":
    sys.exit(main())
