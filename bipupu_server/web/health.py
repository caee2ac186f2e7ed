"""GET /health and GET /metrics: is the server up, and how is it doing."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .. import __version__, keys
from ..store.db import DatabaseError
from .responses import json_response

PROBE_TIMEOUT_S = 2.0
WRITE_ERROR_TRUST_S = 30.0  # how long a failed write alone marks the database unavailable


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this server's registry."""
    return web.Response(body=request.app[keys.metrics].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health(request: web.Request) -> web.Response:
    app = request.app
    report = {
        "status": "ok",
        "db": "ok",
        "version": __version__,
        "uptime_s": round(app[keys.clock].monotonic() - app[keys.started_at], 1),
    }
    db = app[keys.db]
    try:
        await asyncio.wait_for(db.fetchone("SELECT count(*) FROM sqlite_master"), PROBE_TIMEOUT_S)
        if db.write_error is not None:  # the last write failed (disk full, read-only, locked…)
            # A one-row probe fits in WAL space already allocated, so it can pass on a full disk:
            # trust it only once the failure is old, so that a quiet server can recover its health.
            if time.monotonic() - db.write_error_at < WRITE_ERROR_TRUST_S:
                raise DatabaseError(db.write_error)
            await asyncio.wait_for(db.probe_write(), PROBE_TIMEOUT_S)
    except (sqlite3.Error, DatabaseError, asyncio.TimeoutError):
        report.update(status="unavailable", db="unavailable",
                      error={"code": "database_unavailable", "message": "the database is unavailable"})
        return json_response(report, status=503, headers={"Retry-After": "5"})
    return json_response(report)
