"""Time sources, injectable so tests never sleep or depend on the wall clock."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (may jump)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go backwards."""


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def rfc3339(ts: float) -> str:
    """Format epoch seconds as RFC 3339 UTC with a trailing Z, to the second."""
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
