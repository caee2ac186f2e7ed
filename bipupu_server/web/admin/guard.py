"""What stands before every admin page: the signed cookie, CSRF, form bodies, headers and HTML error pages."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sqlite3
from typing import Any, Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web
from itsdangerous import BadSignature, URLSafeSerializer
from multidict import MultiDictProxy

from ... import keys
from ...admin import Actor, PageSession
from ...errors import AppError
from ...store.db import DatabaseError
from ..responses import client_address
from . import i18n

log = logging.getLogger(__name__)

COOKIE = "bipupu_admin"
FORM_COOKIE = "bipupu_admin_form"  # before login: the double-submit token of the login form
COOKIE_SALT = "bipupu-admin-session"  # its own salt: an API token's signature can never pass for a cookie
CSRF_SALT = b"bipupu-admin-csrf:"
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PAGE_KEY = web.RequestKey("admin_page", PageSession)  # the PageSession of a signed-in request
FORM_TOKEN = web.RequestKey("admin_form_token", str)  # the login form's token, once chosen
NEW_FORM_TOKEN = web.RequestKey("admin_new_form_token", str)  # ... when it is new and needs its cookie

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PageRefused(Exception):
    """Answer with an HTML error page of this status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _serializer(request: web.Request) -> URLSafeSerializer:
    return URLSafeSerializer(request.config_dict[keys.config].secret_key, salt=COOKIE_SALT)


def set_session_cookie(request: web.Request, response: web.StreamResponse, session_id: str) -> None:
    response.set_cookie(COOKIE, _serializer(request).dumps(session_id), path="/admin", httponly=True,
                        samesite="Strict", secure=request.secure)
    response.del_cookie(FORM_COOKIE, path="/admin")


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/admin")


def csrf_token(request: web.Request) -> str:
    """The token every form carries: bound to the login, or before login to the form cookie."""
    page: PageSession | None = request.get(PAGE_KEY)
    if page is not None:
        key = request.config_dict[keys.config].secret_key.encode()
        return hmac.new(key, CSRF_SALT + page.session_id.encode(), hashlib.sha256).hexdigest()[:40]
    token = request.get(FORM_TOKEN)
    if token is None:
        token = request.cookies.get(FORM_COOKIE)
        if not token or len(token) != 32 or not token.isalnum():
            token = secrets.token_hex(16)
            request[NEW_FORM_TOKEN] = token
        request[FORM_TOKEN] = token
    return token


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """The form body, within the server's size and time limits, refused unless UTF-8 and carrying the CSRF token."""
    config = request.config_dict[keys.config]
    if request.content_type != "application/x-www-form-urlencoded":
        raise PageRefused(415, "forms are sent as application/x-www-form-urlencoded")
    try:
        async with asyncio.timeout(config.body_timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise PageRefused(408, "the form did not arrive in time") from None
    except web.HTTPRequestEntityTooLarge:
        raise PageRefused(413, "the form is too large") from None
    try:
        raw.decode("utf-8")
        form = await request.post()
    except (UnicodeDecodeError, ValueError):
        raise PageRefused(400, "the form is not valid UTF-8") from None
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise PageRefused(403, i18n.gettext("This form has expired; reload the page and try again."))
    sent = form.get("csrf")
    expected = csrf_token(request) if (request.get(PAGE_KEY) or request.cookies.get(FORM_COOKIE)) else None
    if not isinstance(sent, str) or expected is None or not hmac.compare_digest(sent, expected):
        raise PageRefused(403, i18n.gettext("This form has expired; reload the page and try again."))
    return form  # type: ignore[return-value]


def actor(request: web.Request) -> Actor:
    return Actor(request[PAGE_KEY].admin, client_address(request))


async def elevated(request: web.Request, form) -> bool:
    """Dangerous actions need a recent password; with one in the form, it is checked now."""
    admin, page = request.config_dict[keys.admin], request[PAGE_KEY]
    if admin.elevated(page):
        return True
    password = form.get("confirm_password")
    if not password:
        return False
    try:
        request[PAGE_KEY] = await admin.verify_again(page, password, address=client_address(request))
    except AppError:
        return False
    return True


def confirm(request: web.Request, form, failed: bool) -> web.Response:
    fields = [(name, value) for name, value in form.items() if name not in ("csrf", "confirm_password")]
    return render(request, "confirm.html", status=403, action=request.path, fields=fields, failed=failed)


def url(request: web.Request, name: str, **parts: str) -> str:
    """The path of the admin route called `name`."""
    return str(request.app.router[name].url_for(**parts))


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    page: PageSession | None = request.get(PAGE_KEY)
    context.setdefault("admin", page.admin if page else None)
    response = aiohttp_jinja2.render_template(
        f"admin/{template}", request, {**context, "csrf": csrf_token(request), "lang": i18n.language.get()},
        status=status)
    if NEW_FORM_TOKEN in request:
        response.set_cookie(FORM_COOKIE, request[NEW_FORM_TOKEN], path="/admin", httponly=True,
                            samesite="Strict", secure=request.secure)
    return response


async def _signed_in(request: web.Request) -> PageSession | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        session_id = _serializer(request).loads(raw)
    except BadSignature:
        return None
    if not isinstance(session_id, str) or len(session_id) > 64:
        return None
    return await request.config_dict[keys.admin].page_session(session_id)


OPEN = {"admin.login", "admin.login_post"}  # the routes a signed-out browser may use


@web.middleware
async def page_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = i18n.language.set(i18n.choose(request.headers.get("Accept-Language")))
    try:
        try:
            if request.headers.get("Authorization"):  # a bearer token opens no page, even an admin's
                raise PageRefused(403, i18n.gettext("Forbidden"))
            page = await _signed_in(request)
            if page is not None:
                request[PAGE_KEY] = page
            route = request.match_info.route.name
            if page is None and route not in OPEN:
                if request.method in ("GET", "HEAD") and route is not None:
                    return see_other(request.app.router["admin.login"].url_for())
                raise PageRefused(403, i18n.gettext("Forbidden"))
            response = await handler(request)
        except PageRefused as refused:
            response = render(request, "error.html", status=refused.status, message=refused.message)
        except AppError as exc:
            response = render(request, "error.html", status=exc.status, message=exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = render(request, "error.html", status=exc.status,
                              message=i18n.gettext("Not found") if exc.status == 404 else exc.reason)
        except (sqlite3.Error, DatabaseError) as exc:
            log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
            response = render(request, "error.html", status=503, message="the database is unavailable")
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = render(request, "error.html", status=500, message=i18n.gettext("Something went wrong"))
        response.headers.update(HEADERS)
        response.headers["Content-Language"] = i18n.language.get()
        response.headers["Vary"] = "Accept-Language, Cookie"
        return response
    finally:
        i18n.language.reset(token)


def see_other(location: Any) -> web.Response:
    """Post/Redirect/Get: a 303 to `location` (a URL from the router)."""
    return web.Response(status=303, headers={"Location": str(location), **HEADERS})
