"""Structured JSON logs, one line per event, with secrets redacted on the way out.

``configure_logging()`` is the one call to make (from the composition root, once): it routes
structlog *and* standard-library loggers (those of the libraries the keeper uses) through the
same redaction and renders the same JSON. Formatting happens in the caller; the write to the
stream happens on a background thread (``_Lines``) so a slow stderr never blocks the event loop.
Call ``LogHandle.stop()`` at shutdown to flush; a line logged after it goes nowhere.

Redaction (``redact_secrets``) runs last before rendering, on every value, key and exception text:
- any value under a key that names a secret (private_key, password, secret, mnemonic, …);
- anywhere else, any stand-alone 64-hex-digit run (``0x`` optional, any case): that is what a
  private key looks like. Values under keys ending in ``hash``/``hashes``/``topic(s)`` are exempt,
  since transaction and block hashes have the same shape and are what an operator needs.

The keeper's own convention (tests/unit/test_logging_convention.py checks it): every module
logs through ``get_logger(__name__)``; the event is a snake_case string literal and the context
goes in key-value pairs, never into the event by f-string or %-format::

    from keeper.obs.logging import configure_logging, get_logger
    handle = configure_logging("INFO")
    log = get_logger(__name__)
    log.info("tx_sent", tx_hash=h, nonce=n)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(private_?key|priv_?key|secret|password|passwd|passphrase|mnemonic|authorization|api_?key)",
    re.IGNORECASE,
)
_HASH_KEY = re.compile(r"(hash|hashes|topic|topics)$", re.IGNORECASE)
# A stand-alone run of exactly 64 hex digits: longer runs (calldata, raw transactions) are data.
_KEY_HEX_DIGITS = 64
_KEY_LIKE = re.compile(r"(?<![0-9A-Za-z])(?:0[xX])?[0-9a-fA-F]{64}(?![0-9A-Za-z])")


def scrub_text(text: str) -> str:
    """``text`` with every key-shaped 64-hex run replaced by ``[REDACTED]``."""
    return _KEY_LIKE.sub(REDACTED, text)


@functools.lru_cache(maxsize=4096)
def _key_kind(key: str) -> tuple[bool, bool]:
    """(names a secret, names a hash): the keys are few, the lines many."""
    return bool(_SECRET_KEY.search(key)), bool(_HASH_KEY.search(key))


def _scrub(value: Any, key: str = "") -> Any:
    secret, hashed = _key_kind(key) if key else (False, False)
    if secret:
        return REDACTED
    if isinstance(value, str):
        if hashed or len(value) < _KEY_HEX_DIGITS:  # too short to hold a key
            return value
        return scrub_text(value)
    if isinstance(value, bytes | bytearray):
        # bytes are rendered as repr; a 32-byte value could be a raw key
        return REDACTED if len(value) == 32 else value
    if isinstance(value, Mapping):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, key) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    # Anything else is rendered with str() by the JSON renderer: scrub that text.
    return scrub_text(str(value))


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secret-named fields and key-shaped hex anywhere else."""
    for k in list(event_dict):
        event_dict[k] = _scrub(event_dict[k], str(k))
    return event_dict


_STOP = object()


class _Lines:
    """Rendered lines, written to ``stream`` by a background thread (a slow stderr never
    blocks the event loop), as many at a time as have queued up."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="keeper-log-writer",
                                        daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        self._queue.put(line)

    def _write(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [line for line in batch if line is not _STOP]
            if lines:
                with contextlib.suppress(OSError, ValueError):  # a closed stream: nowhere to go
                    self._stream.write("\n".join(map(str, lines)) + "\n")
                    self._stream.flush()
            if len(lines) < len(batch):
                return

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout=10)


class _LineWriter:
    """structlog's last step: hands the rendered line to the current ``_Lines`` (loggers made
    before a reconfiguration write to the new one)."""

    __slots__ = ("name",)

    def __init__(self, name: str | None = None, *_: Any) -> None:
        self.name = name or ""

    def msg(self, line: str) -> None:
        lines = _current.lines if _current is not None and not _current.stopped else None
        if lines is not None:
            lines.put(line)

    debug = info = warning = warn = error = critical = exception = fatal = msg


class _ForeignHandler(logging.Handler):
    """The standard library's records (the libraries the keeper uses), rendered like the
    keeper's own lines and queued behind them."""

    def __init__(self, lines: _Lines, formatter: logging.Formatter) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.put(self.format(record))
        except Exception:  # a logging boundary: never raise into the caller
            self.handleError(record)


@dataclass(slots=True)
class LogHandle:
    """What ``configure_logging`` set up; ``stop()`` flushes and detaches it."""

    lines: _Lines
    handler: logging.Handler
    stopped: bool = False

    def stop(self) -> None:
        """Flush what is queued and detach; safe to call more than once."""
        if self.stopped:
            return
        self.stopped = True
        logging.getLogger().removeHandler(self.handler)
        self.lines.stop()


_current: LogHandle | None = None


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_logging(level: str | int = "INFO", *, stream: TextIO | None = None) -> LogHandle:
    """Route structlog and stdlib logging to JSON lines on ``stream`` (stderr by default).

    The keeper's own lines go straight from structlog's processors to the writer thread:
    through the standard library (two LogRecords a line, the queue handler's copy, the
    formatter) a line cost ~75 us of the caller's time, ~8,500 lines in the 10,000-borrower
    crash; this way ~25 us. A library's line takes the standard library's path, rendered
    the same. Calling it again replaces the previous set-up (tests do this to capture output).
    """
    global _current
    if _current is not None:
        _current.stop()
    number = _level_number(level)
    pre_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    render = structlog.processors.JSONRenderer(default=str)
    # A library's line: its message and any exception text redacted whole once rendered.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*pre_chain, structlog.stdlib.ExtraAdder()],
        processors=[
            # Exceptions become plain text (no locals: frames may hold secrets) before redaction.
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            render,
        ],
    )
    lines = _Lines(stream if stream is not None else sys.stderr)
    handler = _ForeignHandler(lines, formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _ForeignHandler):
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(number)

    structlog.configure(
        processors=[
            *pre_chain,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            render,
        ],
        logger_factory=_LineWriter,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        cache_logger_on_first_use=False,
    )
    _current = LogHandle(lines, handler)
    return _current


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``log.info("event", key=value, ...)``."""
    return structlog.get_logger(name)
