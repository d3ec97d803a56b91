"""One logging convention across keeper/, checked on the syntax tree.

Every ``log.<level>(...)`` call has a snake_case string literal as its event and puts the
context in keyword arguments (no f-string, no %-format, no positional arguments after the
event); no module but ``keeper/obs/logging.py`` makes a logger of its own with
``logging.getLogger`` or ``structlog.get_logger``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

KEEPER = Path(__file__).resolve().parents[2] / "keeper"
LEVELS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "msg"}
LOGGERS = {"log", "logger", "_log", "_logger"}
EVENT = re.compile(r"^[a-z][a-z0-9_]*$")
FACTORIES = {("logging", "getLogger"), ("structlog", "get_logger")}
FACTORY_HOME = KEEPER / "obs" / "logging.py"
# The modules converted on this branch; the rest of keeper/ is converted in parallel branches.
CONVERTED = [
    *(p for p in (KEEPER / "chain").glob("*.py") if p.name not in ("multicall.py", "types.py")),
    KEEPER / "obs", KEEPER / "devnet", KEEPER / "app" / "config.py",
    KEEPER / "pipeline" / "sync.py", KEEPER / "pipeline" / "store.py", KEEPER / "errors.py",
]


def _is_logger(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in LOGGERS
    return isinstance(node, ast.Attribute) and node.attr in LOGGERS  # self.log, self._log


def _log_call_problem(call: ast.Call) -> str | None:
    if not call.args:
        return "no event"
    event = call.args[0]
    if not (isinstance(event, ast.Constant) and isinstance(event.value, str)):
        kind = "an f-string" if isinstance(event, ast.JoinedStr) else "not a string literal"
        return f"event is {kind}"
    if len(call.args) > 1 or "%" in event.value:
        return "positional arguments after the event (%-format)"
    if not EVENT.match(event.value):
        return f"event {event.value!r} is not snake_case"
    return None


def _factory_problem(node: ast.AST) -> str | None:
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in FACTORIES):
        return f"{node.value.id}.{node.attr}"
    if isinstance(node, ast.ImportFrom) and node.module in ("logging", "structlog"):
        for alias in node.names:
            if (node.module, alias.name) in FACTORIES:
                return f"from {node.module} import {alias.name}"
    return None


def violations(paths: Iterable[Path]) -> list[str]:
    found: list[str] = []
    for path in paths:
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            rel = file.relative_to(KEEPER.parent) if file.is_relative_to(KEEPER.parent) else file
            tree = ast.parse(file.read_text(), filename=str(file))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in LEVELS and _is_logger(node.func.value)):
                    problem = _log_call_problem(node)
                    if problem:
                        found.append(f"{rel}:{node.lineno}: {problem}")
                if file != FACTORY_HOME and (what := _factory_problem(node)):
                    line = getattr(node, "lineno", 0)
                    found.append(f"{rel}:{line}: {what} (use keeper.obs.logging.get_logger)")
    return found


def test_the_checker_sees_each_kind_of_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import logging\n"
        "from structlog import get_logger\n"
        "log = logging.getLogger(__name__)\n"
        "log.info(f'sent {x}')\n"
        "log.warning('rpc endpoint %s down', url)\n"
        "log.error('Task failed')\n"
        "self.log.debug(event_name)\n"
        "log.info('rpc_failover', url=u, error=e)\n"
    )
    found = violations([bad])
    assert len(found) == 6, found
    assert any("f-string" in f for f in found) and any("%-format" in f for f in found)


def test_converted_modules_follow_the_convention() -> None:
    assert violations(CONVERTED) == []


def test_every_module_follows_the_convention() -> None:
    assert violations([KEEPER]) == []
