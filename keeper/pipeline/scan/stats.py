"""What the health scanner counts: since it was built, and of its last scan."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ScanStats:
    """Counters since the scanner was built (cumulative) and sizes of the last scan."""

    scans: int = 0
    rebuilds: int = 0
    rows_set: int = 0
    mismatches: int = 0
    """Accounts whose exact book HF differed from the chain's: the book was wrong."""
    chain_failures: int = 0
    book_errors: int = 0
    last_prefiltered: int = 0
    last_exact_near: int = 0
    last_confirmed: int = 0
    last_vouched: int = 0
    """Of them, accounts the chain agreed with at an earlier block, unchanged since: not read."""
    last_unread: int = 0
    """Of them, accounts not read because a newer block came first (the book's flags stand)."""
    last_sure: int = 0
    """Of them, accounts the floats alone showed under the line (exact math after the flag)."""
    last_bad_debt: int = 0
    last_book_seconds: float = 0.0
    """The last scan's prefilter and exact math on the book, up to the book's flags."""
    last_chain_seconds: float = 0.0
    """The last scan's on-chain confirmation (its reads, and a re-read of doubtful answers)."""
