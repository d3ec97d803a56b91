"""Structured JSON logs, one line per event, with secrets redacted on the way out.

``configure_logging()`` is the one call to make (from the composition root, once): it routes
structlog *and* standard-library loggers (those of the libraries the keeper uses) through the
same processors and renders JSON. Formatting happens in the caller; the write to the stream happens on
a background thread (``QueueHandler`` → ``QueueListener``) so a slow stderr never blocks the event
loop. Call ``LogHandle.stop()`` at shutdown to flush.

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

import functools
import logging
import logging.handlers
import queue
import re
import sys
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


def _redact_rendered(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The formatter's redaction: a line from structlog was redacted as it was logged, so only
    what the formatter added to it (the exception's text) is; a library's line is redacted
    whole. Redacting every line twice was ~40% of the cost of a line (~2,300 liquidations
    log ~8,500 lines in the 10,000-borrower crash)."""
    if not event_dict.get("_from_structlog"):
        return redact_secrets(logger, method, event_dict)
    if "exception" in event_dict:
        event_dict["exception"] = _scrub(event_dict["exception"], "exception")
    return event_dict


@dataclass(slots=True)
class LogHandle:
    """What ``configure_logging`` set up; ``stop()`` flushes and detaches it."""

    listener: logging.handlers.QueueListener
    handler: logging.Handler
    stopped: bool = False

    def stop(self) -> None:
        """Flush what is queued and detach; safe to call more than once."""
        if self.stopped:
            return
        self.stopped = True
        logging.getLogger().removeHandler(self.handler)
        self.listener.stop()


_current: LogHandle | None = None


def configure_logging(level: str | int = "INFO", *, stream: TextIO | None = None) -> LogHandle:
    """Route structlog and stdlib logging to JSON lines on ``stream`` (stderr by default).

    Calling it again replaces the previous set-up (tests do this to capture output).
    """
    global _current
    if _current is not None:
        _current.stop()

    pre_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*pre_chain, structlog.stdlib.ExtraAdder()],
        processors=[
            # Exceptions become plain text (no locals: frames may hold secrets) before redaction.
            structlog.processors.format_exc_info,
            _redact_rendered,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queue_handler = logging.handlers.QueueHandler(records)
    queue_handler.setFormatter(formatter)  # format (and redact) in the caller, write elsewhere
    out = logging.StreamHandler(stream if stream is not None else sys.stderr)
    out.setFormatter(logging.Formatter("%(message)s"))
    listener = logging.handlers.QueueListener(records, out)

    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.handlers.QueueHandler):
            root.removeHandler(h)
    root.addHandler(queue_handler)
    root.setLevel(level if isinstance(level, int) else level.upper())

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.processors.StackInfoRenderer(),
            # Redact here too, so that any other handler on the root logger (pytest's capture,
            # a library's) only ever sees the redacted event.
            redact_secrets,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    listener.start()
    _current = LogHandle(listener, queue_handler)
    return _current


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``log.info("event", key=value, ...)``."""
    return structlog.get_logger(name)
