"""The shape of the code: small modules, short functions, small classes (issue: the house).

Measured over ``keeper/`` on every ``make test``, so the layout cannot drift back: a module over
``MAX_MODULE_LINES`` lines, a function over ``MAX_FUNCTION_LINES`` or a class that defines more
than ``MAX_PUBLIC_METHODS`` public methods is named here. Generated tables (ABIs) are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

KEEPER = Path(__file__).resolve().parents[2] / "keeper"
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 80
MAX_PUBLIC_METHODS = 15
EXEMPT = {"protocols/aave_v3/abis.py"}


def _modules() -> list[tuple[str, str]]:
    return [
        (str(p.relative_to(KEEPER)), p.read_text())
        for p in sorted(KEEPER.rglob("*.py"))
        if str(p.relative_to(KEEPER)) not in EXEMPT
    ]


def test_no_module_is_too_long() -> None:
    long = [f"{name}: {src.count(chr(10))} lines" for name, src in _modules()
            if src.count("\n") > MAX_MODULE_LINES]
    assert long == []


def test_no_function_is_too_long() -> None:
    long: list[str] = []
    for name, src in _modules():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert long == []


def test_no_class_has_too_many_public_methods() -> None:
    wide: list[str] = []
    for name, src in _modules():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ClassDef):
                public = [
                    n.name for n in node.body
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not n.name.startswith("_")
                ]
                if len(public) > MAX_PUBLIC_METHODS:
                    wide.append(f"{name}:{node.lineno} {node.name}: {len(public)} public methods")
    assert wide == []
