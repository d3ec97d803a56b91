"""``keeper breaker reset`` → the running daemon: one small file per request in the state dir.

The command writes ``<state.sqlite>.breaker-resets/<unique>.reset`` (written aside, then
renamed, so a half-written request is never read) holding the asset to reset (a symbol or an
address) or ``*`` for every asset. The oracle guard takes (reads and deletes) every request
at each block it checks. A file per request means two resets never race on one file, and the
daemon's SQLite store is never written by another process.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

ALL_ASSETS = "*"
_SUFFIX = ".reset"


def resets_dir(sqlite: Path) -> Path:
    """Where the requests for the keeper whose checkpoint is ``sqlite`` are left."""
    return sqlite.with_name(sqlite.name + ".breaker-resets")


def request_reset(directory: Path, asset: str | None) -> Path:
    """Leave a reset request for ``asset`` (None: every asset); returns its file (blocking)."""
    directory.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    tmp = directory / (name + ".tmp")
    tmp.write_text((asset or ALL_ASSETS).strip().lower() + "\n", encoding="utf-8")
    final = directory / (name + _SUFFIX)
    os.replace(tmp, final)
    return final


def take_resets(directory: Path) -> list[str]:
    """Every pending request (lower-case asset or ``*``), removed as read (blocking)."""
    try:
        entries = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    out: list[str] = []
    for path in entries:
        if path.suffix != _SUFFIX:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip().lower()
            path.unlink()
        except OSError:
            continue  # taken meanwhile, or unreadable: nothing to apply
        if text:
            out.append(text)
    return out
