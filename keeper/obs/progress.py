"""Progress of a long backfill: a bar on a terminal, periodic log lines otherwise.

On a terminal (``stream.isatty()``) one line is redrawn in place, at most every
``redraw`` seconds; anywhere else (a container, a file, CI) a structlog line is written every
``log_every`` seconds, so logs stay readable and grep-able. Both show blocks done of total,
events per second and the estimated time left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from keeper.obs.logging import get_logger

log = get_logger(__name__)


def format_eta(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``?`` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class BackfillProgress:
    """Tracks ``done`` of ``total`` blocks and ``events`` seen since ``start``."""

    def __init__(
        self,
        total_blocks: int,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        log_every: float = 10.0,
        redraw: float = 0.1,
        width: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(0, total_blocks)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.log_every = log_every
        self.redraw = redraw
        self.width = width
        self._clock = clock
        self.started = clock()
        self.done = 0
        self.events = 0
        self._last_output = float("-inf")
        self._drawn = False

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def rates(self) -> tuple[float, float, float | None]:
        """(blocks/s, events/s, seconds left)."""
        elapsed = max(self.elapsed, 1e-9)
        bps = self.done / elapsed
        eta = (self.total - self.done) / bps if bps > 0 else None
        return bps, self.events / elapsed, eta

    def line(self) -> str:
        """The bar as text (also what tests look at)."""
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.width)
        _, eps, eta = self.rates()
        bar = "#" * filled + "." * (self.width - filled)
        return (
            f"backfill [{bar}] {self.done:,}/{self.total:,} blocks {frac:6.1%}  "
            f"{eps:,.0f} events/s  ETA {format_eta(eta)}"
        )

    def update(self, blocks: int, events: int) -> None:
        """Count ``blocks`` more blocks done and ``events`` more events applied."""
        self.done = min(self.total, self.done + blocks)
        self.events += events
        now = self._clock()
        if self.tty:
            if now - self._last_output >= self.redraw or self.done == self.total:
                self.stream.write("\r" + self.line())
                self.stream.flush()
                self._drawn = True
                self._last_output = now
        elif now - self._last_output >= self.log_every:
            log.info("backfill_progress", **self._fields())
            self._last_output = now

    def finish(self) -> None:
        """End the bar's line (terminal) or log the summary line."""
        if self.tty:
            if self._drawn:
                self.stream.write("\r" + self.line() + "\n")
                self.stream.flush()
        else:
            log.info("backfill_progress_done", **self._fields())

    def _fields(self) -> dict[str, object]:
        _, eps, eta = self.rates()
        return {"blocks_done": self.done, "blocks_total": self.total, "events": self.events,
                "events_per_s": round(eps, 1), "eta": format_eta(eta),
                "elapsed_s": round(self.elapsed, 1)}
