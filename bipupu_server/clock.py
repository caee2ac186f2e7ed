"""Time sources, injectable so tests never sleep or depend on the wall clock."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (may jump)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go backwards."""

    async def sleep(self, seconds: float) -> None:
        """Wait about `seconds` (a test clock wakes sleepers whenever it moves)."""


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def rfc3339(ts: float) -> str:
    """Format epoch seconds as RFC 3339 UTC with a trailing Z, to the second."""
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_zone(name: str | None) -> tzinfo:
    """The broadcast zone: the configured one, else the system's (TZ, /etc/localtime), else UTC.

    Reads zone files: call it off the event loop.
    """
    if name:
        return ZoneInfo(name)
    for candidate in (os.environ.get("TZ", "").lstrip(":"), _localtime_key()):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


def _localtime_key() -> str | None:
    """'Asia/Shanghai' from /etc/localtime -> /usr/share/zoneinfo/Asia/Shanghai, if it is such a link."""
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return None
    marker = "/zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else None
