"""The one place where errors become the JSON error shape."""

from __future__ import annotations

import logging
import sqlite3

from aiohttp import web

from .. import keys
from ..errors import AppError
from ..store.db import DatabaseError
from .responses import error_response

log = logging.getLogger(__name__)

# aiohttp's own HTTP errors (no route, wrong method, body over client_max_size...) as our codes.
HTTP_CODES = {
    400: ("bad_request", "the request is malformed"),
    401: ("unauthorized", "authentication is required"),
    403: ("forbidden", "this is not allowed"),
    404: ("not_found", "there is nothing at this address"),
    405: ("method_not_allowed", "this method is not allowed here"),
    408: ("request_timeout", "the request took too long"),
    411: ("length_required", "a Content-Length is required"),
    413: ("payload_too_large", "the request body is too large"),
    414: ("uri_too_long", "the address is too long"),
    415: ("unsupported_media_type", "this content type is not supported"),
    431: ("headers_too_large", "the request headers are too large"),
}
KEEP_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


@web.middleware
async def count_responses(request: web.Request, handler) -> web.StreamResponse:
    """HTTP responses by status for /metrics (outermost: it sees what the error middleware made)."""
    response = await handler(request)
    request.app[keys.metrics].http.labels(str(response.status)).inc()
    return response


CORS_METHODS = "GET, HEAD, POST, PUT, DELETE"
CORS_HEADERS = "Authorization, Content-Type"


@web.middleware
async def cors(request: web.Request, handler) -> web.StreamResponse:
    """BIPUPU_CORS_ORIGINS: a web App on one of those origins may call the API, preflight included."""
    origin = request.headers.get("Origin")
    if origin is None or origin not in request.app[keys.config].cors_origins:
        return await handler(request)  # no CORS headers: the browser refuses the answer to the page
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response = web.Response(status=204, headers={"Access-Control-Allow-Methods": CORS_METHODS,
                                                     "Access-Control-Allow-Headers": CORS_HEADERS,
                                                     "Access-Control-Max-Age": "600"})
    else:
        response = await handler(request)
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    response.headers["Access-Control-Allow-Origin"] = origin  # tokens, not cookies: no credentials mode
    response.headers["Vary"] = "Origin"
    return response


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        response = error_response(exc.status, exc.body(), exc.headers)
        if exc.closes:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = HTTP_CODES.get(exc.status, ("http_error", exc.reason.lower()))
        headers = {name: exc.headers[name] for name in KEEP_HEADERS if name in exc.headers}
        return error_response(exc.status, {"error": {"code": code, "message": message}}, headers)
    except (sqlite3.OperationalError, sqlite3.DatabaseError, DatabaseError) as exc:
        # Locked past busy_timeout, disk full, read-only, corrupt: the client can retry later.
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
        return error_response(503, {"error": {"code": "database_unavailable",
                                              "message": "the database is unavailable; try again later"}},
                              {"Retry-After": "5"})
    except ConnectionResetError:  # the client went away mid-request
        log.debug("connection lost on %s %s", request.method, request.path)
        return error_response(400, {"error": {"code": "connection_lost", "message": "the connection was lost"}})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, {"error": {"code": "internal_error", "message": "the server failed; this is a bug"}})
