"""GET /health and GET /metrics: is the server up, and how is it doing."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .. import __version__, keys
from ..health import database_ok
from ..records import relay_view
from .responses import json_response


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
        "relay": _relay(app),
    }
    if not await database_ok(app[keys.db], app[keys.clock]):
        report.update(status="unavailable", db="unavailable",
                      error={"code": "database_unavailable", "message": "the database is unavailable"})
        return json_response(report, status=503, headers={"Retry-After": "5"})
    return json_response(report)


def _relay(app: web.Application) -> dict[str, str]:
    """The relay's state and why; it never makes the server unhealthy (it serves without it)."""
    view = relay_view(app.get(keys.relay))
    return {"state": view["state"], "detail": view["detail"]}
