"""The value types of the keeper's config: addresses, URLs, hashes, files, numbers that are
never booleans, and lists the environment gives comma-separated. Each refuses a bad value with
a message that names what was wanted (``keeper.app.config`` says where)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

SQLITE_HEADER = b"SQLite format 3\x00"


def address(v: str) -> str:
    s = v.lower()
    if len(s) != 42 or not s.startswith("0x") or any(c not in "0123456789abcdef" for c in s[2:]):
        raise ValueError("not a 0x-prefixed 20-byte hex address")
    return s


def url(v: str) -> str:
    if not v.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError("not an http(s):// or ws(s):// URL")
    return v


def hash32(v: str) -> str:
    s = v.lower().removeprefix("0x")
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise ValueError("not a 32-byte hex hash")
    return "0x" + s


def not_a_directory(p: Path) -> Path:
    if p.is_dir():
        raise ValueError(f"{str(p)!r} is a directory, not a file")
    return p


def sqlite_file(p: Path) -> Path:
    """A directory or a file that is not a SQLite database is refused here, before any node is
    contacted; a missing parent directory is refused where the store opens it (at run time)."""
    not_a_directory(p)
    if p.is_file():
        try:
            with p.open("rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise ValueError(f"cannot read {str(p)!r}: {exc.strerror}") from None
        if head and head != SQLITE_HEADER:
            raise ValueError(f"{str(p)!r} is not a SQLite database")
    return p


def comma_list(v: Any) -> Any:
    """The environment gives lists as ``a, b``; the file gives TOML arrays."""
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return v


def not_bool(v: Any) -> Any:
    # pydantic takes true for 1; in a config that is a typo, never a number.
    if isinstance(v, bool):
        raise ValueError("a number is needed, not true/false")
    return v


Int = Annotated[int, BeforeValidator(not_bool)]
Float = Annotated[float, BeforeValidator(not_bool)]
Address = Annotated[str, AfterValidator(address)]
Url = Annotated[str, AfterValidator(url)]
FilePath = Annotated[Path, AfterValidator(not_a_directory)]
