"""Is the database usable: the policy behind GET /health, on the injected clock."""

from __future__ import annotations

import asyncio
import sqlite3

from .clock import Clock
from .store.db import Database, DatabaseError, probe_read

PROBE_TIMEOUT_S = 2.0
WRITE_ERROR_TRUST_S = 30.0  # how long a failed write alone marks the database unavailable


async def database_ok(db: Database, clock: Clock) -> bool:
    """A read answers in time, and writes work (or failed long enough ago that a probe may say they do)."""
    try:
        await asyncio.wait_for(db.read(probe_read), PROBE_TIMEOUT_S)
        if db.write_error is not None:  # the last write failed (disk full, read-only, locked…)
            # A one-row probe fits in WAL space already allocated, so it can pass on a full disk:
            # trust it only once the failure is old, so that a quiet server can recover its health.
            if clock.monotonic() - db.write_error_at < WRITE_ERROR_TRUST_S:
                return False
            await asyncio.wait_for(db.probe_write(), PROBE_TIMEOUT_S)
    except (sqlite3.Error, DatabaseError, asyncio.TimeoutError):
        return False
    return True
