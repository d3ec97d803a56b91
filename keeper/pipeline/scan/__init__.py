"""Scan: the float prefilter index, exact math and on-chain confirmation of liquidatable accounts."""

from keeper.pipeline.scan.book_view import BookView
from keeper.pipeline.scan.candidate import LiquidatableAccount, rank
from keeper.pipeline.scan.scanner import HealthScanner
from keeper.pipeline.scan.stats import ScanStats

__all__ = ["BookView", "HealthScanner", "LiquidatableAccount", "ScanStats", "rank"]
